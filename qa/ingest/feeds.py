"""RSS and Atom feeds: one ``Article`` per entry.

feedparser reads the feed (from the bytes given: it never opens a URL here). Each entry gives the
link (url), the date (published, else updated: the date where the feed says it was published, not
in UTC), the title, the author, and the feed's title as the outlet. The text is the entry's content
(else its summary), HTML turned into plain paragraphs. With ``follow_links`` the text comes from
the page the entry links to instead, fetched with the ``fetch`` given and read by
``html.article_from_html``; without it nothing is fetched.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import logging
import re
import time
from collections.abc import Callable

from ..errors import InputError, shorten
from .article import Article, check_date
from .html import article_from_html, drop_leading_title, html_to_text, looks_like_html, plain_text

log = logging.getLogger(__name__)

Fetch = Callable[[str], tuple[bytes, str, str]]  # url -> (body, content type, final url)

_PROLOG = re.compile(rb"\A(?:\s+|<\?[^>]*\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)*", re.DOTALL | re.IGNORECASE)
_FEED_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:rss|feed|RDF)[\s/>]")
_HTML_TYPES = ("text/html", "application/xhtml+xml")


def looks_like_feed(data: bytes) -> bool:
    """True when the first element of ``data`` (after a BOM, the XML declaration, comments and a
    doctype) is an RSS (``<rss>``, ``<rdf:RDF>``) or Atom (``<feed>``) root."""
    head = data[:8192]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            head = head.decode("utf-16", "ignore").encode("utf-8")
        except UnicodeError:
            return False
    head = head.removeprefix(b"\xef\xbb\xbf")
    m = _PROLOG.match(head)
    return bool(_FEED_ROOT.match(head, m.end() if m else 0))


def articles_from_feed(
    data: bytes,
    url: str | None = None,
    *,
    follow_links: bool = False,
    fetch: Fetch | None = None,
    source: str | None = None,
) -> list[Article]:
    """One Article per entry of the RSS/Atom feed in ``data`` (in the feed's order).

    ``url``: where the feed came from (relative links are resolved against it). ``follow_links``:
    take each entry's text from the page it links to, fetched with ``fetch`` (default:
    ``qa.ingest.fetch.fetch``). ``source``: how error messages name the feed (default ``url``).
    InputError when ``data`` is not a feed, the feed has no entries, no entry has any text, or
    (following links) an entry's page cannot be fetched or read."""
    name = shorten(source or url or "the feed", 100)
    parsed = _parse(data, url, name)
    outlet = _one_line(parsed.feed.get("title"))
    if follow_links and fetch is None:
        from .fetch import fetch as default_fetch

        fetch = default_fetch
    articles = []
    for entry in parsed.entries:
        if follow_links:
            article = _followed(entry, outlet, fetch, name)
        else:
            article = _from_entry(entry, outlet)
        if article is None:
            log.warning("%s: skipping entry %r: it has no text", name, _entry_title(entry) or entry.get("link"))
            continue
        articles.append(article)
    if not articles:
        raise InputError(
            f"{name}: none of its {len(parsed.entries)} entries has any text "
            "(the feed only lists links: follow them to fetch the pages)"
        )
    return articles


def _parse(data: bytes, url: str | None, name: str):
    """feedparser's result; InputError when it is not a feed or has no entries."""
    import feedparser

    if not isinstance(data, (bytes, bytearray)):
        raise InputError(f"{name}: a feed must be given as bytes, not {type(data).__name__}")
    headers = {"content-location": url} if url else None
    # a stream, never a str: feedparser would open a str that looks like a URL or a file name
    parsed = feedparser.parse(io.BytesIO(bytes(data)), response_headers=headers)
    if not parsed.get("version") and not parsed.entries:
        why = parsed.get("bozo_exception")
        detail = f": {shorten(why, 80)}" if why else ""
        raise InputError(f"{name} is not an RSS or Atom feed{detail}")
    if not parsed.entries:
        raise InputError(f"{name} has no entries (the feed is valid but empty)")
    return parsed


def _from_entry(entry, outlet: str | None) -> Article | None:
    """The entry as an Article with the text of its content or summary; None when it has none."""
    title = _entry_title(entry)
    text = drop_leading_title(_entry_text(entry), title)
    if not text:
        return None
    return Article(
        text=text,
        title=title,
        date=_entry_date(entry),
        url=entry.get("link") or None,
        outlet=outlet,
        author=_entry_author(entry),
        kind="feed",
    )


def _followed(entry, outlet: str | None, fetch: Fetch, name: str) -> Article:
    """The page an entry links to, as an Article; the entry's title, date and author fill what the
    page lacks. InputError when the entry has no link or its page cannot be read."""
    link = entry.get("link")
    if not link:
        raise InputError(f"{name}: entry {shorten(_entry_title(entry) or '(untitled)', 60)!r} has no link to follow")
    data, content_type, final_url = fetch(link)
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in _HTML_TYPES and not looks_like_html(data):
        raise InputError(f"{shorten(link, 100)}: the entry's link is not a web page (content type {kind or 'unknown'})")
    page = article_from_html(data, final_url or link, source=link)
    return Article(
        text=page.text,
        title=page.title or _entry_title(entry),
        date=page.date or _entry_date(entry),
        url=page.url or final_url or link,
        outlet=page.outlet or outlet,
        author=page.author or _entry_author(entry),
        kind="html",
    )


def _entry_text(entry) -> str:
    """Plain text of the entry's longest content, else of its summary ("" when neither)."""
    contents = [c for c in entry.get("content") or [] if (c.get("value") or "").strip()]
    if contents:
        best = max(contents, key=lambda c: len(c.get("value") or ""))
        return _detail_text(best.get("value"), best.get("type"))
    detail = entry.get("summary_detail") or {}
    return _detail_text(entry.get("summary"), detail.get("type"))


def _detail_text(value: str | None, content_type: str | None) -> str:
    """A feed text construct as plain text: HTML converted, plain text kept (paragraphs normalized)."""
    if not value:
        return ""
    if content_type == "text/plain":
        return plain_text(value)
    return html_to_text(value)


def _entry_title(entry) -> str | None:
    """The entry's title on one line (HTML titles converted to text)."""
    title = entry.get("title")
    if not title:
        return None
    if (entry.get("title_detail") or {}).get("type") in ("text/html", "application/xhtml+xml"):
        title = html_to_text(title)
    return _one_line(title)


def _entry_author(entry) -> str | None:
    """The entry's author's name (feedparser's ``author_detail.name``, else ``author``)."""
    detail = entry.get("author_detail") or {}
    return _one_line(detail.get("name") or entry.get("author"))


def _entry_date(entry) -> str | None:
    """The entry's publication (else update) date as YYYY-MM-DD, in the time zone the feed wrote
    it in (feedparser's parsed values are in UTC: 22:15 -08:00 would be the next day)."""
    for key in ("published", "updated", "created"):
        date = _local_date(entry.get(key))
        if date:
            return date
        parsed = entry.get(f"{key}_parsed")
        if parsed:
            return time.strftime("%Y-%m-%d", parsed)
    return None


def _local_date(raw: str | None) -> str | None:
    """YYYY-MM-DD of an RFC 822 (RSS) or ISO 8601 (Atom) timestamp as written, else None."""
    if not raw:
        return None
    raw = raw.strip()
    iso = check_date(raw) if re.match(r"\d{4}-\d{2}-\d{2}", raw) else None
    if iso:
        return iso
    try:
        stamp = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return stamp.date().isoformat() if isinstance(stamp, dt.datetime) else None


def _one_line(value: str | None) -> str | None:
    text = " ".join(str(value).split()) if value else ""
    return text or None
