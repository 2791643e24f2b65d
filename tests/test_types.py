from qa.types import Answer, Citation, Passage


def test_to_dict_nests_and_round_trips():
    p = Passage("t", 0.5, "a.txt", "Title", "2024-01-01", 0, 1)
    c = Citation(1, "a.txt", "Title", None, 0, 1, "t")
    a = Answer("t [1]", [c], 0.7, False, [p], "q")
    d = a.to_dict()
    assert d["citations"][0] == {
        "number": 1,
        "source": "a.txt",
        "title": "Title",
        "date": None,
        "start": 0,
        "end": 1,
        "quote": "t",
        "url": None,
        "outlet": None,
        "page": None,
    }
    assert d["passages"][0]["score"] == 0.5 and d["abstained"] is False
