"""What the in-process stores share: the caller's ids and documents of their rows (positions in
the FAISS or BM25 index), and a mask of the rows removed or replaced."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import numpy as np


class MaskedRows:
    """Rows (positions) with an id and a source each; removed rows are masked, never deleted."""

    def _init_rows(self, ids: Sequence[int] | None, sources: Sequence[str], n: int) -> None:
        self._ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        self._sources = sources  # any sequence; made a list on the first add
        self.live = np.ones(n, bool)
        self._position: dict[int, int] | None = None if ids is None or n else {}

    def _append_rows(self, ids: Sequence[int], sources: Sequence[str]) -> None:
        """Rows for a new batch, after the existing ones; a row whose id is stored already is masked."""
        ids = np.asarray(ids, dtype=np.int64)
        position = self._positions()
        for i in ids.tolist():  # an id stored already is replaced: its old row is masked
            old = position.get(i)
            if old is not None:
                self.live[old] = False
        start = len(self._ids)
        self._ids = np.concatenate([self._ids, ids])
        if not isinstance(self._sources, list):
            self._sources = list(self._sources)
        self._sources.extend(sources)
        self.live = np.concatenate([self.live, np.ones(len(ids), bool)])
        for k, i in enumerate(ids.tolist()):
            position[i] = start + k

    def remove(self, sources: Iterable[str]) -> int:
        """Mask every row of these documents; how many were live."""
        gone = set(sources)
        hit = np.fromiter((s in gone for s in self._sources), bool, len(self._sources)) & self.live
        self.live[hit] = False
        return int(hit.sum())

    def count(self) -> int:
        return int(self.live.sum())

    def with_live(self, live: np.ndarray):
        """A copy sharing the index, with ``live`` (a bool per row) as its mask."""
        other = copy.copy(self)
        other.live = live
        return other

    def _positions(self) -> dict[int, int]:
        if self._position is None:
            self._position = {int(i): k for k, i in enumerate(self._ids.tolist())}
        return self._position
