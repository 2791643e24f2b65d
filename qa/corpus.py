"""Read a corpus folder into Documents: the date header, a readable title and the raw text.

Offsets everywhere refer to ``Document.text``, which is the file decoded as UTF-8 with
universal newlines -- exactly what ``open(path, encoding="utf-8").read()`` returns.
Bad files are skipped with a warning that names them; nothing here prints.

Only regular files inside the folder are ever opened: symbolic links (to files or folders,
dangling or looping) and special files (FIFOs, sockets, devices) are skipped with a warning,
never followed or opened; files are read with ``O_NOFOLLOW`` and checked with ``fstat`` once
open, and the size limit counts the bytes actually read.
"""

from __future__ import annotations

import bisect
import datetime as dt
import errno
import hashlib
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CorpusError, InputError, shorten, show_path
from .types import Document

log = logging.getLogger(__name__)

EXTENSIONS = (".txt", ".md")
_HEADER = re.compile(r"\A\ufeff?\s*date\s+(\d{4}-\d{2}-\d{2})\b[ \t]*\n?[ \t]*", re.IGNORECASE)
_HEADING = re.compile(r"\A\s*#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_HASHLIKE = re.compile(r"\A[0-9a-f]{8,}\Z", re.IGNORECASE)
_TITLE_CHARS = 80
_READABLE = re.compile(r"[^\W_]")  # a letter or a digit, in any script
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | _CLOEXEC
MAX_DEPTH = 32  # folders nested deeper are not read (each level holds a file descriptor)


@dataclass(frozen=True)
class Skipped:
    """A corpus file that was not read, and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def decode(data: bytes, source: str) -> str:
    """UTF-8 text with universal newlines; raises ValueError naming the problem."""
    if not data.strip():
        raise ValueError("file is empty")
    if b"\x00" in data:
        raise ValueError("file looks binary (it contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 (bad byte at position {e.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_document(source: str, data: bytes) -> Document:
    """A Document from a file's bytes. Raises ValueError when the file is not usable.

    The article's date, title and source come from a front-matter block (``---`` lines, as
    ``python -m qa add`` writes them: ``qa/ingest/article.py``) or from a leading
    `` date YYYY-MM-DD `` line."""
    from .ingest.article import check_date, page_starts, parse_front_matter

    text = decode(data, source)
    date = None
    body_start = 0
    meta: dict = {}
    title = None
    front = parse_front_matter(text)
    if front is not None:
        values, body_start = front
        date = check_date(values.get("date"))
        if values.get("date") and date is None:
            log.warning("%s: front-matter date %r is not a valid date; ignoring it", source, values["date"])
        title = values.get("title") or None
        meta = {k: values[k] for k in ("url", "outlet", "author", "kind") if values.get(k)}
        pages = page_starts(values)
        if pages is not None:
            meta["pages"] = [body_start + p for p in pages]
    else:
        m = _HEADER.match(text)
        if m:
            try:
                date = dt.date.fromisoformat(m.group(1)).isoformat()
            except ValueError:
                log.warning("%s: header date %r is not a valid date; ignoring it", source, m.group(1))
            body_start = m.end()
    if not text[body_start:].strip():
        raise ValueError("file has a header but no text")
    if not _READABLE.search(text, body_start):
        raise ValueError("no readable text (not one letter or digit)")
    return Document(
        source=source,
        title=title or derive_title(source, text[body_start:]),
        date=date,
        text=text,
        body_start=body_start,
        sha256=hashlib.sha256(data).hexdigest(),
        meta=meta,
    )


def page_of(meta: dict, offset: int) -> int | None:
    """The 1-based page holding a file offset, for a document with a page map; else None."""
    pages = meta.get("pages") if meta else None
    if not pages:
        return None
    return max(1, bisect.bisect_right(pages, offset))


def derive_title(source: str, body: str) -> str:
    """A markdown heading if the body starts with one; else a readable file name; else the
    first sentence of the body, shortened at a word boundary."""
    m = _HEADING.match(body)
    if m:
        return m.group(1).strip()
    stem = Path(source).stem
    name = re.sub(r"\A\d+[_\-\s]+", "", stem)
    if name and not _HASHLIKE.match(name) and re.search(r"[A-Za-z]{3}", name):
        return re.sub(r"[_\s]+", " ", name).strip()
    first = body.strip().split("\n", 1)[0].strip()
    first = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    if len(first) <= _TITLE_CHARS:
        return first.rstrip(".")
    cut = first[:_TITLE_CHARS].rsplit(" ", 1)[0]
    return cut.rstrip(",;:-– ") + "…"


def read_regular_file(path: str | Path, max_bytes: int, *, dir_fd: int | None = None) -> bytes:
    """The bytes of the regular file at ``path`` (relative to ``dir_fd`` when given), at most
    ``max_bytes`` of them.

    Never follows a symbolic link (``O_NOFOLLOW``) and never reads anything but a regular file:
    the opened descriptor is checked with ``fstat``, so a file swapped for a link, a FIFO or a
    device after it was listed is refused, not read (``O_NONBLOCK``: opening a FIFO does not
    block). The size limit applies to the bytes actually read, not to the reported size (files
    under /proc report 0). Raises ValueError naming the problem, OSError when the system refuses.
    """
    try:
        fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW on a link
            raise ValueError("is a symbolic link; links are not followed") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"file is {st.st_size:,} bytes, over the limit of {max_bytes:,} (max_file_bytes)")
        parts: list[bytes] = []
        size = 0
        while size <= max_bytes:
            block = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not block:
                break
            parts.append(block)
            size += len(block)
        if size > max_bytes:
            raise ValueError(f"file is over the limit of {max_bytes:,} bytes (max_file_bytes)")
        return b"".join(parts)
    finally:
        os.close(fd)


def read_corpus_file(corpus_dir: str | Path, source: str, max_bytes: int) -> bytes:
    """The bytes of the corpus file ``source`` (a relative POSIX path under ``corpus_dir``), read
    as ``read_regular_file`` does; no folder on the way may be a link either. Raises ValueError
    when ``source`` leaves the folder or names no regular file, OSError when the system refuses."""
    parts = source.split("/")
    if not source or "\\" in source or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{show_path(source)} is not a file name inside the corpus folder")
    fd = os.open(corpus_dir, _DIR_FLAGS)  # the folder itself may be a link: the user named it
    try:
        for part in parts[:-1]:
            try:
                sub = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ValueError(f"folder {show_path(part, 60)} is a symbolic link or not a folder") from None
                raise
            os.close(fd)
            fd = sub
        return read_regular_file(parts[-1], max_bytes, dir_fd=fd)
    finally:
        os.close(fd)


def scan_corpus(
    corpus_dir: Path, stats: dict[str, tuple[int, int, int]] | None = None
) -> tuple[list[str], list[Skipped]]:
    """The sources (relative POSIX paths, sorted) of the regular .txt/.md files under the folder,
    and the entries refused because they are symbolic links (to files or folders, dangling or
    looping: never followed, linked folders are not entered) or special files (FIFOs, sockets,
    devices), or because their name is not valid UTF-8 (shown with \\x escapes). Hidden names are
    left out, other extensions ignored. Raises OSError for the folder. With ``stats``, each
    source's (size, mtime_ns, ctime_ns) is put there (from the directory entry: no second look-up)."""
    sources: list[str] = []
    skipped: list[Skipped] = []
    fd = os.open(corpus_dir, _DIR_FLAGS)
    try:
        _scan(fd, "", sources, skipped, 0, stats)
    finally:
        os.close(fd)
    return sources, skipped


def _scan(
    dir_fd: int, prefix: str, sources: list[str], skipped: list[Skipped], depth: int, stats: dict | None = None
) -> None:
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        rel = prefix + entry.name
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # a name in another encoding: it could not be cited or sent as JSON
            shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
            skipped.append(Skipped(shown, "file name is not valid UTF-8; rename it"))
            continue
        try:
            if entry.is_symlink():
                skipped.append(Skipped(rel, "is a symbolic link; links are not followed"))
            elif entry.is_dir(follow_symlinks=False):
                if depth >= MAX_DEPTH:
                    skipped.append(Skipped(rel, f"folder is nested more than {MAX_DEPTH} levels deep; not read"))
                    continue
                sub = os.open(entry.name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
                try:
                    _scan(sub, rel + "/", sources, skipped, depth + 1, stats)
                finally:
                    os.close(sub)
            elif entry.is_file(follow_symlinks=False):
                if os.path.splitext(entry.name)[1].lower() in EXTENSIONS:
                    sources.append(rel)
                    if stats is not None:
                        info = entry.stat(follow_symlinks=False)
                        stats[rel] = (info.st_size, info.st_mtime_ns, info.st_ctime_ns)
                else:
                    log.debug("%s: not a .txt or .md file; ignored", rel)
            else:
                mode = entry.stat(follow_symlinks=False).st_mode
                skipped.append(Skipped(rel, f"is {_kind(mode)}, not a regular file"))
        except OSError as e:
            skipped.append(Skipped(rel, f"cannot be read: {e.strerror or e}"))


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "a special file"


def load_corpus(corpus_dir: str | Path, max_file_bytes: int = 5_000_000) -> tuple[list[Document], list[Skipped]]:
    """Every readable article of the folder, and the files skipped (each already logged).

    Only regular files inside the folder are read: symbolic links and special files are skipped
    with a warning (see ``scan_corpus``). Raises InputError for an empty path, CorpusError when
    the folder is missing, unreadable or holds no readable article.
    """
    docs, _, skipped, _ = scan_documents(corpus_dir, max_file_bytes)
    return [d for d, _ in docs], skipped


def scan_documents(
    corpus_dir: str | Path, max_file_bytes: int = 5_000_000, known: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[list[tuple[Document, tuple[int, int, int]]], set[str], list[Skipped], list[str]]:
    """Like ``load_corpus``, with each document's (size, mtime_ns, ctime_ns); a file whose size,
    ``mtime_ns`` and ``ctime_ns`` are those ``known`` records for it is not read at all (the
    change time catches a file replaced with its old size and modification time, as ``cp -p``
    does; nobody can set it): its source is in the
    returned set (an index of 200,000 articles is brought up to date without reading them).
    The last item is every source read or recognised, in corpus order."""
    if str(corpus_dir) == "":
        raise InputError("corpus folder is an empty path. Name a folder of .txt or .md articles.")
    folder = Path(corpus_dir)
    known = known or {}
    stats: dict[str, tuple[int, int, int]] = {}
    try:
        sources, skipped = scan_corpus(folder, stats)
    except FileNotFoundError:
        raise CorpusError(
            f"corpus folder {show_path(folder)} does not exist (set QA_CORPUS_DIR or pass corpus_dir)"
        ) from None
    except NotADirectoryError:
        raise CorpusError(
            f"corpus folder {show_path(folder)} is not a folder (set QA_CORPUS_DIR or pass corpus_dir)"
        ) from None
    except OSError as e:
        raise CorpusError(f"corpus folder {show_path(folder)} cannot be read: {shorten(e.strerror or e)}") from None
    for s in skipped:
        log.warning("skipping corpus entry %s: %s", s.source, s.reason)
    docs: list[tuple[Document, tuple[int, int, int]]] = []
    same: set[str] = set()
    order: list[str] = []
    for source in sources:
        try:
            size, mtime_ns, ctime_ns = stats[source]
            seen = known.get(source)
            if (
                seen is not None
                and seen.get("size") == size
                and seen.get("mtime_ns") == mtime_ns
                and seen.get("ctime_ns") == ctime_ns
            ):
                same.add(source)
                order.append(source)
                continue
            doc = parse_document(source, read_corpus_file(folder, source, max_file_bytes))
            docs.append((doc, (size, mtime_ns, ctime_ns)))
            order.append(source)
        except OSError as e:
            skipped.append(Skipped(source, f"cannot be read: {e.strerror or e}"))
            log.warning("skipping corpus file %s: %s", source, skipped[-1].reason)
        except ValueError as e:
            skipped.append(Skipped(source, str(e)))
            log.warning("skipping corpus file %s: %s", source, e)
    skipped.sort(key=lambda s: s.source)
    if not docs and not same:
        detail = f"; skipped: {', '.join(shorten(s, 60) for s in skipped[:3])}" if skipped else ""
        detail += f" and {len(skipped) - 3:,} more" if len(skipped) > 3 else ""
        raise CorpusError(f"corpus folder {show_path(folder)} has no readable .txt or .md article{detail}")
    return docs, same, skipped, order
