"""Interfaces of the pipeline's stages (``typing.Protocol``). A new implementation of a stage is a
class with these members, chosen by name in Settings, that passes the stage's contract suite in
``tests/contracts/``:

- ``Embedder``: texts -> normalized vectors (``embedder``: 'onnx', 'sentence-transformers');
- ``DenseStore``: chunk vectors, searched by inner product (``store``: 'faiss', 'milvus');
- ``LexicalStore``: chunk texts, searched by BM25 (``store``: 'faiss' pairs it with bm25s);
- ``Reader``: retrieved passages -> an Answer (``reader``: 'picker', 'trained').

Stores are keyed by int64 chunk ids chosen by the caller and remove by document (``sources``).
Values passed between stages are the dataclasses of ``qa.types``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .index import Index
    from .retrieval import Hits
    from .types import Answer, ChunkBatch


@runtime_checkable
class Embedder(Protocol):
    """Texts to vectors. ``model_id`` is recorded in the index manifest (an index built by
    another model is rebuilt); ``max_tokens`` is the model's window."""

    model_id: str
    dimension: int
    max_tokens: int

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """(len(texts), dimension) float32, each row L2-normalized; computed on the process's one
        inference thread (``embedding._Inference``): a question in one call on one core, a build
        batch by batch, so a question asked meanwhile waits for one batch at most."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens of each text, special tokens excluded."""
        ...


@runtime_checkable
class DenseStore(Protocol):
    """Chunk vectors searched by inner product (cosine: the vectors are normalized)."""

    kind: str  # the name it is chosen by, and recorded under in the manifest

    def add(self, batch: ChunkBatch) -> None:
        """Store ``batch.vectors`` under ``batch.ids`` (an id stored already is replaced)."""
        ...

    def remove(self, sources: Iterable[str]) -> int:
        """Forget every chunk of these documents; how many chunks were removed."""
        ...

    def search(self, vector: np.ndarray, n: int, ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """The ``n`` best (id, inner product), best first, ties by id; only among ``ids`` when
        given. Removed chunks are never found; ``n`` larger than the store returns them all."""
        ...

    def count(self) -> int:
        """Chunks stored and not removed."""
        ...

    def save(self, folder: Path) -> None:
        """Write the store (or, for a server store, where to find it) into ``folder``."""
        ...


@runtime_checkable
class LexicalStore(Protocol):
    """Chunk texts searched by BM25."""

    kind: str

    def add(self, batch: ChunkBatch) -> None:
        """Index ``batch.texts`` under ``batch.ids``."""
        ...

    def remove(self, sources: Iterable[str]) -> int: ...

    def search(self, query: str, n: int, ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """The ``n`` best (id, BM25 score) with a positive score for the question text ``query``,
        best first, ties by id; only among ``ids`` when given."""
        ...

    def count(self) -> int: ...

    def save(self, folder: Path) -> None: ...


@runtime_checkable
class Reader(Protocol):
    """Turns the passages retrieved for a question into an Answer: verbatim quotes with ``[n]``
    citations, or an abstention (``Answer.abstained``) when they do not support one.

    ``hits.passages`` are the retrieved passages, best first; ``index`` gives their chunks'
    sentences; ``query`` is what was searched for (the follow-up rewrite, or the question).
    Every quote must be ``file_text[start:end]`` of its citation, and ``Answer.reader`` the
    reader's ``name``."""

    name: str

    def read(self, question: str, hits: Hits, index: Index, query: str) -> Answer: ...
