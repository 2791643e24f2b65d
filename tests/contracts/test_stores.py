"""The DenseStore and LexicalStore contracts (qa/protocols.py), run by every implementation:
FAISS (exact and HNSW) with bm25s, and Milvus Lite (skipped, saying how to install it, without
the milvus extra). A new store joins by adding a factory to IMPLEMENTATIONS."""

from __future__ import annotations

import numpy as np
import pytest

from qa import lexical
from qa.protocols import DenseStore, LexicalStore
from qa.types import ChunkBatch

DIM = 8
TEXTS = {
    "severance.txt": [
        "Severance is a thriller about office workers at Lumon Industries.",
        "Adam Scott stars as Mark, whose memories are split between work and home.",
        "The second season premiered in January 2025 on Apple TV+.",
    ],
    "weather.txt": [
        "Heavy rain flooded the coastal town on Tuesday.",
        "Forecasters expect the storm to weaken by Friday morning.",
    ],
    'odd "name" \\ é.txt': [
        "A file name with quotes, a backslash and an accent must be removable too.",
    ],
}


def _batch(rng: np.random.Generator, first_id: int = 1_000_000_007) -> ChunkBatch:
    sources = [s for s, texts in TEXTS.items() for _ in texts]
    texts = [t for ts in TEXTS.values() for t in ts]
    vectors = rng.normal(size=(len(texts), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.array([first_id + 7919 * k for k in range(len(texts))], dtype=np.int64)  # not positions
    return ChunkBatch(ids, sources, texts, vectors, ["0" * 64] * len(texts))


class FaissPair:
    """FaissDenseStore + Bm25LexicalStore, reopened from their files."""

    def __init__(self, tmp_path, hnsw: bool) -> None:
        from qa.stores.bm25_lexical import Bm25LexicalStore
        from qa.stores.faiss_dense import FaissDenseStore

        self.tmp, self.hnsw = tmp_path, hnsw
        self.dense, self.lexical = FaissDenseStore(DIM, hnsw=hnsw), Bm25LexicalStore()
        self._added: list[ChunkBatch] = []

    def add(self, batch: ChunkBatch) -> None:
        self.dense.add(batch)
        self.lexical.add(batch)
        self._added.append(batch)

    def remove(self, sources) -> int:
        self.lexical.remove(sources)
        return self.dense.remove(sources)

    def reopen(self) -> tuple[DenseStore, LexicalStore]:
        from qa.stores.bm25_lexical import Bm25LexicalStore
        from qa.stores.faiss_dense import FaissDenseStore

        folder = self.tmp / "saved"
        self.dense.save(folder)
        self.lexical.save(folder)
        ids = np.concatenate([b.ids for b in self._added])
        sources = [s for b in self._added for s in b.sources]
        texts = [t for b in self._added for t in b.texts]
        self.dense = FaissDenseStore.load(folder, sources, ids=ids)
        self.lexical = Bm25LexicalStore.load(folder, sources, ids=ids, texts=texts)
        return self.dense, self.lexical


class MilvusPair:
    """One MilvusStore (Milvus Lite file) seen through its dense and lexical views."""

    def __init__(self, tmp_path) -> None:
        pytest.importorskip("pymilvus", reason='the Milvus store needs its extra: pip install -e ".[milvus]"')
        from qa.stores.milvus import MilvusStore

        self.tmp = tmp_path
        self.store = MilvusStore(str(tmp_path / "milvus.db"), "contract", dimension=DIM, meta={"test": 1})
        self.dense, self.lexical = self.store.dense, self.store.lexical

    def add(self, batch: ChunkBatch) -> None:
        self.store.add(batch)

    def remove(self, sources) -> int:
        return self.dense.remove(sources)  # one collection: both views lose them

    def reopen(self) -> tuple[DenseStore, LexicalStore]:
        from qa.stores.milvus import MilvusStore

        folder = self.tmp / "saved"
        folder.mkdir(exist_ok=True)
        self.store.save(folder)
        self.store.close()
        self.store = MilvusStore.load(folder)
        self.dense, self.lexical = self.store.dense, self.store.lexical
        return self.dense, self.lexical

    def close(self) -> None:
        self.store.close()


IMPLEMENTATIONS = {
    "faiss-flat": lambda tmp: FaissPair(tmp, hnsw=False),
    "faiss-hnsw": lambda tmp: FaissPair(tmp, hnsw=True),
    "milvus-lite": MilvusPair,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def pair(request, tmp_path):
    p = IMPLEMENTATIONS[request.param](tmp_path)
    yield p
    if hasattr(p, "close"):
        p.close()


@pytest.fixture
def batch():
    return _batch(np.random.default_rng(7))


def _brute(batch: ChunkBatch, q: np.ndarray, keep=None) -> list[tuple[int, float]]:
    pairs = [(int(i), float(v @ q)) for i, v, s in zip(batch.ids, batch.vectors, batch.sources, strict=True)]
    pairs = [p for p, s in zip(pairs, batch.sources, strict=True) if keep is None or keep(s)]
    return sorted(pairs, key=lambda p: (-p[1], p[0]))


def _same(got, want, tol=1e-5):
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=tol)


def test_implements_the_protocols(pair):
    assert isinstance(pair.dense, DenseStore) and isinstance(pair.lexical, LexicalStore)
    assert isinstance(pair.dense.kind, str) and pair.dense.kind


def test_empty_store_finds_nothing(pair):
    assert pair.dense.count() == 0 and pair.lexical.count() == 0
    assert pair.dense.search(np.ones(DIM, np.float32) / DIM**0.5, 5) == []
    assert pair.lexical.search("Lumon", 5) == []


def test_dense_search_is_exact_inner_product_best_first(pair, batch):
    pair.add(batch)
    assert pair.dense.count() == len(batch)
    q = batch.vectors[2]
    want = _brute(batch, q)
    _same(pair.dense.search(q, 3), want[:3])
    _same(pair.dense.search(q, 100), want)  # more than stored: all of them
    assert pair.dense.search(q, 0) == []


def test_dense_search_among_given_ids(pair, batch):
    pair.add(batch)
    q = batch.vectors[0]
    chosen = [int(batch.ids[4]), int(batch.ids[1]), 123456789]  # an unknown id is ignored
    want = [p for p in _brute(batch, q) if p[0] in chosen]
    _same(pair.dense.search(q, 10, ids=chosen), want)
    _same(pair.dense.search(q, 1, ids=chosen), want[:1])


def test_remove_by_document(pair, batch):
    pair.add(batch)
    gone = 'odd "name" \\ é.txt'
    assert pair.remove(["severance.txt", gone]) == 4
    assert pair.dense.count() == pair.lexical.count() == len(batch) - 4
    q = batch.vectors[0]  # a severance chunk's own vector: it must not be found
    _same(pair.dense.search(q, 10), _brute(batch, q, keep=lambda s: s == "weather.txt"))
    assert pair.lexical.search("Lumon thriller", 10) == []
    assert pair.remove(["no-such-file.txt"]) == 0


def test_adding_an_id_again_replaces_it(pair, batch):
    pair.add(batch)
    q = -batch.vectors[3]
    again = ChunkBatch(batch.ids[3:4], batch.sources[3:4], ["Snow closed the mountain pass."], q[None, :])
    pair.add(again)
    assert pair.dense.count() == len(batch)
    assert pair.dense.search(q, 1)[0] == (int(batch.ids[3]), pytest.approx(1.0, abs=1e-5))
    assert [i for i, _ in pair.lexical.search("mountain snow", 5)] == [int(batch.ids[3])]
    assert pair.lexical.search("flooded coastal town", 5) == []


def test_lexical_search_ranks_by_bm25(pair, batch):
    pair.add(batch)
    found = pair.lexical.search("Who stars as Mark in Severance?", 10)
    assert found and all(score > 0 for _, score in found)
    assert found[0][0] == int(batch.ids[1])  # "Adam Scott stars as Mark ..."
    words = set(lexical.tokenize("Who stars as Mark in Severance?"))
    matching = {int(i) for i, t in zip(batch.ids, batch.texts, strict=True) if words & set(lexical.tokenize(t))}
    assert {i for i, _ in found} == matching
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    assert pair.lexical.search("the of and", 5) == []  # stop words only
    assert pair.lexical.search("xylophonequartz", 5) == []


def test_lexical_search_among_given_ids(pair, batch):
    pair.add(batch)
    everything = dict(pair.lexical.search("storm rain Friday", 10))
    chosen = [int(batch.ids[4]), int(batch.ids[0])]
    got = pair.lexical.search("storm rain Friday", 10, ids=chosen)
    assert [i for i, _ in got] == [int(batch.ids[4])]
    assert got[0][1] == pytest.approx(everything[int(batch.ids[4])], rel=1e-4)


def test_save_and_reopen_keeps_everything(pair, batch):
    pair.add(batch)
    q = batch.vectors[5]
    before_dense, before_lexical = pair.dense.search(q, 4), pair.lexical.search("storm rain", 4)
    dense, lexical_store = pair.reopen()
    assert dense.count() == lexical_store.count() == len(batch)
    _same(dense.search(q, 4), before_dense)
    _same(lexical_store.search("storm rain", 4), before_lexical, tol=1e-4)


def test_a_reopened_store_can_be_added_to(pair, batch):
    pair.add(batch)
    pair.reopen()
    extra = _batch(np.random.default_rng(8), first_id=5)
    pair.add(extra)
    assert pair.dense.count() == pair.lexical.count() == 2 * len(batch)
    _same(pair.dense.search(extra.vectors[0], 1), [(5, 1.0)])
    assert {i for i, _ in pair.lexical.search("Lumon", 5)} == {int(batch.ids[0]), 5}
