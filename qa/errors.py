"""One error hierarchy. The library raises these; the CLI and the UI translate them."""

from __future__ import annotations


class QAError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(QAError, ValueError):
    """A bad argument: an empty question, a k out of range, ..."""


class CorpusError(QAError):
    """The corpus folder is missing, empty, or holds no readable article."""


class IndexCorruptError(QAError):
    """The index on disk is unreadable, half-written or fails its checksums."""


class IndexStaleError(QAError):
    """The index was built with another model, chunking or format version."""


class ModelError(QAError):
    """The embedding model or an optional dependency could not be loaded."""
