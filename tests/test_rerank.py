"""The learned rerank of fused results (Settings.rerank_model) and its fitting (qa.rerank_fit)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeEmbedder

from qa.calibration import fit_listwise, on_scale
from qa.errors import InputError
from qa.rerank_fit import hand_score, recall
from qa.retrieval import RERANK_FEATURES, rerank_features, rerank_score, search
from qa.settings import RERANK_FEATURES as SETTINGS_RERANK_FEATURES
from qa.settings import Settings

QUESTIONS = [
    "Who plays Irving?",
    "When does Mr. & Mrs. Smith premiere on Prime Video?",
    "Which strikes delayed production?",
    "Who directed Severance?",
]


def _model(weights: dict[int, float], intercept: float = 0.0) -> str:
    coef = [intercept] + [weights.get(i, 0.0) for i in range(RERANK_FEATURES)]
    return ",".join(str(c) for c in coef)


def test_feature_count_matches_settings():
    assert RERANK_FEATURES == SETTINGS_RERANK_FEATURES


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_model_of_one_feature_orders_by_it(small_chunks, question):
    """BM25 share alone (feature 11), then minus it: the passages come in that order, each scored
    by the model, and the same set of fused results is reranked either way."""
    idx, settings = small_chunks
    up = search(idx, FakeEmbedder(), settings.replace(rerank_model=_model({11: 1.0})), question, 10)
    down = search(idx, FakeEmbedder(), settings.replace(rerank_model=_model({11: -1.0}, 3.0)), question, 10)
    top = max(p.bm25_score for p in up.passages) or 1.0
    shares = [p.bm25_score / top for p in up.passages]
    assert shares == sorted(shares, reverse=True)
    assert [p.score for p in up.passages] == pytest.approx(shares)
    assert [p.bm25_score for p in down.passages] == sorted(p.bm25_score for p in down.passages)
    assert [p.score for p in down.passages] == pytest.approx([3.0 - p.bm25_score / top for p in down.passages])


def test_empty_model_keeps_the_hand_weights(small_chunks):
    """With rerank_model empty the score is the best sentence's plus the weighted cosine and BM25
    share, i.e. hand_score over the same feature rows."""
    idx, settings = small_chunks
    s = settings.replace(rerank_model="")
    hits = search(idx, FakeEmbedder(), s, QUESTIONS[0], 8)
    top = max(p.bm25_score for p in hits.passages) or 1.0
    rs = s.replace(w_type=s.w_rerank_type)
    for p in hits.passages:
        row = rerank_features(hits.sentence_features[p.chunk_id], p, 0, 40, 1.0, top, rs)
        assert p.score == pytest.approx(float(hand_score(np.array([row]), s)[0]), abs=1e-6)


def test_features_and_score():
    class P:
        dense_score, bm25_score, score = 0.5, 4.0, 0.02

    row = rerank_features([], P(), 3, 40, 0.04, 8.0, Settings())
    assert len(row) == RERANK_FEATURES
    assert row[10:] == pytest.approx([0.5, 0.5, 0.5, 3 / 40, np.log1p(4.0)])
    assert row[:10] == [0.0] * 10
    assert rerank_score(row, [float(x) for x in _model({10: 2.0}, 1.0).split(",")]) == pytest.approx(2.0)


@pytest.mark.parametrize("bad", ["1,2,3", "x" * 5, ",".join(["1"] * 15) + ",nan"])
def test_a_bad_model_is_refused_by_name(bad):
    with pytest.raises(InputError, match="rerank_model"):
        Settings(rerank_model=bad)


def _synthetic(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Lists of 20 rows of 3 features: feature 0 is higher on the gold row, 1 is noise, 2 lower."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        X = rng.normal(size=(20, 3))
        y = np.zeros(20, dtype=bool)
        g = rng.integers(20)
        y[g] = True
        X[g, 0] += 2.0
        X[g, 2] -= 1.0
        out.append((X, y))
    return out


def test_fit_listwise_learns_what_marks_the_gold_row():
    lists = _synthetic(400, 0)
    w = fit_listwise(lists, l2=1e-3, steps=800)
    assert w[0] > 1.0 and w[2] < -0.3 and abs(w[1]) < 0.3
    test = _synthetic(300, 1)
    learned = recall(test, lambda X: X @ w)
    noise = recall(test, lambda X: X[:, 1])
    assert learned["R@1"] > 0.4 > noise["R@1"]
    assert learned["R@5"] >= learned["R@1"]


def test_fit_listwise_needs_a_gold_row():
    X = np.ones((5, 3))
    with pytest.raises(InputError, match="gold"):
        fit_listwise([(X, np.zeros(5, dtype=bool))])


def test_on_scale_keeps_the_order_and_takes_the_reference_scale():
    lists = _synthetic(50, 2)
    w = np.array([1.0, 0.0, -0.5])
    coef = on_scale(lists, w, lambda X: 0.1 * (X @ w) + 0.7)
    assert coef[0] == pytest.approx(0.7)
    assert coef[1:] == pytest.approx(0.1 * w)


def test_recall_counts_a_list_without_gold_as_a_miss():
    X = np.array([[3.0], [2.0], [1.0]])
    lists = [(X, np.array([False, True, False])), (X, np.array([False, False, False]))]
    assert recall(lists, lambda X: X[:, 0], ks=(1, 2)) == {"R@1": 0.0, "R@2": 0.5}


def _squad_gz(folder, n: int) -> None:
    import gzip
    import json

    arts = [{"title": f"T{i}", "paragraphs": []} for i in range(n)]
    with gzip.open(folder / "train-v1.1.json.gz", "wt", encoding="utf-8") as f:
        json.dump({"version": "1.1", "data": arts}, f)


def test_training_corpora_are_seeded_disjoint_and_leave_the_held_out_articles_out(tmp_path):
    from qa.reading.train import training_corpora

    _squad_gz(tmp_path, 30)
    held = {"T0", "T1", "T2"}
    a = training_corpora(tmp_path, held, 3, 8, seed=5)
    assert a == training_corpora(tmp_path, held, 3, 8, seed=5)
    titles = [x["title"] for c in a for x in c["data"]]
    assert len(titles) == 24 == len(set(titles))
    assert not held & set(titles)
    assert titles != [x["title"] for c in training_corpora(tmp_path, held, 3, 8, seed=6) for x in c["data"]]
    with pytest.raises(InputError, match="4 × 8"):
        training_corpora(tmp_path, held, 4, 8, seed=5)  # 32 articles asked of 27


ANIMALS = "otter heron badger lynx falcon beaver marten ibis stoat crane".split()
CITIES = "Aarhus Bergen Cork Delft Essen Faro Genoa Haarlem Ilok Jaen Kassel Lund".split()


def _synthetic_squad(folder, n: int) -> None:
    """``n`` one-paragraph articles, each with two answerable questions."""
    import gzip
    import json

    arts = []
    for i in range(n):
        animal, city, year = ANIMALS[i % 10], CITIES[i % 12], str(1900 + 7 * i)
        ctx = (
            f"The {animal} of {city} number {i} lives near the old harbour. It was first seen in {year} by "
            f"a fisherman. Its keeper says the {animal} eats {i + 3} fish a day."
        )
        qas = [
            {"id": f"{i}a", "question": f"When was the {animal} of {city} number {i} first seen?",
             "answers": [{"text": year, "answer_start": ctx.index(year)}]},
            {"id": f"{i}b", "question": f"How many fish does the {animal} number {i} of {city} eat a day?",
             "answers": [{"text": str(i + 3), "answer_start": ctx.rindex(str(i + 3))}]},
        ]  # fmt: skip
        arts.append({"title": f"Article_{i}", "paragraphs": [{"context": ctx, "qas": qas}]})
    with gzip.open(folder / "train-v1.1.json.gz", "wt", encoding="utf-8") as f:
        json.dump({"version": "1.1", "data": arts}, f)


def test_fit_rerank_end_to_end(make_engine, seed_corpus, tmp_path, capsys):
    """The command on a tiny SQuAD-shaped train file: it builds its corpora, fits, prints a
    rerank_model the settings accept, and reports R@k for both orders on the held-out articles."""
    import argparse
    import json

    from qa.rerank_fit import add_arguments, main

    data = tmp_path / "squad"
    data.mkdir()
    _synthetic_squad(data, 64)  # 40 held out by the reader's card, 24 to fit on
    p = argparse.ArgumentParser()
    add_arguments(p)
    out = tmp_path / "report.json"
    args = p.parse_args(
        ["--data", str(data), "--corpora", "2", "--articles", "12", "--cache", str(tmp_path / "c"), "--out", str(out)]
    )
    assert main(args, make_engine(seed_corpus)) == 0
    report = json.loads(out.read_text())
    Settings(rerank_model=report["rerank_model"])  # refused if malformed
    assert f"rerank_model = '{report['rerank_model']}'" in capsys.readouterr().out
    assert report["questions"]["held_out"] > 0 and report["questions"]["fit"] > 0
    for part in ("fit", "held_out"):
        for r in report[part].values():
            assert 0.0 <= r["R@1"] <= r["R@3"] <= r["R@5"] <= r["R@10"] <= 1.0
