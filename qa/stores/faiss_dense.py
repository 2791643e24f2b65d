"""The default DenseStore: one FAISS index (exact inner product, or HNSW for a big segment).

Ids are the caller's; positions in the FAISS index map to them. FAISS's HNSW cannot delete, so
a removed chunk is masked (never found) rather than deleted; the index holding it is rewritten
when the caller merges segments. A loaded store is shared by the index versions that hold the
same segment file: ``with_live`` gives a copy with its own mask and the same FAISS object.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..types import ChunkBatch
from .rows import MaskedRows

FILE = "dense.faiss"
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80


class FaissDenseStore(MaskedRows):
    kind = "faiss"

    def __init__(self, dimension: int, *, hnsw: bool = False, ef_search: int = 128) -> None:
        import faiss

        if hnsw:
            self.index = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        else:
            self.index = faiss.IndexFlatIP(dimension)
        self.dimension = dimension
        self.ef_search = ef_search
        self._init_rows([], [], 0)

    # ------------------------------------------------------------ protocol

    def add(self, batch: ChunkBatch) -> None:
        vectors = np.ascontiguousarray(batch.vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"vectors of shape {vectors.shape} added to a store of dimension {self.dimension}")
        if len(vectors):
            self.index.add(vectors)
        self._append_rows(batch.ids, batch.sources)

    def search(self, vector: np.ndarray, n: int, ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        if n <= 0:
            return []
        q = np.ascontiguousarray(np.asarray(vector, np.float32).reshape(1, -1))
        if ids is not None:
            return self._scores_of(q[0], ids, n)
        total = self.index.ntotal
        want = min(total, n + int(total - self.live.sum()))
        if want <= 0:
            return []
        scores, rows = self._search(q, want)
        found = [
            (int(self._ids[r]), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0 and self.live[r]
        ]
        found.sort(key=lambda p: (-p[1], p[0]))
        return found[:n]

    def save(self, folder: Path) -> None:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / FILE))

    # ------------------------------------------------------------ loading and sharing

    @classmethod
    def load(
        cls,
        folder: Path,
        sources: Sequence[str],
        *,
        ids: Sequence[int] | None = None,
        data: bytes | None = None,
        ef_search: int = 128,
    ) -> FaissDenseStore:
        """The store saved in ``folder`` (or from ``data``, the file's bytes when already read).
        ``sources`` is the document of each stored vector, in order, and ``ids`` their ids
        (positions 0..n-1 when None: the file keeps vectors only, the index keeps the rest)."""
        import faiss

        if data is not None:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        else:
            index = faiss.read_index(str(folder / FILE))
        store = cls.__new__(cls)
        store.index = index
        store.dimension = index.d
        store.ef_search = ef_search
        store._init_rows(ids, sources, index.ntotal)
        return store

    @property
    def kind_detail(self) -> dict[str, Any]:
        """How it searches, for the manifest: {'type': 'flat'} or the HNSW parameters."""
        import faiss

        if isinstance(self.index, faiss.IndexHNSW):
            return {"type": "hnsw", "M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
        return {"type": "flat"}

    def vector(self, position: int) -> np.ndarray:
        return self.index.reconstruct(int(position))

    def vectors(self) -> np.ndarray:
        n = self.index.ntotal
        return self.index.reconstruct_n(0, n) if n else np.zeros((0, self.dimension), np.float32)

    # ------------------------------------------------------------ internals

    def _search(self, q: np.ndarray, want: int):
        import faiss

        if isinstance(self.index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, want))
            return self.index.search(q, want, params=params)
        return self.index.search(q, want)

    def _scores_of(self, q: np.ndarray, ids: Sequence[int], n: int) -> list[tuple[int, float]]:
        position = self._positions()
        found = []
        for i in dict.fromkeys(int(x) for x in ids):
            k = position.get(i)
            if k is not None and self.live[k]:
                found.append((i, float(self.index.reconstruct(k) @ q)))
        found.sort(key=lambda p: (-p[1], p[0]))
        return found[:n]
