"""An ingested article and its file format: a front-matter block, then the text.

    ---
    title: Severance season 2 may be months away
    date: 2024-01-31
    url: https://example.com/severance-season-2
    outlet: Example News
    author: Jane Doe
    kind: html
    pages: 0 1834 4012
    ---

    The article's text, paragraphs separated by blank lines ...

Keys are lower-case, one per line, values on one line (newlines in them become spaces). Every
key is optional; unknown keys are kept. ``pages`` (PDFs) lists where each page starts, as
offsets into the text after the block (page 1 starts at 0). ``date`` is ISO ``YYYY-MM-DD``. The
block is what the corpus loader reads (``qa.corpus.parse_document``); the old one-line
`` date YYYY-MM-DD `` header keeps working.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

FENCE = "---"
KEYS = ("title", "date", "url", "outlet", "author", "kind", "pages")  # written in this order
_KEY = re.compile(r"\A([a-z][a-z0-9_]{0,31}):[ \t]?(.*)\Z")
MAX_BLOCK_CHARS = 16_384  # a longer "front matter" is not one: the file is read as plain text


@dataclass(frozen=True)
class Article:
    """One article to write into the corpus. ``text``: plain text, paragraphs separated by a
    blank line, no front matter of its own."""

    text: str
    title: str | None = None
    date: str | None = None  # YYYY-MM-DD
    url: str | None = None
    outlet: str | None = None
    author: str | None = None
    kind: str = "text"  # "html", "feed", "pdf", "text"
    pages: list[int] | None = None  # offsets into text where each page starts (PDF), pages[0] == 0
    extra: dict[str, str] = field(default_factory=dict)

    def meta(self) -> dict[str, str]:
        """The front-matter values, as written."""
        values = {
            "title": self.title,
            "date": self.date,
            "url": self.url,
            "outlet": self.outlet,
            "author": self.author,
            "kind": self.kind,
            "pages": " ".join(map(str, self.pages)) if self.pages else None,
        }
        out = {k: _one_line(v) for k, v in values.items() if v}
        out.update({k: _one_line(v) for k, v in self.extra.items() if v and k not in out})
        return out


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


def render(article: Article) -> str:
    """The file's text: the front-matter block, a blank line, the article's text, a newline."""
    lines = [FENCE, *(f"{k}: {v}" for k, v in article.meta().items()), FENCE, ""]
    body = article.text.strip("\n")
    return "\n".join(lines) + "\n" + body + "\n"


def parse_front_matter(text: str) -> tuple[dict[str, str], int] | None:
    """(values, offset where the article text starts) when ``text`` begins with a front-matter
    block (a BOM and blank lines before it allowed); None when it does not (then it is plain text).
    A block without a closing fence, with a line that is not ``key: value``, or longer than
    ``MAX_BLOCK_CHARS`` is not a block."""
    m = re.match(r"\A\ufeff?\s*", text)
    start = m.end() if m else 0
    if not text.startswith(FENCE + "\n", start):
        return None
    end = text.find("\n" + FENCE, start + len(FENCE))
    if end < 0 or end - start > MAX_BLOCK_CHARS:
        return None
    close = end + 1 + len(FENCE)
    if close < len(text) and text[close] not in "\n":
        return None
    values: dict[str, str] = {}
    for line in text[start + len(FENCE) + 1 : end].split("\n"):
        if not line.strip():
            continue
        km = _KEY.match(line.rstrip())
        if not km:
            return None
        values[km.group(1)] = km.group(2).strip()
    body = close + 1 if close < len(text) else close
    while body < len(text) and text[body] == "\n":
        body += 1
    return values, body


def check_date(value: str | None) -> str | None:
    """``value`` as ISO YYYY-MM-DD if it is a valid date (a longer ISO timestamp is cut to its
    date), else None."""
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value).strip()[:10]).isoformat()
    except ValueError:
        return None


def page_starts(values: dict[str, str]) -> list[int] | None:
    """The ``pages`` value as offsets (relative to the text), or None when absent or malformed."""
    raw = values.get("pages")
    if not raw:
        return None
    try:
        pages = [int(x) for x in raw.split()]
    except ValueError:
        return None
    if not pages or pages[0] != 0 or any(b < a for a, b in zip(pages, pages[1:], strict=False)):
        return None
    return pages


def text_hash(text: str) -> str:
    """sha256 of an article's text with whitespace normalized: the same story saved twice (or
    reached by another URL) is a duplicate."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def file_name(article: Article) -> str:
    """A readable, unique-enough file name: the title's slug (ASCII, at most 60 characters) and
    12 hex digits of the text's hash, ``.txt``."""
    title = article.title or article.text[:60]
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60].rstrip("-") or "article"
    return f"{slug}-{text_hash(article.text)[:12]}.txt"
