"""The default LexicalStore: bm25s over our own tokens (``qa.lexical.tokenize``: stop words out,
Snowball stems), with the term statistics (document frequencies) kept beside it so that several
stores (the segments of an index) can be scored with one global idf (``term_scores``).

bm25s has no incremental update: ``add`` keeps the tokens and the BM25 index is rebuilt at the
next search or save. Removed chunks are masked. Ids are the caller's, as in FaissDenseStore.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import lexical
from ..types import ChunkBatch
from .rows import MaskedRows

BM25_DIR = "bm25"
TERMS = "terms.json"
NO_TERMS = "\x00"  # the one token of a chunk without words (bm25s needs a token per document)


def bm25s_module():
    """bm25s, imported; its import sets its own logger to DEBUG (printing "Building index from
    tokens" under any logging set-up): we put it back under the application's configuration."""
    import bm25s

    logger = logging.getLogger("bm25s")
    if logger.level == logging.DEBUG:
        logger.setLevel(logging.NOTSET)
    return bm25s


def idf(n: int, df: int) -> float:
    """BM25's idf, as bm25s ('lucene') computes it."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def write_terms(folder: Path, n: int, df: dict[str, int]) -> None:
    """The term statistics file: chunks counted and the document frequency of each term."""
    (folder / TERMS).write_text(json.dumps({"n": n, "df": df}, ensure_ascii=False), encoding="utf-8")


class Bm25LexicalStore(MaskedRows):
    kind = "faiss"  # chosen together with FaissDenseStore by store=faiss

    def __init__(self) -> None:
        self.bm25 = None
        self._tokens: list[list[str]] | None = []
        self._texts: Sequence[str] | None = None
        self._init_rows([], [], 0)
        self.n = 0  # chunks the term statistics count (removed ones included, as in Lucene)
        self.df: dict[str, int] = {}

    # ------------------------------------------------------------ protocol

    def add(self, batch: ChunkBatch) -> None:
        tokens = self._all_tokens()
        new = [lexical.tokenize(t) for t in batch.texts]
        tokens.extend(new)
        df = Counter(self.df)
        df.update(t for toks in new for t in set(toks))
        self.df, self.n = dict(df), self.n + len(new)
        self._append_rows(batch.ids, batch.sources)
        self.bm25 = None

    def search(self, query: str, n: int, ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        if n <= 0:
            return []
        scores = self.term_scores(lexical.tokenize(query))
        if ids is not None:
            position = self._positions()
            rows = [k for k in (position.get(int(i)) for i in dict.fromkeys(ids)) if k is not None]
        else:
            rows = np.flatnonzero(scores > 0)
        found = [(int(self._ids[k]), float(scores[k])) for k in rows if scores[k] > 0]
        found.sort(key=lambda p: (-p[1], p[0]))
        return found[:n]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_terms(folder, self.n, self.df)
        self._built().save(str(folder / BM25_DIR), show_progress=False)

    # ------------------------------------------------------------ scores, loading and sharing

    def term_scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every position for the query terms (zeros for removed ones and when no
        term is known), with this store's idf."""
        out = np.zeros(len(self._ids), dtype=np.float32)
        bm25 = self._built() if len(self._ids) else None
        known = [t for t in terms if bm25 is not None and t in bm25.vocab_dict]
        if known:
            out[:] = np.asarray(bm25.get_scores(known), dtype=np.float32)
        if not self.live.all():
            out[~self.live] = 0.0
        return out

    def knows(self, term: str) -> bool:
        return term in self._built().vocab_dict if len(self._ids) else False

    @classmethod
    def load(
        cls,
        folder: Path,
        sources: Sequence[str],
        *,
        ids: Sequence[int] | None = None,
        terms: dict | None = None,
        texts: Sequence[str] | None = None,
        mmap: bool = False,
    ) -> Bm25LexicalStore:
        """The store saved in ``folder``; ``sources`` the document of each position and
        ``ids`` their ids (positions when None); ``terms`` the parsed terms file when already read; ``texts`` the chunk texts,
        needed only to ``add`` to a loaded store (bm25s keeps scores, not tokens)."""
        if terms is None:
            terms = json.loads((folder / TERMS).read_text(encoding="utf-8"))
        store = cls.__new__(cls)
        store.bm25 = bm25s_module().BM25.load(str(folder / BM25_DIR), show_progress=False, verbosity=0, mmap=mmap)
        store._tokens = None
        store._texts = texts
        store._init_rows(ids, sources, len(sources))
        store.n, store.df = int(terms["n"]), terms["df"]
        return store

    # ------------------------------------------------------------ internals

    def _all_tokens(self) -> list[list[str]]:
        if self._tokens is None:
            if self._texts is None or len(self._texts) != len(self._ids):
                raise ValueError("this BM25 store was loaded without its texts: it cannot be added to")
            self._tokens = [lexical.tokenize(t) for t in self._texts]
        return self._tokens

    def _built(self):
        if self.bm25 is None:
            tokens = self._all_tokens()
            bm25 = bm25s_module().BM25()
            bm25.index(tokens if any(tokens) else [[NO_TERMS] for _ in tokens], show_progress=False)
            self.bm25 = bm25
        return self.bm25
