"""Read a corpus folder into Documents: the date header, a readable title and the raw text.

Offsets everywhere refer to ``Document.text``, which is the file decoded as UTF-8 with
universal newlines -- exactly what ``open(path, encoding="utf-8").read()`` returns.
Bad files are skipped with a warning that names them; nothing here prints.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import CorpusError
from .types import Document

log = logging.getLogger(__name__)

EXTENSIONS = (".txt", ".md")
_HEADER = re.compile(r"\A\ufeff?\s*date\s+(\d{4}-\d{2}-\d{2})\b[ \t]*\n?[ \t]*", re.IGNORECASE)
_HEADING = re.compile(r"\A\s*#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_HASHLIKE = re.compile(r"\A[0-9a-f]{8,}\Z", re.IGNORECASE)
_TITLE_CHARS = 80


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
    """A Document from a file's bytes. Raises ValueError when the file is not usable."""
    text = decode(data, source)
    date = None
    body_start = 0
    m = _HEADER.match(text)
    if m:
        try:
            date = dt.date.fromisoformat(m.group(1)).isoformat()
        except ValueError:
            log.warning("%s: header date %r is not a valid date; ignoring it", source, m.group(1))
        body_start = m.end()
    if not text[body_start:].strip():
        raise ValueError("file has a header but no text")
    return Document(
        source=source,
        title=derive_title(source, text[body_start:]),
        date=date,
        text=text,
        body_start=body_start,
        sha256=hashlib.sha256(data).hexdigest(),
    )


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


def corpus_files(corpus_dir: Path) -> Iterator[tuple[str, Path]]:
    """(source, path) for every .txt/.md file under the folder, sorted, hidden ones left out."""
    for path in sorted(corpus_dir.rglob("*")):
        rel = path.relative_to(corpus_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in EXTENSIONS:
            yield rel.as_posix(), path
        elif path.is_file():
            log.debug("%s: not a .txt or .md file; ignored", rel.as_posix())


def load_corpus(corpus_dir: str | Path, max_file_bytes: int = 5_000_000) -> tuple[list[Document], list[Skipped]]:
    """Every readable article of the folder, and the files skipped (each already logged).

    Raises CorpusError when the folder is missing or holds no readable article.
    """
    folder = Path(corpus_dir)
    if not folder.is_dir():
        raise CorpusError(f"corpus folder {str(folder)!r} does not exist (set QA_CORPUS_DIR or pass corpus_dir)")
    docs: list[Document] = []
    skipped: list[Skipped] = []
    for source, path in corpus_files(folder):
        try:
            size = path.stat().st_size
            if size > max_file_bytes:
                raise ValueError(f"file is {size:,} bytes, over the limit of {max_file_bytes:,} (max_file_bytes)")
            docs.append(parse_document(source, path.read_bytes()))
        except (OSError, ValueError) as e:
            skipped.append(Skipped(source, str(e)))
            log.warning("skipping corpus file %s: %s", source, e)
    if not docs:
        detail = f"; skipped: {', '.join(map(str, skipped))}" if skipped else ""
        raise CorpusError(f"corpus folder {str(folder)!r} has no readable .txt or .md article{detail}")
    return docs, skipped
