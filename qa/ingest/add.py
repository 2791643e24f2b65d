"""``python -m qa add PATH|URL...``: web pages, feeds, PDFs and text files become article files in
the corpus, then the index is brought up to date.

All or nothing: every input is read and converted first; if any fails, nothing is written and
the error names the input. Articles already in the corpus (same URL, or the same text however it
was reached) are reported as duplicates and not written twice. Files are written under a temporary
name and renamed into place, so a killed `add` leaves no half-written article.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..corpus import EXTENSIONS, load_corpus, parse_document, read_regular_file
from ..errors import CorpusError, InputError, shorten, show_path
from .article import Article, file_name, render, text_hash

log = logging.getLogger(__name__)

MAX_INPUT_BYTES = (
    50_000_000  # a local file read for conversion (a PDF may be big; the converters check their own limits)
)
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
FEED_SUFFIXES = (".xml", ".rss", ".atom")


@dataclass
class AddReport:
    """What ``add`` did: files written, duplicates skipped (with the file they duplicate)."""

    added: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (what was given, corpus file it repeats)


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def convert(data: bytes, name: str, content_type: str = "", url: str | None = None, *, follow_links=False, fetch=None):
    """The articles in one input (a page, a feed, a PDF or a text file), by content type, file
    suffix or the bytes themselves. InputError naming ``name`` when it is none of those."""
    from . import feeds, html, pdf

    kind = content_type.split(";")[0].strip().lower()
    suffix = Path(name.split("?")[0]).suffix.lower()
    if kind == "application/pdf" or suffix == ".pdf" or pdf.looks_like_pdf(data):
        return [pdf.article_from_pdf(data, name)]
    if kind in ("application/rss+xml", "application/atom+xml") or feeds.looks_like_feed(data):
        return feeds.articles_from_feed(data, url, follow_links=follow_links, fetch=fetch, source=name)
    if kind in ("text/html", "application/xhtml+xml") or suffix in HTML_SUFFIXES or html.looks_like_html(data):
        return [html.article_from_html(data, url, source=name)]
    if suffix in FEED_SUFFIXES or kind in ("application/xml", "text/xml"):
        return feeds.articles_from_feed(data, url, follow_links=follow_links, fetch=fetch, source=name)
    if kind == "text/plain" or suffix in EXTENSIONS:
        try:
            doc = parse_document(name, data)
        except ValueError as e:
            raise InputError(f"{shorten(name, 80)}: {e}") from None
        body = doc.text[doc.body_start :]
        return [Article(text=body, title=doc.title, date=doc.date, url=url or doc.meta.get("url"), kind="text")]
    raise InputError(
        f"{shorten(name, 80)} is not a web page, an RSS/Atom feed, a PDF or a text file "
        f"(content type {kind or 'unknown'}, suffix {suffix or 'none'})"
    )


def read_inputs(inputs: list[str], *, follow_links: bool, fetch_options: dict) -> list[tuple[str, Article]]:
    """(input, article) for every article in every input, in order; raises on the first bad one."""
    from .fetch import fetch

    def get(url: str):
        return fetch(url, **fetch_options)

    out: list[tuple[str, Article]] = []
    for item in inputs:
        if is_url(item):
            data, content_type, final = get(item)
            articles = convert(data, final, content_type, final, follow_links=follow_links, fetch=get)
        else:
            path = Path(item)
            if not path.is_file():
                raise InputError(f"{show_path(path)} is not a file (give files or http(s) URLs)")
            try:
                data = read_regular_file(path, MAX_INPUT_BYTES)
            except ValueError as e:
                raise InputError(f"{show_path(path)}: {e}") from None
            articles = convert(data, path.name, follow_links=follow_links, fetch=get)
        if not articles:
            raise InputError(f"{shorten(item, 80)} holds no article")
        out.extend((item, a) for a in articles)
    return out


def add(inputs: list[str], corpus_dir: str | Path, *, follow_links: bool = False, fetch_options=None) -> AddReport:
    """Convert ``inputs`` and write their articles into ``corpus_dir`` (see the module's doc)."""
    if not inputs:
        raise InputError("nothing to add: give files or http(s) URLs")
    corpus = Path(corpus_dir)
    if not corpus.is_dir():
        raise InputError(f"corpus folder {show_path(corpus)} does not exist")
    found = read_inputs(list(inputs), follow_links=follow_links, fetch_options=fetch_options or {})
    by_url, by_text = known_articles(corpus)
    report = AddReport()
    planned: list[tuple[str, str]] = []  # (file name, content)
    for item, article in found:
        key = text_hash(article.text)
        twin = (by_url.get(article.url) if article.url else None) or by_text.get(key)
        if twin is not None:
            report.duplicates.append((article.url or item, twin))
            continue
        name = file_name(article)
        by_text[key] = name
        if article.url:
            by_url[article.url] = name
        planned.append((name, render(article)))
    try:
        for name, content in planned:
            _write_new(corpus / name, content)
            report.added.append(name)
    except BaseException:  # a full disk, an interrupt: take back what this call wrote
        for name in report.added:
            (corpus / name).unlink(missing_ok=True)
        raise
    return report


def known_articles(corpus: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The corpus's articles by URL and by text hash (file names)."""
    try:
        docs, _ = load_corpus(corpus)
    except CorpusError:  # an empty corpus: nothing to repeat
        docs = []
    by_url, by_text = {}, {}
    for d in docs:
        if d.meta.get("url"):
            by_url[d.meta["url"]] = d.source
        by_text[text_hash(d.text[d.body_start :])] = d.source
    return by_url, by_text


def _write_new(path: Path, content: str) -> None:
    """Write a new file atomically (a temporary file renamed into place)."""
    fd, tmp = tempfile.mkstemp(prefix=".add-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
