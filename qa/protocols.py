"""Interfaces of the pipeline's stages (``typing.Protocol``): a new implementation of a stage is a
class with these members, chosen by name in Settings. (The Embedder protocol lives with its
implementation in ``embedding.py``.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .index import Index
    from .retrieval import Hits
    from .types import Answer


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
