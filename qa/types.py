"""The typed values passed between stages. Frozen dataclasses, each with ``to_dict()``.

Offsets are data: every ``start``/``end`` is a character offset into the source file's text
exactly as it is on disk (decoded as UTF-8), so ``file_text[start:end] == text``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _to_dict(v) for k, v in obj.items()}
    return obj


class _Dictable:
    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this value (nested values converted too)."""
        return _to_dict(self)


@dataclass(frozen=True, slots=True)  # slots: an index of 200,000 chunks holds a million spans
class Span(_Dictable):
    """A half-open character range ``[start, end)`` into a document's text."""

    start: int
    end: int


@dataclass(frozen=True)
class Document(_Dictable):
    """One corpus file: its raw text and what was read from it."""

    source: str  # file name relative to the corpus folder, with "/" separators
    title: str
    date: str | None  # ISO date "YYYY-MM-DD" from the header, or None
    text: str  # the whole file as decoded, header included: offsets index into this
    body_start: int  # offset where the article text begins (after the date header or front matter)
    sha256: str  # hash of the file's bytes
    # from a front-matter block (ingested pages, feeds, PDFs): url, outlet, author, kind, and
    # pages (file offsets where each page starts); empty for a plain file
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk(_Dictable):
    """An indexed unit: consecutive sentences of one document."""

    source: str
    start: int
    end: int
    text: str  # == document.text[start:end]
    sentences: tuple[Span, ...] = ()  # the sentences inside, as file offsets, in order


@dataclass(frozen=True)
class Passage(_Dictable):
    """A retrieved chunk with its score (higher is better) and where it comes from."""

    text: str
    score: float
    source: str
    title: str
    date: str | None
    start: int
    end: int
    dense_score: float | None = None  # cosine similarity of query and chunk
    bm25_score: float | None = None  # BM25 score of the chunk (None when not in BM25's list)
    chunk_id: int = -1  # row in the index's chunk table
    url: str | None = None  # the original page, for an ingested article
    outlet: str | None = None  # the site or publication, for an ingested article
    page: int | None = None  # PDF: the page the passage starts on (1-based)


@dataclass(frozen=True)
class Citation(_Dictable):
    """Where a quote of an answer comes from; ``quote == file_text[start:end]``."""

    number: int  # the n of the "[n]" marker in Answer.text
    source: str
    title: str
    date: str | None
    start: int
    end: int
    quote: str
    url: str | None = None  # the original page, for an ingested article
    outlet: str | None = None  # the site or publication
    page: int | None = None  # PDF: the page the quote starts on (1-based)


@dataclass(frozen=True)
class AnswerSpan(_Dictable):
    """The short answer the reader pointed at (e.g. "John Turturro"): ``file_text[start:end] == text``,
    always inside one of the answer's citations."""

    text: str
    source: str
    start: int
    end: int


@dataclass(frozen=True)
class Answer(_Dictable):
    """An extractive answer: quotes with ``[n]`` markers, or an abstention."""

    text: str  # quotes and [n] markers only; "" when abstained
    citations: list[Citation] = field(default_factory=list)
    confidence: float = 0.0  # in [0, 1]
    abstained: bool = True
    passages: list[Passage] = field(default_factory=list)  # retrieved, best first, up to k
    query: str = ""  # what was searched for (the question, rewritten with history for follow-ups)
    filter: str = ""  # the articles searched when restricted ("articles dated 2025-01-01 to 2025-12-31"), else ""
    message: str = ""  # a plain sentence for people: why it abstained, or empty
    span: AnswerSpan | None = None  # the short answer inside the quotes (trained reader only), or None
    reader: str = ""  # which reader made it: "trained" or "picker"


@dataclass(frozen=True)
class BuildReport(_Dictable):
    """What ``build_index`` did."""

    index_dir: str
    documents: int  # documents in the index after the build
    chunks: int  # chunks in the index after the build
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files not read, each "name: reason"
    embedded_chunks: int = 0  # chunks sent to the embedder in this build
    rebuilt: str = ""  # why the whole index was rebuilt ("" when incremental or nothing to do)
    seconds: float = 0.0
    segments: int = 0  # segments of the index after the build
    dense: str = ""  # how its vectors are searched: "flat" (exact), "hnsw" or both

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.rebuilt)


@dataclass(frozen=True, eq=False)
class ChunkBatch:
    """Chunks handed to a store: parallel columns, one entry per chunk.

    ``ids`` are the store's keys (int64, unique in the store); ``sources`` the document (corpus
    file) of each chunk, what ``remove`` goes by; ``checksums`` the sha256 of that document's
    text; ``texts`` the chunk texts (what a lexical store indexes); ``vectors`` the normalized
    chunk embeddings, (n, dimension) float32 (what a dense store indexes; None for a store that
    needs none)."""

    ids: Any  # np.ndarray of int64
    sources: list[str]
    texts: list[str]
    vectors: Any = None  # np.ndarray (n, dimension) float32, or None
    checksums: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        lengths = {"sources": len(self.sources), "texts": len(self.texts)}
        if self.vectors is not None:
            lengths["vectors"] = len(self.vectors)
        if self.checksums is not None:
            lengths["checksums"] = len(self.checksums)
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(
                f"ChunkBatch columns differ in length: {n} ids, " + ", ".join(f"{v} {k}" for k, v in bad.items())
            )

    def __len__(self) -> int:
        return len(self.ids)
