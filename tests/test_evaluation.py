"""The evaluation harness's metric functions, on hand-made values (no model)."""

from __future__ import annotations

import argparse
import json

import pytest

from qa import evaluation as ev
from qa.types import Answer, Citation


def test_normalize_dev_ignores_case_punctuation_whitespace_and_curly_quotes():
    assert ev.normalize_dev("  Mr. & Mrs.\n Smith ") == "mr mrs smith"
    assert ev.normalize_dev("Turturro’s “Irving”") == ev.normalize_dev('turturro\'s "irving"')
    assert ev.contains_answer("The stars are Donald  Glover, and Maya Erskine.", ["donald glover"], ev.normalize_dev)
    assert not ev.contains_answer("Glover", ["Donald Glover"], ev.normalize_dev)


def test_normalize_squad_maps_non_alphanumerics_to_spaces():
    assert ev.normalize_squad("Denver Broncos!") == "denver broncos"
    assert ev.normalize_squad("the 1990s—era (U.S.)") == "the 1990s era u s"
    assert ev.contains_answer("It was won by the Denver\nBroncos. [1]", ["Denver Broncos"], ev.normalize_squad)
    assert not ev.contains_answer("", ["x"], ev.normalize_squad)
    assert not ev.contains_answer("anything", ["!!"], ev.normalize_squad)  # an empty gold matches nothing


def test_squad_file_name():
    assert ev.squad_file_name(3, "Super_Bowl_50") == "03_Super_Bowl_50.txt"
    assert ev.squad_file_name(12, "Sky (United Kingdom)") == "12_Sky_United_Kingdom_.txt"
    long = "A" * 100
    assert ev.squad_file_name(40, long) == f"40_{'A' * 60}.txt"
    assert ev.squad_file_name(7, "Warsaw — a city, of  Poland") == "07_Warsaw_a_city_of_Poland.txt"


def _squad(n_articles: int = 7) -> dict:
    data = []
    for i in range(n_articles):
        paras = []
        for j in range(2):
            ctx = f"Article {i} paragraph {j}. The answer is word{i}x{j} here."
            start = ctx.index(f"word{i}x{j}")
            paras.append(
                {
                    "context": ctx,
                    "qas": [
                        {
                            "id": f"q{i}-{j}",
                            "question": f"What is in {i} {j}?",
                            "answers": [{"answer_start": start, "text": f"word{i}x{j}"}],
                        }
                    ],
                }
            )
        data.append({"title": f"Title {i}!", "paragraphs": paras})
    return {"version": "1.1", "data": data}


def test_squad_corpus_files_offsets_and_left_out_rule(tmp_path):
    data = _squad(7)
    questions = ev.write_squad_corpus(data, tmp_path / "corpus")
    files = sorted(p.name for p in (tmp_path / "corpus").iterdir())
    # articles 0 and 6 are left out (i % 6 == 0)
    assert files == [f"0{i}_Title_{i}_.txt" for i in (1, 2, 3, 4, 5)]
    text = (tmp_path / "corpus" / "02_Title_2_.txt").read_text(encoding="utf-8")
    assert text == "\n\n".join(p["context"] for p in data["data"][2]["paragraphs"])  # no header
    assert len(questions) == 14
    for q in questions:
        assert q.in_corpus == (q.article % 6 != 0)
        if q.in_corpus:
            body = (tmp_path / "corpus" / q.source).read_text(encoding="utf-8")
            for ans, off in zip(q.answers, q.offsets, strict=False):
                assert body[off : off + len(ans)] == ans
    assert sum(not q.in_corpus for q in questions) == 4
    # a rewrite leaves identical files alone and removes files that should not be there
    (tmp_path / "corpus" / "00_Title_0_.txt").write_text("stale", encoding="utf-8")
    before = (tmp_path / "corpus" / "01_Title_1_.txt").stat().st_mtime_ns
    ev.write_squad_corpus(data, tmp_path / "corpus")
    assert not (tmp_path / "corpus" / "00_Title_0_.txt").exists()
    assert (tmp_path / "corpus" / "01_Title_1_.txt").stat().st_mtime_ns == before


def test_recall_at_k_on_hand_made_passages():
    q = ev.SquadQuestion("id", "q?", "01_A.txt", ("x",), (120,), True, 1)
    spans = [("02_B.txt", 100, 200), ("01_A.txt", 0, 100), ("01_A.txt", 100, 121), ("01_A.txt", 110, 300)]
    assert ev.hit_rank(spans, q) == 2  # other file first; [0,100) misses 120; [100,121) covers it
    assert ev.hit_rank(spans[:2], q) is None
    assert ev.covers(120, 130, "01_A.txt", "01_A.txt", [120])  # start is inclusive
    assert not ev.covers(100, 120, "01_A.txt", "01_A.txt", [120])  # end is exclusive
    ranks = [0, 2, None, 4, 5]
    assert ev.recall_at(ranks, 1) == pytest.approx(0.2)
    assert ev.recall_at(ranks, 5) == pytest.approx(0.6)
    assert ev.recall_at([], 5) == 0.0


def _answer(text: str, cites: list[tuple[str, int, int, str]], abstained: bool = False) -> Answer:
    cs = [Citation(n, s, "t", None, a, b, quote) for n, (s, a, b, quote) in enumerate(cites, 1)]
    return Answer(text=text, citations=cs, abstained=abstained, confidence=0.9)


def test_squad_correct_needs_string_and_gold_file():
    q = ev.SquadQuestion("id", "q?", "01_A.txt", ("Denver Broncos",), (5,), True, 1)
    good = _answer("The Denver Broncos won. [1]", [("01_A.txt", 0, 23, "The Denver Broncos won.")])
    assert ev.squad_correct(good, q)
    assert not ev.squad_correct(
        _answer("The Denver Broncos won. [1]", [("02_B.txt", 0, 23, "The Denver Broncos won.")]), q
    )
    assert not ev.squad_correct(_answer("The Panthers won. [1]", [("01_A.txt", 0, 18, "The Panthers won.")]), q)
    assert not ev.squad_correct(Answer(text="", abstained=True), q)


def test_citation_checks(tmp_path):
    (tmp_path / "a.txt").write_text("First sentence here. Second one there.", encoding="utf-8")
    ok = _answer("First sentence here. [1]", [("a.txt", 0, 20, "First sentence here.")])
    assert ev.citation_problems(ok, tmp_path) == []
    shifted = _answer("First sentence here. [1]", [("a.txt", 1, 21, "First sentence here.")])
    assert any("verbatim" in p for p in ev.citation_problems(shifted, tmp_path))
    extra = _answer("Indeed: First sentence here. [1]", [("a.txt", 0, 20, "First sentence here.")])
    assert not ev.only_quotes(extra)
    two = _answer(
        "First sentence here. [1] Second one there. [2]",
        [("a.txt", 0, 20, "First sentence here."), ("a.txt", 21, 38, "Second one there.")],
    )
    assert ev.only_quotes(two) and ev.citation_problems(two, tmp_path) == []
    assert ev.citation_problems(Answer(text="", abstained=True), tmp_path) == []
    assert ev.citation_problems(_answer("x [1]", [("a.txt", 0, 1, "F")], abstained=True), tmp_path)


def test_check_turn_rules(tmp_path):
    (tmp_path / "a.txt").write_text("John Turturro, 66, said so.", encoding="utf-8")
    a = _answer("John Turturro, 66, said so. [1]", [("a.txt", 0, 27, "John Turturro, 66, said so.")])
    row = {"question": "How old?", "answers": ["66"], "sources": ["a.txt"], "answerable": True}
    assert ev.check_turn(a, row, tmp_path) == (True, [])
    assert not ev.check_turn(a, {**row, "sources": ["b.txt"]}, tmp_path)[0]
    assert not ev.check_turn(a, {**row, "answers": ["67"]}, tmp_path)[0]
    assert not ev.check_turn(a, {"question": "?", "answers": [], "sources": [], "answerable": False}, tmp_path)[0]
    assert ev.check_turn(
        Answer(text="", abstained=True), {"question": "?", "answers": [], "answerable": False}, tmp_path
    )[0]


def test_percentile_and_sample():
    assert ev.percentile([1, 2, 3, 4, 5], 50) == 3
    assert ev.percentile([1.0, 2.0], 95) == pytest.approx(1.95)
    assert ev.percentile([], 50) == 0.0
    qs = [ev.SquadQuestion(str(i), "q", "f", (), (), True, 0) for i in range(100)]
    a = ev.sample_questions(qs, 10, seed=1)
    assert a == ev.sample_questions(qs, 10, seed=1) and len(a) == 10
    assert [q.id for q in a] == sorted((q.id for q in a), key=int)  # file order kept
    assert ev.sample_questions(qs, None, 0) == qs


def test_cli_arguments_and_missing_files_skip_cleanly(tmp_path, capsys):
    p = argparse.ArgumentParser()
    ev.add_arguments(p)
    args = p.parse_args([])
    assert args.squad is None and not args.no_dev and args.sample is None
    assert p.parse_args(["--squad"]).squad == str(ev.DEFAULT_SQUAD)
    args = p.parse_args(["--squad", "--report", str(tmp_path / "r.json")])
    # the default files, when missing (a checkout without ../shared), are skipped with a note
    args.dev, args.squad = str(tmp_path / "none.jsonl"), str(tmp_path / "none.json")

    class NoEngine:
        settings = None

    from qa.settings import Settings

    NoEngine.settings = Settings()
    assert ev.main(args, NoEngine()) == 0
    out = capsys.readouterr().out
    assert "not found, skipped" in out
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["fusion"]


@pytest.mark.parametrize(
    "args",
    [["--sample", "-1"], ["--sample", "0"], ["--calibrate", "1"], ["--calibrate", "-2"], ["--dev-repeat", "0"]],
)
def test_numeric_arguments_out_of_range_are_usage_errors(capsys, args):
    p = argparse.ArgumentParser()
    ev.add_arguments(p)
    with pytest.raises(SystemExit) as e:
        p.parse_args(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert args[0] in err and args[1] in err


def test_numeric_arguments_in_range_are_accepted():
    p = argparse.ArgumentParser()
    ev.add_arguments(p)
    a = p.parse_args(["--sample", "1", "--calibrate", "2", "--dev-repeat", "1", "--seed", "-7"])
    assert (a.sample, a.calibrate, a.dev_repeat, a.seed) == (1, 2, 1, -7)


@pytest.mark.parametrize(
    "args",
    [["--dev", ""], ["--dev", "/dev/null"], ["--squad", ""], ["--squad", "/tmp"], ["--dev", "/nonexistent/d.jsonl"]],
)
def test_named_input_files_must_be_regular_files(capsys, args):
    p = argparse.ArgumentParser()
    ev.add_arguments(p)
    with pytest.raises(SystemExit) as e:
        p.parse_args(args)
    assert e.value.code == 2
    assert args[0] in capsys.readouterr().err
