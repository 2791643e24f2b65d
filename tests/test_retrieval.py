"""qa.retrieval: dense search against a brute-force oracle, BM25, fusion, and the passages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SEED_CORPUS, FakeEmbedder

from qa import lexical
from qa.retrieval import bm25_scores, bm25_search, dense_search, fuse, search
from qa.settings import Settings

QUERIES = [
    "Who plays Irving?",
    "When does Mr. & Mrs. Smith premiere on Prime Video?",
    "Christopher Walken Burt Goodman relationship",
    "microdata refinement team",
    "season 2 production delay strikes",
    "zzz unknown words only",
]


# ---------------------------------------------------------------- dense


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("n", [1, 5, 17])
def test_dense_search_agrees_with_brute_force(small_chunks, query, n):
    idx, _ = small_chunks
    q = FakeEmbedder().embed([query])[0]
    got = dense_search(idx, q, n)
    vectors = idx.chunk_vectors()
    scores = vectors @ q
    oracle = np.argsort(-scores, kind="stable")[:n]
    assert len(got) == n
    np.testing.assert_allclose(sorted(got.values(), reverse=True), scores[oracle], atol=1e-5)
    # the same rows, up to ties at the cut
    cut = scores[oracle[-1]]
    assert {r for r in oracle if scores[r] > cut + 1e-6} <= set(got)
    for row, score in got.items():
        assert score == pytest.approx(float(scores[row]), abs=1e-5)
        assert score >= cut - 1e-5


def test_chunk_vectors_are_normalized(small_chunks):
    idx, _ = small_chunks
    np.testing.assert_allclose(np.linalg.norm(idx.chunk_vectors(), axis=1), 1.0, atol=1e-5)


def test_dense_search_with_more_wanted_than_chunks(small_chunks):
    idx, _ = small_chunks
    q = FakeEmbedder().embed(["Irving"])[0]
    got = dense_search(idx, q, idx.n_chunks + 50)
    assert sorted(got) == list(range(idx.n_chunks))
    assert dense_search(idx, q, 0) == {}


def test_faiss_minus_one_rows_are_dropped():
    class StubFaiss:  # FAISS pads a short result with row -1
        ntotal = 5
        d = 4

        def search(self, q, n):
            rows = np.array([[3, 0, -1, -1, -1]])[:, :n]
            return np.array([[0.9, 0.2, -3.4e38, -3.4e38, -3.4e38]], dtype=np.float32)[:, :n], rows

    from qa.index import Index, Segment
    from qa.stores.faiss_dense import FaissDenseStore
    from qa.types import Chunk, ChunkBatch

    chunks = [Chunk("a.txt", i, i + 1, "x") for i in range(5)]
    store = FaissDenseStore(4)
    store.add(ChunkBatch(np.arange(5), ["a.txt"] * 5, ["x"] * 5, np.eye(5, 4, dtype=np.float32)))
    store.index = StubFaiss()
    seg = Segment("s-000001", chunks, store, None, np.zeros((0, 4), np.float16), np.zeros(6, np.int64), 5, {})
    idx = Index(Path("unused"), {"dimension": 4}, [seg])
    got = dense_search(idx, np.ones(4, np.float32), 5)
    assert got == {3: pytest.approx(0.9), 0: pytest.approx(0.2)}


def test_retrieve_with_k_beyond_the_chunk_count(tmp_path, make_engine):
    corpus = tmp_path / "one"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Irving works at Lumon.\n\nBurt works at Lumon too.\n", encoding="utf-8")
    engine = make_engine(corpus)
    passages = engine.retrieve("Who works at Lumon?", k=50)
    assert len(passages) == engine.index.n_chunks == 1
    assert all(p.chunk_id >= 0 for p in passages)


# ---------------------------------------------------------------- BM25


def test_bm25_finds_a_chunk_by_a_rare_word(small_chunks):
    idx, _ = small_chunks
    scores = bm25_scores(idx, lexical.tokenize("microdata"))
    best = bm25_search(scores, 5)
    assert best, "the rare word is indexed"
    assert all("microdata" in idx.chunks[r].text for r in best)
    top = next(iter(best))
    assert idx.chunks[top].source == "002_e1a1f62939dbe07c.txt"
    assert sum(1 for c in idx.chunks if "microdata" in c.text) == len(best)


def test_bm25_unknown_terms_score_nothing(small_chunks):
    idx, _ = small_chunks
    scores = bm25_scores(idx, ["qqqqunknown"])
    assert scores.shape == (idx.n_chunks,) and not scores.any()
    assert bm25_search(scores, 10) == {}
    assert not bm25_scores(idx, []).any()


def test_bm25_search_orders_and_keeps_positive_scores_only():
    scores = np.array([0.0, 2.5, 1.0, 3.0, 0.0, 1.0], dtype=np.float32)
    assert list(bm25_search(scores, 3).items()) == [(3, 3.0), (1, 2.5), (2, 1.0)]
    assert list(bm25_search(scores, 10)) == [3, 1, 2, 5]
    assert bm25_search(scores, 0) == {}


def test_search_finds_the_rare_word_first(small_chunks):
    idx, settings = small_chunks
    hits = search(idx, FakeEmbedder(), settings, "microdata refinement", 3)
    assert "microdata refinement" in hits.passages[0].text
    assert hits.passages[0].bm25_score > 0


# ---------------------------------------------------------------- fusion


def test_rrf_fusion_on_hand_made_rankings():
    settings = Settings(rrf_k=60)
    dense = {1: 0.9, 2: 0.8, 3: 0.1}
    bm25 = {3: 5.0, 1: 1.0, 4: 0.5}
    fused = fuse(dense, bm25, settings)
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
    assert fused[4] == pytest.approx(1 / 63)
    assert sorted(fused, key=fused.get, reverse=True) == [1, 3, 2, 4]


def test_rrf_only_ranks_matter():
    settings = Settings(rrf_k=10)
    a = fuse({7: 0.99, 8: 0.98}, {8: 100.0}, settings)
    b = fuse({7: 0.5, 8: 0.1}, {8: 0.001}, settings)
    assert a == b
    assert a[8] > a[7]


def test_weighted_fusion():
    settings = Settings(fusion="weighted", dense_weight=0.7)
    fused = fuse({1: 0.8, 2: 0.4}, {2: 10.0, 3: 5.0}, settings)
    assert fused[1] == pytest.approx(0.7 * 0.8)
    assert fused[2] == pytest.approx(0.7 * 0.4 + 0.3 * 1.0)
    assert fused[3] == pytest.approx(0.3 * 0.5)


def test_unknown_fusion_is_refused():
    with pytest.raises(ValueError, match="'mean'"):
        fuse({1: 1.0}, {}, Settings(fusion="mean"))


# ---------------------------------------------------------------- passages


@pytest.mark.parametrize("query", QUERIES)
def test_passages_carry_where_they_come_from(small_chunks, query):
    idx, settings = small_chunks
    passages = search(idx, FakeEmbedder(), settings, query, 8).passages
    assert len(passages) == 8
    assert len({p.chunk_id for p in passages}) == 8
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    q = FakeEmbedder().embed([query])[0]
    for p in passages:
        text = open(SEED_CORPUS / p.source, encoding="utf-8").read()
        assert text[p.start : p.end] == p.text
        meta = idx.documents[p.source]
        assert (p.title, p.date) == (meta["title"], meta["date"])
        assert p.date is not None and len(p.date) == 10
        chunk = idx.chunks[p.chunk_id]
        assert (chunk.source, chunk.start, chunk.end) == (p.source, p.start, p.end)
        assert p.dense_score == pytest.approx(float(idx.chunk_vector(p.chunk_id) @ q), abs=1e-5)
        assert p.bm25_score >= 0


def test_passage_to_dict_is_json_ready(small_chunks):
    import json

    idx, settings = small_chunks
    p = search(idx, FakeEmbedder(), settings, "Who plays Irving?", 1).passages[0]
    d = json.loads(json.dumps(p.to_dict()))
    assert d["source"] == p.source and d["start"] == p.start and d["text"] == p.text
