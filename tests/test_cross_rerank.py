"""The cross-encoder rerank (qa.rerankers.cross): the reorder, what it reads, its settings and
weights; fakes in the fast tier, the shipped graph in the slow one."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import FakeEmbedder

from qa.errors import InputError, ModelError
from qa.reading.features import SentenceFeatures
from qa.rerankers import cross
from qa.retrieval import search
from qa.settings import Settings
from qa.types import Span


def _p(score: float, i: int):
    return SimpleNamespace(score=score, i=i)


def test_reorder_moves_only_the_window_and_keeps_scores():
    ps = [_p(10 - i, i) for i in range(8)]
    out = cross.reorder(ps, [0.0, 5.0, 0.0, 9.0], 1.0, 2, 6)
    assert [p.i for p in out] == [0, 1, 5, 3, 2, 4, 6, 7]
    assert [p.score for p in out] == [10, 9, 5, 7, 8, 6, 4, 3]  # untouched: the rerank's
    assert [p.i for p in cross.reorder(ps, [0.0] * 4, 1.0, 2, 6)] == list(range(8))  # ties keep the order


def test_reorder_weighs_the_cross_encoder_against_the_score():
    ps = [_p(1.0, 0), _p(0.9, 1)]
    assert [p.i for p in cross.reorder(ps, [0.0, 0.5], 0.1, 0, 2)] == [0, 1]  # 0.9 + 0.05 < 1.0
    assert [p.i for p in cross.reorder(ps, [0.0, 0.5], 0.5, 0, 2)] == [1, 0]  # 0.9 + 0.25 > 1.0


def test_reorder_window_past_the_end_and_wrong_score_count():
    ps = [_p(3 - i, i) for i in range(3)]
    assert [p.i for p in cross.reorder(ps, [0.0, 1.0], 2.0, 1, 10)] == [0, 2, 1]
    with pytest.raises(ValueError, match="2 passages to reorder but 3 scores"):
        cross.reorder(ps, [0.0, 1.0, 2.0], 1.0, 1, 10)


def _sf(text: str, dense: float, quotable: bool = True) -> SentenceFeatures:
    return SentenceFeatures(Span(0, len(text)), text, dense, 0.0, 0.0, 0.0, quotable)


def test_snippet_is_the_best_quotable_sentence_with_the_one_before():
    s = Settings()
    feats = [_sf("First one.", 0.1), _sf("Second one.", 0.9), _sf("Third one.", 0.5)]
    assert cross.snippet(feats, s) == "First one. Second one."
    feats = [_sf("Only.", 0.9), _sf("Caption", 0.99, quotable=False)]
    assert cross.snippet(feats, s) == "Only."
    assert cross.snippet([], s) == ""
    assert cross.pair_text("T" * 200, "x") == "T" * cross.TITLE_CHARS + " | x"


class FakeScorer:
    """Scores a text by its length modulo 7; records what it was asked."""

    def __init__(self) -> None:
        self.asked = []

    def score(self, question, texts):
        self.asked.append((question, list(texts)))
        return np.array([float(len(t) % 7) for t in texts], dtype=np.float32)


def test_search_reorders_the_window_by_the_scorer(small_chunks, monkeypatch):
    idx, settings = small_chunks
    question = "Who plays Irving?"
    plain = search(idx, FakeEmbedder(), settings, question, 12).passages
    fake = FakeScorer()
    monkeypatch.setattr(cross, "scorer", lambda folder, threads: fake)
    s = settings.replace(cross_rerank_weight=100.0, cross_rerank_from=2, cross_rerank_to=8)
    got = search(idx, FakeEmbedder(), s, question, 12).passages
    ((asked_question, texts),) = fake.asked
    assert asked_question == question and len(texts) == 6
    for p, t in zip(plain[2:8], texts, strict=True):  # title | the best sentence (with the one before)
        assert t.startswith(p.title[: cross.TITLE_CHARS] + " | ") and t.split(" | ", 1)[1] in p.text
    fake_scores = fake.score(question, texts)
    expected = sorted(range(6), key=lambda i: (-(plain[2 + i].score + 100.0 * fake_scores[i]), i))
    assert [p.chunk_id for p in got[2:8]] == [plain[2 + i].chunk_id for i in expected]
    assert [p.chunk_id for p in got[:2]] == [p.chunk_id for p in plain[:2]]
    assert [p.chunk_id for p in got[8:]] == [p.chunk_id for p in plain[8:]]
    assert {p.chunk_id: p.score for p in got} == {p.chunk_id: p.score for p in plain}
    assert [p.chunk_id for p in got[2:8]] != [p.chunk_id for p in plain[2:8]]  # the fake did move something


def test_search_without_the_weight_never_asks_the_scorer(small_chunks, monkeypatch):
    idx, settings = small_chunks

    def fail(folder, threads):
        raise AssertionError("the cross-encoder was loaded with its weight at 0")

    monkeypatch.setattr(cross, "scorer", fail)
    search(idx, FakeEmbedder(), settings.replace(cross_rerank_weight=0.0), "Who plays Irving?", 5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("cross_rerank_weight", -1.0, "cross_rerank_weight"),
        ("cross_rerank_weight", float("nan"), "cross_rerank_weight"),
        ("cross_rerank_from", -1, "cross_rerank_from"),
        ("cross_rerank_to", 0, "cross_rerank_to"),
        ("cross_rerank_to", 101, "cross_rerank_to"),
    ],
)
def test_bad_settings_are_named(name, value, message):
    with pytest.raises(InputError, match=message):
        Settings(**{name: value})


def test_missing_and_corrupt_weights_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="no cross-encoder in .*train-cross-rerank"):
        cross.CrossScorer(tmp_path).load()
    card = {"onnx_file": "cross.int8.onnx", "onnx_sha256": "0" * 64}
    (tmp_path / cross.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelError, match="is missing"):
        cross.CrossScorer(tmp_path).load()
    (tmp_path / "cross.int8.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="does not match the model card"):
        cross.CrossScorer(tmp_path).load()
    (tmp_path / cross.CARD_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(ModelError, match="unreadable"):
        cross.CrossScorer(tmp_path).load()


# ---------------------------------------------------------------- the shipped graph (slow)


@pytest.fixture(scope="module")
def shipped():
    if not (cross.WEIGHTS_DIR / cross.CARD_FILE).exists():
        pytest.fail("no shipped cross-encoder in qa/rerankers/weights")
    s = cross.CrossScorer()
    s.load()
    return s


@pytest.mark.slow
def test_shipped_graph_prefers_the_sentence_that_answers(shipped):
    q = "What is the capital city of the country?"
    texts = [
        cross.pair_text("France", "France is a country in Western Europe. Its capital is Paris, on the Seine."),
        cross.pair_text("France", "France borders Belgium, Germany, Switzerland, Italy and Spain."),
        cross.pair_text("Danube", "The Danube flows through ten countries before it reaches the Black Sea."),
    ]
    s = shipped.score(q, texts)
    assert s.shape == (3,) and np.isfinite(s).all()
    assert s[0] > s[1] and s[0] > s[2]


@pytest.mark.slow
def test_shipped_graph_takes_a_huge_question_and_batch_order_is_irrelevant(shipped):
    texts = [cross.pair_text("T", f"Sentence number {i} about the topic.") for i in range(5)]
    q = "word " * 3000
    assert np.isfinite(shipped.score(q, texts)).all()
    one = shipped.score("Which sentence?", texts[:1])
    five = shipped.score("Which sentence?", texts)
    assert one[0] == pytest.approx(five[0], abs=0.05)  # padding does not change a pair's score much


@pytest.mark.slow
def test_shipped_graph_reads_news_typography_as_the_training_text(shipped):
    """ "--" and curly quotes score as the em dash and straight quotes SQuAD writes (model.plain_typography)."""
    news = [cross.pair_text("T", "Scott -- who plays \u201cMark\u201d -- is back. He\u2019s filming.")]
    plain = [cross.pair_text("T", 'Scott \u2014 who plays "Mark" \u2014 is back. He\'s filming.')]
    assert shipped.score("Who\u2019s Mark?", news)[0] == pytest.approx(shipped.score("Who's Mark?", plain)[0], abs=1e-6)


@pytest.mark.slow
def test_shipped_card_is_checked(tmp_path, shipped):
    folder = tmp_path / "w"
    shutil.copytree(cross.WEIGHTS_DIR, folder)
    card = json.loads((folder / cross.CARD_FILE).read_text(encoding="utf-8"))
    graph = folder / card["onnx_file"]
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="does not match the model card"):
        cross.CrossScorer(folder).load()


@pytest.mark.parametrize("changes", [{}, {"rerank_model": ""}, {"rerank_depth": 0}])
def test_scores_of_zero_keep_the_order(small_chunks, monkeypatch, changes):
    """What the fast tier relies on (conftest's zero scorer): the reorder then changes nothing,
    with the learned rerank, the hand weights, or none."""
    idx, settings = small_chunks
    settings = settings.replace(**changes)
    plain = search(idx, FakeEmbedder(), settings, "Which strikes delayed production?", 15).passages
    monkeypatch.setattr(cross, "scorer", lambda folder, threads: SimpleNamespace(score=lambda q, t: np.zeros(len(t))))
    s = settings.replace(cross_rerank_weight=1.0, cross_rerank_from=0, cross_rerank_to=15)
    got = search(idx, FakeEmbedder(), s, "Which strikes delayed production?", 15).passages
    assert [p.chunk_id for p in got] == [p.chunk_id for p in plain]


# ---------------------------------------------------------------- train-cross-rerank's choosing


def _rows(golds: list[int], n: int = 10) -> list[dict]:
    """One question per gold rank, results scored n, n-1, ... (the rerank's order)."""
    return [{"question": f"q{g}", "cands": [{"score": float(n - i), "gold": i == g} for i in range(n)]} for g in golds]


def test_recall_and_mixed_orders_follow_reorder():
    from qa.rerankers.train import mixed_orders, recall

    rows = _rows([0, 4, 6])
    plain = [list(range(10)) for _ in rows]
    assert recall(rows, plain, ks=(1, 5, 10)) == {"R@1": round(1 / 3, 4), "R@5": round(2 / 3, 4), "R@10": 1.0}
    scores = [np.array([0.0] * 6 + [50.0] + [0.0] * 3, dtype=np.float32) for _ in rows]  # lifts rank 6
    orders = mixed_orders(rows, scores, 0.1, 3, 8)
    assert orders[0] == [0, 1, 2, 6, 3, 4, 5, 7, 8, 9]  # 4 + 0.1 x 50 beats 7
    # rank 6 comes into the five, and pushes rank 4 out of them
    assert [o.index(g) for o, g in zip(orders, (0, 4, 6), strict=True)] == [0, 5, 3]
    assert recall(rows, orders, ks=(5,)) == {"R@5": round(2 / 3, 4)}
    assert mixed_orders(rows, scores, 0.01, 3, 8)[0] == list(range(10))  # 4 + 0.5 < 7: not enough


def test_choose_keeps_to_the_pairs_it_may_read():
    from qa.rerankers import train

    rows = _rows([9] * 5 + [6] * 5)
    scores = [np.array([0.0] * 6 + [50.0] * 4, dtype=np.float32) for _ in rows]
    best, points = train.choose(rows, scores)
    assert all(p["to"] - p["from"] <= train.MAX_PAIRS for p in points)
    assert {(p["from"], p["to"]) for p in points} >= {(3, 8), (2, 7)}
    assert best["R@5"] == max(p["R@5"] for p in points) == 0.5  # rank 6 can be lifted, rank 9 never read
