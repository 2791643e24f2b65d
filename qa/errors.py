"""One error hierarchy. The library raises these; the CLI and the UI translate them.

Messages are one line, name the bad value or path (``show_path``), and stay short (``shorten``).
"""

from __future__ import annotations

import math
import os
import reprlib
from typing import Any


class QAError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(QAError, ValueError):
    """A bad argument: an empty question, a k out of range, ..."""


class CorpusError(QAError):
    """The corpus folder is missing, empty, or holds no readable article."""


class IndexCorruptError(QAError):
    """The index on disk is unreadable, half-written or fails its checksums."""


class IndexFolderError(QAError):
    """The index folder cannot be created, locked, read or written: the path is a file or a
    device, its parent folder is missing, a name is too long, no permission, the disk is full.
    The message names the path and the operating system's reason. Not a corrupt index: the
    environment has to change (another ``index_dir``), so nothing is rebuilt."""


class IndexStaleError(QAError):
    """The index was built with another model, chunking or format version."""


class ModelError(QAError):
    """The embedding model or an optional dependency could not be loaded."""


def show_path(path: object, limit: int = 120) -> str:
    """A path for an error message: its repr (quoted, control characters and lone surrogates
    escaped, so one printable line), with the middle elided by "…" when longer than ``limit``,
    so that both the start and the file name stay readable."""
    try:
        text = repr(os.fspath(path))  # type: ignore[arg-type]
    except TypeError:
        text = repr(path)
    return shorten(text, limit, middle=True)


def shorten(text: object, limit: int = 160, *, middle: bool = False) -> str:
    """``str(text)`` on one line, at most ``limit`` characters ("…" marks what was cut), safe to
    print as UTF-8."""
    s = " ".join(str(text).split()).encode("utf-8", "backslashreplace").decode("utf-8")
    if len(s) <= limit:
        return s
    if not middle:
        return s[: limit - 1] + "…"
    head = (limit - 1) // 3
    return s[:head] + "…" + s[len(s) - (limit - 1 - head) :]


class _Short(reprlib.Repr):
    """reprlib's shortened repr, safe for integers too long for Python to print."""

    def repr_int(self, x: int, level: int) -> str:
        if abs(x) < 10**self.maxlong:
            return repr(x)
        digits = int((abs(x).bit_length() - 1) * math.log10(2))  # 10**digits <= |x|
        while 10**digits <= abs(x):
            digits += 1
        return f"{'a negative' if x < 0 else 'an'} integer of {digits:,} digits"


_SHORT = _Short()
_SHORT.maxlong = _SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = _SHORT.maxdeque = 4
_SHORT.maxlevel = 2


def show(value: Any, limit: int = 80) -> str:
    """``value`` for an error message: its repr, shortened to ``limit`` characters, and safe for
    anything (an int too long for Python to print, a lone surrogate, a repr that raises).
    """
    try:
        text = _SHORT.repr(value)
    except Exception:  # noqa: BLE001 - a value we cannot even describe
        text = f"<{type(value).__name__} object>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"
