"""Web pages: the main text and the metadata of a saved or fetched HTML page, as an ``Article``.

trafilatura finds the main text (no navigation, ads, cookie banners, comments, related links,
share buttons or footers: ``favor_precision``) and the metadata (title, author, site name,
canonical URL; the date through htmldate from the page's markup only). Nothing here touches the
network: trafilatura and htmldate get the bytes, never a URL to open. The text is plain: one
paragraph per block of the page, its whitespace normalized, paragraphs separated by a blank line.

``html_to_text`` turns an HTML fragment (a feed entry's content) into the same kind of text
without trying to find a main text: every paragraph is kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from ..errors import InputError, shorten
from .article import Article, check_date

log = logging.getLogger(__name__)

MAX_PAGE_BYTES = 10_000_000  # a bigger page is refused, not parsed (10 MB is far beyond any article)

# elements that start and end a paragraph: HTML's and trafilatura's own (head, list, item, quote, lb, ...)
_BLOCK_TAGS = frozenset(
    "p div section article main header footer aside nav h1 h2 h3 h4 h5 h6 ul ol li dl dt dd "
    "blockquote pre table thead tbody tfoot tr td th caption figure figcaption hr br address "
    "details summary center form fieldset head list item quote code row cell lb graphic".split()
)
# elements whose text is never article text
_SKIP_TAGS = frozenset(
    "script style noscript template iframe object embed svg math canvas button select textarea".split()
)
_HTML_START = re.compile(rb"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_PROLOG = re.compile(rb"\A(?:\s+|<\?xml[^>]*\?>|<!--.*?-->)*", re.DOTALL)


def looks_like_html(data: bytes) -> bool:
    """True when ``data`` starts (after a BOM, an XML declaration, comments and whitespace) like an
    HTML page (``<!DOCTYPE html``, ``<html``), or has ``<html``/``<head``/``<body`` near its start."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf")
    m = _PROLOG.match(head)
    rest = head[m.end() :] if m else head
    if _HTML_START.match(rest):
        return True
    return bool(_HTML_START.search(head[:1024]))


def article_from_html(html: str | bytes, url: str | None = None, *, source: str | None = None) -> Article:
    """The page's main text and metadata as an Article.

    ``url``: where the page came from (used when the page names no canonical URL). ``source``: how
    error messages name the page (default: ``url``, else "the HTML page"). Raises InputError when
    the page is larger than ``MAX_PAGE_BYTES`` or no main text can be found in it."""
    name = shorten(source or url or "the HTML page", 100)
    _check_size(html, name)
    if not (html.strip() if isinstance(html, str) else html.strip(b" \t\r\n\f\v\x00\xef\xbb\xbf")):
        raise InputError(f"{name}: the page is empty")
    doc = _extract(html, url)
    text = _body_text(doc.body) if doc is not None and doc.body is not None else ""
    if not text.strip():
        raise InputError(
            f"{name}: no article text found in the page (broken or truncated markup, or a page without a main text)"
        )
    title = _clean(doc.title)
    return Article(
        text=drop_leading_title(text, title),
        title=title,
        date=check_date(doc.date),
        url=_http_url(doc.url) or url,
        outlet=_clean(doc.sitename),
        author=_clean(doc.author),
        kind="html",
    )


def _check_size(html: str | bytes, name: str) -> None:
    """InputError when the page is over ``MAX_PAGE_BYTES`` (str: its UTF-8 size)."""
    if isinstance(html, str):
        size = len(html) if len(html) > MAX_PAGE_BYTES else len(html.encode("utf-8", "surrogatepass"))
    else:
        size = len(html)
    if size > MAX_PAGE_BYTES:
        raise InputError(
            f"{name}: the page is {size:,} bytes, over the limit of {MAX_PAGE_BYTES:,} bytes for a web page"
        )


def _extract(html: str | bytes, url: str | None):
    """trafilatura's extraction (a Document, or None when it finds nothing)."""
    import trafilatura

    try:
        return trafilatura.bare_extraction(
            html,
            url=url,
            with_metadata=True,
            include_comments=False,
            include_tables=False,
            include_images=False,
            include_links=False,
            include_formatting=False,
            favor_precision=True,
            deduplicate=False,  # a process-wide cache: the same page would read differently the second time
            date_extraction_params={
                "original_date": True,  # the publication date, not the last update
                "extensive_search": False,  # markup only: no guessing from dates in the text or comments
                "max_date": "2100-12-31",  # not "today": the result must not depend on the clock
            },
        )
    except Exception as e:  # noqa: BLE001 - lxml and trafilatura raise many kinds on garbage
        log.debug("trafilatura failed: %r", e)
        return None


def _body_text(body) -> str:
    """Plain text of trafilatura's (or any lxml) tree: one paragraph per block element."""
    paragraphs = [" ".join(p.split()) for p in _paragraphs(body)]
    return "\n\n".join(p for p in paragraphs if p)


def _paragraphs(root) -> Iterator[str]:
    """The text of ``root`` cut at block elements (inline elements' text joins the paragraph).
    Iterative, so a deeply nested tree cannot exhaust the stack; comments and skipped elements
    (scripts, styles, ...) give no text, but the text after them (their tail) counts."""
    parts: list[str] = []
    stack = [(root, False)]
    while stack:
        el, closing = stack.pop()
        tag = el.tag.rsplit("}", 1)[-1].lower() if isinstance(el.tag, str) else ""  # "": a comment
        block = tag in _BLOCK_TAGS
        if not closing and tag and tag not in _SKIP_TAGS:
            if block and parts:
                yield "".join(parts)
                parts.clear()
            if el.text:
                parts.append(el.text)
            stack.append((el, True))
            stack.extend((child, False) for child in reversed(el))
            continue
        if closing and block and parts:
            yield "".join(parts)
            parts.clear()
        if el.tail and el is not root:
            parts.append(el.tail)
    if parts:
        yield "".join(parts)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (a feed entry's content): every paragraph, no main-text
    detection; scripts, styles and the like dropped. "" when there is no text."""
    import lxml.html
    from lxml import etree

    if not fragment or not fragment.strip():
        return ""
    if "<" not in fragment and "&" not in fragment:  # plain text: keep its paragraphs
        return plain_text(fragment)
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError):
        return plain_text(re.sub(r"<[^>]*>", " ", fragment))
    return _body_text(root)


def plain_text(text: str) -> str:
    """Paragraphs of plain text (blank-line separated), whitespace normalized."""
    blocks = (" ".join(b.split()) for b in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")))
    return "\n\n".join(b for b in blocks if b)


def drop_leading_title(text: str, title: str | None) -> str:
    """The text without a first paragraph that repeats the title (the page's <h1>)."""
    if not title:
        return text
    first, sep, rest = text.partition("\n\n")
    if sep and first.casefold() == title.casefold():
        return rest
    return text


def _clean(value: str | None) -> str | None:
    """A metadata value on one line, None when empty."""
    text = " ".join(str(value).split()) if value else ""
    return text or None


def _http_url(value: str | None) -> str | None:
    """``value`` when it is an absolute http(s) URL, else None."""
    if not value:
        return None
    value = value.strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.hostname else None
