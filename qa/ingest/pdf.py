"""PDF articles: the text layer of each page (pypdf), cleaned into prose.

``article_from_pdf`` reads each page with pypdf's *layout* extraction, which keeps the vertical
gaps between lines (the plain mode loses them, and with them the paragraphs), and rebuilds the
article's text:

- running headers and footers (a line repeated at the top or bottom of most pages, digits
  aside: "Page 2 of 5", a browser's date-and-title line) and bare page numbers are dropped;
- a paragraph ends where the distance to the next line is 1.2 times the document's usual line
  distance or more (measured in tenths of the font height); on a page without such gaps, where a
  line is indented, or short enough that the next line's first word would have fit on it;
- the lines of a paragraph become one line; a word broken at a line end ("infor-" / "mation")
  is joined, unless the document spells that word with its hyphen elsewhere, the fragment is
  part of a longer compound ("state-of-the-" / "art") or the next line starts with a capital or
  a digit ("SAG-" / "AFTRA"); a line ending in a dash joins the next without a space;
- a paragraph running on over a page break stays one paragraph (the page ends mid-sentence, or
  the next page starts with a lower-case letter); otherwise pages are separated by a blank line;
- whitespace is normalized, soft hyphens and control characters removed, ligatures (ﬁ, ﬂ, ...)
  spelled out.

A page whose layout text shows side-by-side columns (several lines with a wide gap inside) is
read in plain mode instead, which follows the content stream's order (usually column after
column); it has no gaps, so paragraphs come from indents and short lines there.

``Article.pages`` holds where each page's text starts in the final text (an empty page starts
where the next one does). Encryption: a PDF that opens with the empty user password (only an
owner password, restricting printing or copying: every viewer opens it without asking) is read;
one that needs a password is refused, and no password is ever guessed. AES encryption needs the
optional ``cryptography`` package; without it such a PDF is refused as encrypted too.
"""

from __future__ import annotations

import bisect
import io
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import InputError, QAError, shorten, show_path
from .article import Article, check_date

log = logging.getLogger(__name__)

MAX_PDF_PAGES = 2000
MAX_PDF_BYTES = 50_000_000
EOF_WINDOW = 1024  # "%%EOF" must be in a PDF's last 1024 bytes (as Acrobat requires)
TITLE_CHARS = 150
MIN_GAPS = 5  # line distances needed to tell the usual one
LAYOUT_UNIT = 0.1  # pypdf's layout text puts a blank line per tenth of the font height between lines
PARAGRAPH_SPACING = 1.2  # a distance this many times the usual one between two lines ends a paragraph

_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\ufeff\ufffe\uffff]")
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_COLUMN_GAP = re.compile(r"\S {4,}\S")
_PAGE_NUMBER = re.compile(
    r"\A(?:page\s*)?[-–—]?\s*\d{1,4}\s*[-–—]?(?:\s*(?:of|/)\s*\d{1,4})?\Z|\A(?:page\s*)?[ivx]{1,5}\Z", re.IGNORECASE
)
_TERMINAL = re.compile(r"[.!?:…][\"'”’»)\]]*\Z")
_JUNK_TITLE = re.compile(r"\A(?:untitled|document\d*|.*\.(?:docx?|pdf|odt|rtf|txt|indd|qxd|pages|html?))\Z", re.I)
_WORD_PREFIX = re.compile(r"\AMicrosoft (?:Word|PowerPoint) - ", re.IGNORECASE)
_PDF_DATE = re.compile(r"\A\s*(?:D:)?(\d{4})(\d{2})(\d{2})")


def looks_like_pdf(data: bytes) -> bool:
    """Whether ``data`` starts with a PDF header (``%PDF-``; whitespace before it allowed)."""
    return bytes(data[:1024]).lstrip(b"\x00\t\n\x0c\r ").startswith(b"%PDF-")


def page_of(pages: list[int], offset: int) -> int:
    """The 1-based number of the page holding text ``offset``, from ``Article.pages`` (the
    offsets where pages start); 1 for an offset before the first page or an empty list."""
    return max(1, bisect.bisect_right(pages, offset))


def article_from_pdf(data: bytes, name: str | None = None) -> Article:
    """An ``Article`` (kind "pdf") from a PDF file's bytes: the pages' text as paragraphs, where
    each page starts, the title, date and author from the document information.

    Raises ``InputError`` naming ``name`` for a file that is not a PDF, too big, truncated,
    damaged, encrypted, or without a text layer; pypdf's warnings go to this module's debug log,
    never to the terminal."""
    label = show_path(name) if name else "the PDF"
    _check_bytes(data, label)
    with _quiet_pypdf():
        try:
            return _read(bytes(data), label)
        except QAError:
            raise
        except Exception as e:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
            raise InputError(f"{label} is not a readable PDF ({_reason(e)})") from e


def _check_bytes(data: bytes, label: str) -> None:
    """Refuse, before parsing, what is not a PDF, too big, or truncated."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"{label}: expected the PDF's bytes, not {type(data).__name__}")
    if len(data) > MAX_PDF_BYTES:
        raise InputError(f"{label} is {len(data):,} bytes; PDFs over {MAX_PDF_BYTES:,} bytes are not read")
    if not looks_like_pdf(data):
        raise InputError(f"{label} is not a PDF (it does not start with %PDF-)")
    if b"%%EOF" not in bytes(data[-EOF_WINDOW:]):
        raise InputError(f"{label} is truncated or damaged (no %%EOF marker at its end); download it again")


def _reason(error: BaseException) -> str:
    """A short, one-line reason for a pypdf failure."""
    text = str(error).strip()
    return shorten(f"{type(error).__name__}: {text}" if text else type(error).__name__, 120)


def _read(data: bytes, label: str) -> Article:
    """The article in an already checked PDF (pypdf errors propagate)."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    _decrypt(reader, label)
    n_pages = len(reader.pages)
    if n_pages > MAX_PDF_PAGES:
        raise InputError(f"{label} has {n_pages:,} pages; PDFs of more than {MAX_PDF_PAGES:,} pages are not read")
    pages = [_page_rows(reader, i, label) for i in range(n_pages)]
    text, starts = assemble(pages)
    if not any(ch.isalnum() for ch in text):
        raise InputError(f"{label} has no text layer (scanned?); OCR it first")
    info = _info(reader)
    return Article(
        text=text,
        title=_title(info.get("/Title"), text),
        date=_date(info.get("/CreationDate")),
        author=_one_line(info.get("/Author")) or None,
        kind="pdf",
        pages=starts,
    )


def _decrypt(reader, label: str) -> None:
    """Open an encrypted PDF with the empty user password, or refuse it."""
    from pypdf import PasswordType
    from pypdf.errors import DependencyError

    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("")
    except DependencyError:
        raise InputError(
            f"{label} is encrypted (AES, which needs the optional 'cryptography' package); decrypt it first"
        ) from None
    if opened == PasswordType.NOT_DECRYPTED:
        raise InputError(f"{label} is encrypted; decrypt it first")


def _info(reader) -> dict[str, str]:
    """The document information dictionary as strings (empty when missing or unreadable)."""
    try:
        meta = reader.metadata or {}
        return {str(k): str(v) for k, v in meta.items() if isinstance(k, str)}
    except Exception as e:  # noqa: BLE001 - a damaged /Info never costs the text
        log.debug("unreadable PDF metadata: %s", _reason(e))
        return {}


def _one_line(value: str | None) -> str:
    """``value`` with whitespace collapsed and control characters removed ("" for None)."""
    return " ".join(_CONTROL.sub(" ", value or "").split())


def _title(meta_title: str | None, text: str) -> str | None:
    """/Title unless it is empty or a file name ("Microsoft Word - draft.docx", "untitled");
    else the text's first paragraph (shortened at a word boundary)."""
    title = _WORD_PREFIX.sub("", _one_line(meta_title))
    if title and not _JUNK_TITLE.match(title):
        return title
    first = text.split("\n", 1)[0].strip()
    if len(first) <= TITLE_CHARS:
        return first or None
    return first[: TITLE_CHARS - 1].rsplit(" ", 1)[0].rstrip(",;:-– ") + "…"


def _date(value: str | None) -> str | None:
    """A PDF date (``D:YYYYMMDDHHmmSS+hh'mm'``) as ISO YYYY-MM-DD, or None."""
    m = _PDF_DATE.match(value or "")
    return check_date(f"{m.group(1)}-{m.group(2)}-{m.group(3)}") if m else None


# -- logging ------------------------------------------------------------------------------------


class _ToDebug(logging.Handler):
    """Re-logs pypdf's records at debug level on this module's logger."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log.debug("pypdf %s: %s", record.levelname.lower(), record.getMessage())
        except Exception:  # noqa: BLE001 - a malformed record must not break extraction
            pass


_PYPDF_LOG = logging.getLogger("pypdf")
_TO_DEBUG = _ToDebug()
_quiet_lock = threading.Lock()
_quiet_state = {"depth": 0, "propagate": True}


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """While inside, pypdf's log records (its loggers are children of "pypdf") stop at the
    "pypdf" logger and go to this module's debug log instead of the terminal. Nests and works
    across threads (the first entry installs, the last exit restores)."""
    with _quiet_lock:
        if _quiet_state["depth"] == 0:
            _quiet_state["propagate"] = _PYPDF_LOG.propagate
            _PYPDF_LOG.addHandler(_TO_DEBUG)
            _PYPDF_LOG.propagate = False
        _quiet_state["depth"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_state["depth"] -= 1
            if _quiet_state["depth"] == 0:
                _PYPDF_LOG.removeHandler(_TO_DEBUG)
                _PYPDF_LOG.propagate = bool(_quiet_state["propagate"])


# -- pages into rows ----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a page: its text (whitespace collapsed), its indent in characters, how many
    blank lines the layout put before it, and whether it had a wide run of spaces inside."""

    text: str
    indent: int = 0
    gap: int = 0
    wide: bool = False


@dataclass
class Page:
    """A page's lines, top to bottom; ``gaps``: whether its vertical spacing is known."""

    rows: list[Row] = field(default_factory=list)
    gaps: bool = True


def _page_rows(reader, index: int, label: str) -> Page:
    """Page ``index`` as rows: layout mode, or plain mode where the layout shows columns side by
    side or layout extraction fails. A page whose text cannot be extracted at all is empty."""
    page = reader.pages[index]
    try:
        text = page.extract_text(extraction_mode="layout", layout_mode_font_height_weight=LAYOUT_UNIT)
        layout = split_rows(text)
    except Exception as e:  # noqa: BLE001 - fall back to plain mode
        log.debug("%s page %d: layout extraction failed: %s", label, index + 1, _reason(e))
        layout = None
    if layout is not None and not has_columns(layout):
        return Page(layout)
    try:
        plain = split_rows(page.extract_text())
    except Exception as e:  # noqa: BLE001 - one bad page must not cost the others
        log.debug("%s page %d: text extraction failed: %s", label, index + 1, _reason(e))
        return Page(layout or [], gaps=bool(layout))
    for row in plain:
        row.gap = row.indent = 0
        row.wide = False
    return Page(plain, gaps=False)


def clean_line(line: str) -> str:
    """A line's text: ligatures spelled out, soft hyphens (but one ending the line) and control
    characters removed, whitespace collapsed."""
    line = _CONTROL.sub(" ", line.translate(_LIGATURES))
    soft_end = line.rstrip().endswith("\xad")
    line = " ".join(line.replace("\xad", "").split())
    return line + "\xad" if soft_end and line else line


def split_rows(page_text: str) -> list[Row]:
    """Rows of extracted page text; blank lines are counted into the next row's ``gap``."""
    rows: list[Row] = []
    blank = 0
    for raw in page_text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        text = clean_line(raw)
        if not text:
            blank += 1
            continue
        expanded = raw.expandtabs(4)
        indent = len(expanded) - len(expanded.lstrip())
        rows.append(Row(text, indent, blank if rows else 0, bool(_COLUMN_GAP.search(expanded.strip()))))
        blank = 0
    return rows


def has_columns(rows: list[Row]) -> bool:
    """Whether the layout text puts text side by side: several lines with a run of 4 or more
    spaces between words (columns, a sidebar, a table)."""
    wide = sum(1 for row in rows if row.wide)
    return wide >= max(3, len(rows) // 10)


# -- running headers and footers ----------------------------------------------------------------


def _edge_key(text: str) -> str:
    """A line with digits masked and case folded, to match a header across pages."""
    return re.sub(r"\d+", "#", text.casefold())


def strip_running_lines(pages: list[Page], edge: int = 2) -> None:
    """Drop, in place, page numbers and lines repeated among the first or last ``edge`` rows of
    most pages (at least two)."""
    threshold = max(2, (len(pages) + 1) // 2)
    for top in (True, False):
        counts: Counter[str] = Counter()
        for page in pages:
            counts.update({_edge_key(r.text) for r in _edge_rows(page, edge, top)})
        running = {key for key, n in counts.items() if n >= threshold}
        for page in pages:
            drop = {id(r) for r in _edge_rows(page, edge, top) if _edge_key(r.text) in running}
            page.rows = [r for r in page.rows if id(r) not in drop]
        for page in pages:
            outer = _edge_rows(page, 1, top)
            if outer and _PAGE_NUMBER.match(outer[0].text):
                page.rows.remove(outer[0])


def _edge_rows(page: Page, edge: int, top: bool) -> list[Row]:
    """The first (``top``) or last ``edge`` rows of a page."""
    return page.rows[:edge] if top else page.rows[-edge:]


# -- paragraphs -----------------------------------------------------------------------------------


def _first_word(text: str) -> str:
    return text.split(" ", 1)[0]


def is_short(row: str, next_row: str, width: float) -> bool:
    """Whether ``row`` ended early: the next row's first word would have fit on it."""
    return len(row) + 1 + len(_first_word(next_row)) <= 0.85 * width


def line_width(pages: list[Page]) -> float:
    """The document's usual full line length, in characters (90th percentile)."""
    lengths = sorted(len(r.text) for p in pages for r in p.rows)
    return float(lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))]) if lengths else 0.0


def usual_spacing(pages: list[Page]) -> int:
    """The document's usual distance between two lines of a paragraph, in layout units (a
    tenth of the font height): the smallest distance that is common (at least a tenth of all
    and twice), so that one-line paragraphs do not pass for the norm. With too few lines to
    tell, a line height of 1.2."""
    spacings = Counter(r.gap + 1 for p in pages if p.gaps for r in p.rows[1:])
    total = sum(spacings.values())
    common = [s for s, n in spacings.items() if n >= max(2, 0.1 * total)]
    if total < MIN_GAPS or not common:
        return round(1.2 / LAYOUT_UNIT)
    return min(common)


def paragraph_starts(page: Page, width: float, usual: int) -> list[bool]:
    """For each row after the first: whether it starts a paragraph. By a distance from the
    previous row ``PARAGRAPH_SPACING`` times the ``usual`` one or more, on a page that has such
    gaps; else by indents and short lines."""
    rows = page.rows
    breaks = [r.gap + 1 >= PARAGRAPH_SPACING * usual for r in rows[1:]]
    if page.gaps and any(breaks):
        return breaks
    base = min((r.indent for r in rows), default=0)
    starts = []
    for prev, row in zip(rows, rows[1:], strict=False):
        indented = row.indent >= base + 2 and prev.indent < row.indent and not row.text[0].islower()
        starts.append(indented or is_short(prev.text, row.text, width))
    return starts


def continues(prev: str, row: str, width: float) -> bool:
    """Whether the first row of a page continues the previous page's last paragraph: a broken
    word, or a sentence that runs on (a full last line without a full stop, or a next page that
    starts in lower case)."""
    if not prev or not row:
        return False
    if _breaks_word(prev, row):
        return True
    if _TERMINAL.search(prev):
        return False
    return row[0].islower() or not is_short(prev, row, width)


# -- joining lines ------------------------------------------------------------------------------


@dataclass
class Vocabulary:
    """The document's words (lower case) and its hyphenated compounds, to tell a word broken at
    a line end from a compound that happens to end a line."""

    words: set[str] = field(default_factory=set)
    compounds: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, pages: list[Page]) -> Vocabulary:
        """From every row, leaving out each row's last token when it ends with a hyphen."""
        vocab = cls()
        for page in pages:
            for row in page.rows:
                tokens = _WORD.findall(row.text)
                if row.text.endswith(("-", "\xad")) and tokens:
                    tokens.pop()
                for token in tokens:
                    token = token.casefold()
                    (vocab.compounds if "-" in token else vocab.words).add(token)
                    vocab.words.update(token.split("-"))
        return vocab


def _breaks_word(row: str, next_row: str) -> bool:
    """Whether ``row`` ends with a letter and a (soft) hyphen and ``next_row`` goes on with a
    lower-case letter."""
    return len(row) >= 2 and row[-1] in "-\xad" and row[-2].isalpha() and bool(next_row) and next_row[0].islower()


def join_lines(left: str, right: str, vocab: Vocabulary) -> str:
    """Two lines of a paragraph as one: a broken word rejoined (see the module's docstring), a
    dash kept against the next word, else a space between them."""
    if left.endswith("\xad"):
        return left[:-1] + right if right[:1].isalpha() else left[:-1] + " " + right
    if _breaks_word(left, right):
        head = left[:-1].rsplit(" ", 1)[-1]
        fragment = re.search(r"[^\W\d_]+\Z", head)
        tail = re.match(r"[^\W\d_]+", right)
        if fragment and tail:
            joined = (fragment.group() + tail.group()).casefold()
            compound = f"{fragment.group()}-{tail.group()}".casefold()
            keep = "-" in head[: fragment.start()] or (compound in vocab.compounds and joined not in vocab.words)
            return left + right if keep else left[:-1] + right
    if left.endswith(("—", "–")) and len(left) > 1 and left[-2] != " ":
        return left + right
    if left.endswith("-") and (right[:1].isupper() or right[:1].isdigit()) and left[-2:-1].isalnum():
        return left + right
    return left + " " + right


# -- the text -----------------------------------------------------------------------------------


def assemble(pages: list[Page]) -> tuple[str, list[int]]:
    """The article's text from the pages' rows, and the offset where each page's text starts.
    Changes ``pages`` (running headers and footers removed)."""
    strip_running_lines(pages)
    width = line_width(pages)
    usual = usual_spacing(pages)
    vocab = Vocabulary.of(pages)
    done: list[str] = []  # finished paragraphs
    done_len = 0  # where the paragraph being built will start in the text
    current = last_row = ""
    starts: list[int | None] = []
    for page in pages:
        if not page.rows:
            starts.append(None)
            continue
        new_paragraph = [not continues(last_row, page.rows[0].text, width), *paragraph_starts(page, width, usual)]
        for i, (row, new) in enumerate(zip(page.rows, new_paragraph, strict=True)):
            if new and current:
                done.append(current.rstrip("\xad"))
                done_len += len(done[-1]) + 2
                current = ""
            current = join_lines(current, row.text, vocab) if current else row.text
            if i == 0:
                starts.append(done_len + len(current) - len(row.text))
        last_row = page.rows[-1].text
    if current:
        done.append(current.rstrip("\xad"))
    text = "\n\n".join(done)
    return text, _fill_starts(starts, len(text))


def _fill_starts(starts: list[int | None], end: int) -> list[int]:
    """Page starts with each empty page given the start of the next page with text (``end``
    after the last); the first page always starts at 0."""
    out: list[int] = []
    following = end
    for start in reversed(starts):
        following = following if start is None else start
        out.append(following)
    out.reverse()
    if out:
        out[0] = 0
    return out
