"""Offline extractive question answering over a folder of news articles, with citations.

    import qa
    qa.build_index()                       # incremental; returns a BuildReport
    qa.retrieve("Who plays Irving?", k=5)  # -> list[qa.Passage]
    qa.answer("Who plays Irving?")         # -> qa.Answer (text with [n] markers, citations)

Nothing heavy happens at import: the model and the index load on first use, and the engine
(with the index, numpy and orjson behind it) is imported when first asked for, so a tool of the
package such as ``python -m qa.reading.train`` runs without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import (
    CorpusError,
    IndexCorruptError,
    IndexFolderError,
    IndexStaleError,
    InputError,
    ModelError,
    QAError,
)
from .settings import Settings
from .types import Answer, AnswerSpan, BuildReport, Chunk, Citation, Document, Passage, Span

if TYPE_CHECKING:
    from .engine import Engine, get_engine

__all__ = [
    "Answer",
    "AnswerSpan",
    "BuildReport",
    "Chunk",
    "Citation",
    "CorpusError",
    "Document",
    "Engine",
    "IndexCorruptError",
    "IndexFolderError",
    "IndexStaleError",
    "InputError",
    "ModelError",
    "Passage",
    "QAError",
    "Settings",
    "Span",
    "answer",
    "build_index",
    "get_engine",
    "retrieve",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``qa.Engine`` and ``qa.get_engine``, imported on first use (PEP 562)."""
    if name in ("Engine", "get_engine"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")


def build_index(
    corpus_dir: str | Path | None = None, index_dir: str | Path | None = None, *, force: bool = False
) -> BuildReport:
    """Bring the index up to date with the corpus: embeds only new or changed files."""
    from .engine import get_engine

    return get_engine(corpus_dir, index_dir).build_index(force=force)


def retrieve(
    question: str,
    k: int = 5,
    *,
    corpus_dir: str | Path | None = None,
    index_dir: str | Path | None = None,
    since=None,
    until=None,
    sources=None,
) -> list[Passage]:
    """The k best passages for the question, best first (builds the index on first use); only
    from articles dated ``since``..``until`` and from ``sources`` when given."""
    from .engine import get_engine

    return get_engine(corpus_dir, index_dir).retrieve(question, k, since=since, until=until, sources=sources)


def answer(
    question: str,
    history: list[dict] | None = None,
    k: int = 5,
    *,
    corpus_dir: str | Path | None = None,
    index_dir: str | Path | None = None,
    since=None,
    until=None,
    sources=None,
) -> Answer:
    """An extractive answer with citations, or an abstention when the articles don't support one;
    ``since``/``until`` (YYYY-MM-DD, YYYY-MM or YYYY) and ``sources`` restrict the articles searched."""
    from .engine import get_engine

    return get_engine(corpus_dir, index_dir).answer(question, history, k, since=since, until=until, sources=sources)
