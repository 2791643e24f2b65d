"""The Gradio chat: answers with checkable citations, honest refusals, uploads and an index status panel.

The rendering, input-checking and upload functions are plain (values in, HTML or errors out) and are
tested without a browser; ``build_ui(engine)`` wires them into ``gr.Blocks`` and ``app.py`` only
launches it. Every piece of corpus or user text that goes into HTML passes through ``html.escape``;
the user's own questions are also stripped of every Markdown syntax (``render_question``), and every
response carries a Content Security Policy (``GuardMiddleware``) that keeps the page offline.
Uploads are checked and saved at once and indexed in the background, one at a time (``Indexer``).
"""

from __future__ import annotations

import html
import itertools
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import corpus
from .engine import Engine
from .engine import check_history as engine_check_history
from .errors import CorpusError, InputError, QAError, show
from .index import document_from_index
from .settings import Settings
from .types import Answer, BuildReport, Citation, Passage

log = logging.getLogger(__name__)

UPLOAD_MAX_BYTES = 1_000_000  # uploads larger than this (or than settings.max_file_bytes) are refused
UPLOAD_GRADIO_MAX_BYTES = 5 * UPLOAD_MAX_BYTES  # Gradio's own hard cap on /gradio_api/upload (a 413 above it)
REQUEST_MAX_BYTES = 1_000_000  # any other request body (a question and its history): larger ones get a 413
DRAIN_MAX_BYTES = 16_000_000  # a refused body up to this size is read and dropped, so the client sees the 413
CHAT_HISTORY_KEEP = 20  # messages of plain history the chat keeps for follow-ups (the rewriter needs 2 turns)
CHAT_MAX_MESSAGES = 200  # messages shown in the chat; older ones scroll away for good
HIGH_CONFIDENCE = 0.8  # at or above: "high"; from settings.abstain_threshold up: "medium"; below: "low"
CONTEXT_MAX_CHARS = 700  # a quote's surrounding paragraph is clipped to about this many characters
RELATED_MAX = 3  # passages listed under a refusal
RELATED_CHARS = 280  # characters of each related passage shown under a refusal
MAX_NAME_CHARS = 100  # longest stem of an uploaded file's name
SHOWN_NAME_CHARS = 120  # an uploaded file's original name is shortened to this in messages
EXAMPLES = 3  # example questions offered under the chat
STATUS_TICK_SECONDS = 1.5  # how often the page asks for the index status while uploads are indexed
QUEUE_SHOWN = 5  # queued uploads named in the status panel
JOBS_KEPT = 500  # finished uploads remembered for their uploaders' messages
CONVERTED_UPLOADS = (".html", ".htm", ".pdf")  # uploads converted to an article file (as python -m qa add does)
FEED_UPLOADS = (".xml", ".rss", ".atom")  # a feed upload becomes one queued article per entry
STAGING_DIR = ".uploads-queued"  # inside the corpus folder; hidden, so never read as an article

_EXAMPLE_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]+(?: [A-Z][a-z]+)+")
_PARA_BREAK = re.compile(r"\n[ \t]*\n\s*")
_MARKER = re.compile(r"\[(\d+)\]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_ASCII_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_UPLOAD_LOCK = threading.Lock()  # one corpus write-and-index at a time (add_article and the Indexer)


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def shown(value: object, limit: int = 60) -> str:
    """A value for an error message: its type and the start of its repr, never the whole of a huge
    input, printable as UTF-8 (a lone surrogate is written as an escape)."""
    return f"{type(value).__name__} {show(value, limit)}"


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def shown_name(name: str) -> str:
    """A file name as the user gave it, for a message: one line (so the message stays one HTML
    block, which the Markdown renderer leaves alone), shortened, printable as UTF-8."""
    name = _printable(_CONTROL.sub(" ", name))
    return name if len(name) <= SHOWN_NAME_CHARS else name[: SHOWN_NAME_CHARS - 1] + "…"


# ---------------------------------------------------------------- answers


def render_answer(answer: Answer, question: str, engine: Engine, uid: str | None = None) -> str:
    """The HTML of one assistant turn: an answer with its sources, or a refusal with related passages."""
    uid = uid or secrets.token_hex(4)
    parts = [f'<div class="qa-turn" id="qa-{uid}">']
    if answer.query and answer.query.strip() != question.strip():
        parts.append(f'<div class="qa-searched">searched for: <q>{esc(answer.query)}</q></div>')
    if answer.filter:
        parts.append(f'<div class="qa-searched">searched in: {esc(answer.filter)}</div>')
    if answer.abstained:
        parts.append(render_refusal(answer))
    else:
        parts.append(_answer_text(answer, uid))
        parts.append(render_confidence(answer.confidence, _threshold(answer, engine)))
        docs = _DocumentCache(engine)
        parts.append('<div class="qa-sources">')
        parts.extend(render_citation(c, docs.get(c.source), uid) for c in answer.citations)
        parts.append("</div>")
        parts.append(render_passages(answer.passages))
    parts.append("</div>")
    # One HTML block for the chat's Markdown renderer: a blank line would end it, so no raw newlines.
    return "".join(parts).replace("\n", "<br>")


def _answer_text(answer: Answer, uid: str) -> str:
    numbers = {c.number for c in answer.citations}

    def link(m: re.Match) -> str:
        n = int(m.group(1))
        if n not in numbers:
            return m.group(0)
        return f'<a class="qa-marker" href="#qa-{uid}-{n}" title="source {n}">[{n}]</a>'

    def marked(text: str) -> str:
        return _MARKER.sub(link, esc(text))

    at = _span_offset(answer)
    if at is None:
        return f'<p class="qa-text">{marked(answer.text)}</p>'
    start, end = at
    return (
        f'<p class="qa-text">{marked(answer.text[:start])}<strong class="qa-span">{esc(answer.text[start:end])}</strong>'
        f"{marked(answer.text[end:])}</p>"
    )


def _span_offset(answer: Answer) -> tuple[int, int] | None:
    """Where the short answer (``answer.span``) lies in ``answer.text``: inside the quote of the
    citation that holds it. None when there is no span or it cannot be placed exactly."""
    span = answer.span
    if span is None:
        return None
    pos = 0
    for c in answer.citations:
        at = answer.text.find(c.quote, pos)
        if at < 0:
            return None
        if c.source == span.source and c.start <= span.start and span.end <= c.end:
            start = at + span.start - c.start
            if answer.text[start : start + len(span.text)] != span.text:
                return None
            return start, start + len(span.text)
        pos = at + len(c.quote)
    return None


def _threshold(answer: Answer, engine: Engine) -> float:
    """The abstention threshold of the reader that made the answer."""
    s = engine.settings
    return s.reader_abstain_threshold if answer.reader == "trained" else s.abstain_threshold


def render_refusal(answer: Answer) -> str:
    """A visibly different box: not in the articles, why, and the closest passages as related only."""
    message = answer.message or "The articles do not answer this question."
    parts = [
        '<div class="qa-refusal">',
        '<div class="qa-refusal-title">Not in the articles</div>',
        f"<p>{esc(message)}</p>",
    ]
    related = answer.passages[:RELATED_MAX]
    if related:
        parts.append('<div class="qa-related"><div class="qa-related-title">Related, not an answer:</div><ul>')
        for p in related:
            text = p.text if len(p.text) <= RELATED_CHARS else p.text[:RELATED_CHARS].rsplit(" ", 1)[0] + " …"
            parts.append(
                f'<li><div class="qa-src-line">{_source_line(p.title, p.date, p.source, p.outlet, p.url, p.page)}</div>{esc(text)}</li>'
            )
        parts.append("</ul></div>")
    parts.append("</div>")
    return "".join(parts)


def confidence_label(confidence: float, abstain_threshold: float) -> str:
    if confidence >= HIGH_CONFIDENCE:
        return "high"
    return "medium" if confidence >= abstain_threshold else "low"


def render_confidence(confidence: float, abstain_threshold: float) -> str:
    label = confidence_label(confidence, abstain_threshold)
    pct = max(0, min(100, round(confidence * 100)))
    return (
        f'<div class="qa-confidence qa-conf-{label}">confidence {confidence:.2f} ({label}) '
        f'<span class="qa-bar"><span class="qa-bar-fill" style="width:{pct}%"></span></span></div>'
    )


def _source_line(
    title: str, date: str | None, source: str, outlet: str | None = None, url: str | None = None, page=None
) -> str:
    """Title · outlet · date · p. N · file · a link to the original page (http(s) only)."""
    bits = [f"<b>{esc(title)}</b>"]
    if outlet:
        bits.append(esc(outlet))
    if date:
        bits.append(esc(date))
    if page:
        bits.append(f"p. {int(page)}")
    bits.append(f"<code>{esc(source)}</code>")
    if url and url.lower().startswith(("http://", "https://")):
        bits.append(
            f'<a class="qa-original" href="{esc(url)}" target="_blank" rel="noopener noreferrer nofollow">original</a>'
        )
    return " · ".join(bits)


def render_citation(c: Citation, doc: corpus.Document | None, uid: str) -> str:
    """A source card: where the quote comes from, its paragraph with the quote marked, the whole article."""
    line = _source_line(c.title, c.date, c.source, c.outlet, c.url, c.page)
    head = f'<div class="qa-src-line"><span class="qa-num">[{c.number}]</span> {line}</div>'
    if doc is None or doc.text[c.start : c.end] != c.quote:
        body = (
            f'<blockquote class="qa-context"><mark>{esc(c.quote)}</mark></blockquote>'
            '<div class="qa-note">The file has changed since it was indexed; only the quote is shown.</div>'
        )
    else:
        ps, pe = paragraph_bounds(doc.text, c.start, c.end, doc.body_start)
        context = highlight(doc.text, ps, c.start, c.end, pe)
        lead, tail = ("… " if ps > doc.body_start and doc.text[ps - 1] not in "\n" else ""), ""
        if pe < len(doc.text) and doc.text[pe] not in "\n":
            tail = " …"
        article = highlight(doc.text, min(doc.body_start, c.start), c.start, c.end, len(doc.text))
        body = (
            f'<blockquote class="qa-context">{lead}{context}{tail}</blockquote>'
            f'<details class="qa-article"><summary>Open the whole article</summary>'
            f'<div class="qa-article-text"><p>{article}</p></div></details>'
        )
    return f'<div class="qa-source" id="qa-{uid}-{c.number}">{head}{body}</div>'


def paragraph_bounds(text: str, start: int, end: int, body_start: int = 0) -> tuple[int, int]:
    """[ps, pe) of the paragraph (blank-line separated) around text[start:end], clipped to about
    CONTEXT_MAX_CHARS at word boundaries; the quote itself is never cut."""
    ps, pe = min(body_start, start), len(text)
    for m in _PARA_BREAK.finditer(text):
        if m.end() <= start:
            ps = max(ps, m.end())
        elif m.start() >= end:
            pe = m.start()
            break
    spare = max(0, CONTEXT_MAX_CHARS - (end - start)) // 2
    if start - ps > spare:
        cut = text.find(" ", start - spare, start)
        ps = cut + 1 if cut != -1 else start
    if pe - end > spare:
        cut = text.rfind(" ", end, end + spare)
        pe = cut if cut != -1 else end
    return ps, pe


def highlight(text: str, a: int, start: int, end: int, b: int) -> str:
    """text[a:b] as HTML with text[start:end] in <mark>; blank lines become paragraph breaks."""

    def block(s: str) -> str:
        return _PARA_BREAK.sub("</p><p>", esc(s)).replace("\n", "<br>")

    quote = esc(text[start:end]).replace("\n", "<br>")
    return f"{block(text[a:start])}<mark>{quote}</mark>{block(text[end:b])}"


def render_passages(passages: list[Passage]) -> str:
    """The retrieved passages, one click away."""
    if not passages:
        return ""
    items = "".join(
        f'<li><div class="qa-src-line">{_source_line(p.title, p.date, p.source, p.outlet, p.url, p.page)} · score {p.score:.3f}</div>'
        f"{esc(p.text)}</li>"
        for p in passages
    )
    return f'<details class="qa-passages"><summary>Retrieved passages ({len(passages)})</summary><ol>{items}</ol></details>'


class _DocumentCache:
    """Documents behind citations, read once per rendering (None when the file changed or vanished)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.docs: dict[str, corpus.Document | None] = {}

    def get(self, source: str) -> corpus.Document | None:
        if source not in self.docs:
            try:
                self.docs[source] = document_from_index(self.engine.index, source, self.engine.settings.corpus_path)
            except (OSError, ValueError) as e:
                log.warning("cannot read %s to show its context: %s", source, e)
                self.docs[source] = None
        return self.docs[source]


# ---------------------------------------------------------------- chat


@dataclass
class Reply:
    """What one chat turn produced: the answer (or None) and its HTML, or a polite warning."""

    html: str = ""
    answer: Answer | None = None
    warning: str = ""
    history: list[dict] = field(default_factory=list)  # the plain history after this turn


def check_question(question: object) -> str:
    """The question as text ('' for None). Raises InputError naming anything else (a number, a list...)."""
    if question is None:
        return ""
    if not isinstance(question, str):
        raise InputError(f"question must be text. Currently, it is {shown(question)}.")
    return question


def check_history(history: object, engine: Engine | None = None) -> list[dict]:
    """The history as a list of plain {"role", "content"} messages, checked as the engine checks
    it (``engine.check_history``) before any work is done: a 10 MB history is refused at once,
    and never echoed back."""
    if history is None:
        return []
    return engine_check_history(history, engine.settings if engine is not None else Settings())


def respond(engine: Engine, question: object, history: object = None) -> Reply:
    """Answer a question with the plain history ({"role", "content"}: questions and answer texts).

    Never raises: an input it cannot use, or any error, becomes ``Reply.warning`` (one line that
    names the bad value, never the whole of it)."""
    try:
        text = check_question(question)
        past = check_history(history, engine)
    except InputError as e:
        log.info("refused a question: %s", e)
        return Reply(warning=f"Sorry, I can't answer that: {e}")
    q = text.strip()
    if not q:
        return Reply(warning="Please type a question about the articles first.", history=past)
    try:
        answer = engine.answer(q, past)
    except QAError as e:
        log.info("refused a question: %s", e)
        return Reply(warning=f"Sorry, I can't answer that: {_printable(str(e))}", history=past)
    except Exception:  # the edge of the app: log it, show a polite line, never a stack trace
        log.exception("answering %s failed", shown(q, 200))
        return Reply(
            warning="Sorry, something went wrong while answering. The server log has the details.", history=past
        )
    past += [{"role": "user", "content": q}, {"role": "assistant", "content": answer.text}]
    return Reply(html=render_answer(answer, q, engine), answer=answer, history=past[-CHAT_HISTORY_KEEP:])


def render_question(question: str) -> str:
    """The user's question as one HTML block of plain text for the chat.

    The chat renders messages as Markdown, so a question like ``![p](http://host/q.png)`` would
    become an image fetched from that host. Here every ASCII punctuation character becomes a numeric
    character reference and line breaks become <br>: no Markdown (images, links, autolinks, emphasis,
    LaTeX) and no HTML is left, and the browser shows exactly the characters typed."""
    body = _ASCII_PUNCT.sub(lambda m: f"&#{ord(m.group(0))};", _printable(question))
    body = body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")
    return f'<div class="qa-question">{body}</div>'


def chat_messages(question: str, reply: Reply) -> list[dict]:
    """The two chat messages of an answered turn: the question as text, the answer as HTML."""
    return [
        {"role": "user", "content": render_question(question.strip())},
        {"role": "assistant", "content": reply.html},
    ]


EXAMPLE_SCAN_CHUNKS = 2_000


def example_questions(engine: Engine, n: int = EXAMPLES) -> list[str]:
    """Questions drawn from the articles: "What do we know about <name>?" for the names they mention most
    (two or more capitalised words, not at a sentence start), kept only when the engine answers
    them; else one question per article title."""
    counts: Counter[str] = Counter()
    for scanned, (_, chunk) in enumerate(engine.index.live_chunks()):
        if scanned == EXAMPLE_SCAN_CHUNKS:  # a big archive: its first chunks give names enough
            break
        counts.update(m.group(0) for m in _EXAMPLE_NAME.finditer(chunk.text))
    out: list[str] = []
    for name, _ in counts.most_common(4 * n):
        question = f"What do we know about {name}?"
        try:
            if not engine.answer(question).abstained:
                out.append(question)
        except QAError:
            continue
        if len(out) == n:
            return out
    documents = engine.index.manifest.get("documents", {})
    return out or [f"What happened in “{meta['title']}”?" for meta in list(documents.values())[:n]]


# ---------------------------------------------------------------- status and uploads


def status_line(engine: Engine) -> str:
    """Articles, chunks and the build time of the loaded index, as HTML."""
    manifest = engine.index.manifest
    counts = manifest.get("counts", {})
    built = manifest.get("built_at", "")
    try:
        built = datetime.fromisoformat(built).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        pass
    return (
        f'<div class="qa-status"><b>{counts.get("documents", 0)}</b> articles · '
        f"<b>{counts.get('chunks', 0)}</b> chunks<br>built {esc(str(built))}</div>"
    )


def upload_limit(engine: Engine, name: object = None) -> int:
    """Most bytes an upload may have: a web page or PDF (converted to text) up to Gradio's cap."""
    if isinstance(name, str) and Path(name).suffix.lower() in CONVERTED_UPLOADS + FEED_UPLOADS:
        return UPLOAD_GRADIO_MAX_BYTES
    return min(UPLOAD_MAX_BYTES, engine.settings.max_file_bytes)


def convert_upload(engine: Engine, name: object, data: object) -> tuple[object, object]:
    """A web page or PDF upload as the article file ``python -m qa add`` would write (name, bytes);
    any other upload as it is. InputError naming the file when it cannot be converted, or when the
    corpus already holds the article (same URL or text)."""
    if not isinstance(name, str) or Path(name).suffix.lower() not in CONVERTED_UPLOADS:
        return name, data
    if not isinstance(data, (bytes, bytearray)):
        raise InputError(f"the content of {shown_name(name)} must be bytes. Currently, it is {shown(data)}.")
    if len(data) > UPLOAD_GRADIO_MAX_BYTES:
        raise InputError(f"{shown_name(name)} is too large; the limit is {UPLOAD_GRADIO_MAX_BYTES:,} bytes.")
    from .ingest.add import convert, known_articles
    from .ingest.article import file_name, render, text_hash

    base = re.split(r"[\\/]", name)[-1]
    articles = convert(bytes(data), base)
    if len(articles) != 1:  # pragma: no cover - pages and PDFs are one article each
        raise InputError(f"{shown_name(name)} holds {len(articles)} articles; add it with python -m qa add.")
    article = articles[0]
    by_url, by_text = known_articles(engine.settings.corpus_path)
    twin = (by_url.get(article.url) if article.url else None) or by_text.get(text_hash(article.text))
    if twin is not None:
        raise InputError(f"{shown_name(name)} is already in the corpus as {twin}.")
    return file_name(article), render(article).encode("utf-8")


def safe_article_name(name: object) -> str:
    """The name an upload is saved under: its last path part, safe characters only, .txt or .md.

    Raises InputError for names that are not text, hidden names, other extensions and names with
    nothing left."""
    if not isinstance(name, str):
        raise InputError(f"the file name must be text. Currently, it is {shown(name)}.")
    base = re.split(r"[\\/]", name)[-1].strip()
    if not base or base in (".", ".."):
        raise InputError(f"{shown_name(repr(name))} has no file name.")
    if base.startswith("."):
        raise InputError(f"{shown_name(repr(base))} is a hidden file name; rename it without the leading dot.")
    stem, dot, ext = base.rpartition(".")
    if not dot or f".{ext.lower()}" not in corpus.EXTENSIONS:
        raise InputError(f"{shown_name(repr(base))} is not a .txt or .md file.")
    stem = _UNSAFE_NAME.sub("_", stem).strip("_.")[:MAX_NAME_CHARS]
    if not stem:
        raise InputError(f"{shown_name(repr(base))} has no usable name before its extension.")
    return f"{stem}.{ext.lower()}"


def check_article(engine: Engine, name: object, data: object) -> str:
    """Check an uploaded article (name, size, UTF-8 text) without touching the corpus.

    Returns the name it would be saved under; raises InputError naming the file when it is refused."""
    safe = safe_article_name(name)
    if not isinstance(data, (bytes, bytearray)):
        raise InputError(f"the content of {safe} must be bytes. Currently, it is {shown(data)}.")
    data = bytes(data)
    limit = upload_limit(engine)
    if len(data) > limit:
        raise InputError(f"{safe} is too large ({len(data):,} bytes or more); the limit is {limit:,} bytes.")
    try:
        corpus.parse_document(safe, data)
    except ValueError as e:
        raise InputError(f"{safe} was refused: {e}.") from None
    return safe


def add_article(engine: Engine, name: object, data: object) -> tuple[str, BuildReport]:
    """Check an uploaded article, write it into the corpus folder atomically and index it, all before
    returning (the library's way; the app queues uploads with ``Indexer`` instead).

    Returns (saved name, build report). Raises InputError naming the file when it is refused;
    a refused upload leaves the corpus folder and the index as they were."""
    name, data = convert_upload(engine, name, data)
    safe = check_article(engine, name, data)
    target = engine.settings.corpus_path / safe
    with _UPLOAD_LOCK:
        if target.exists():
            raise InputError(f"{safe} is already in the corpus; rename the file to add it as a new article.")
        _write_atomic(target, bytes(data))  # type: ignore[arg-type]
        report = _index_new_article(engine, safe)
    return safe, report


def _index_new_article(engine: Engine, safe: str) -> BuildReport:
    """Index the corpus now that ``safe`` is in it; when the indexer skips it, or the build fails,
    take the file back out (so the corpus holds only what the index holds)."""
    target = engine.settings.corpus_path / safe
    try:
        report = engine.build_index()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    reason = next((s for s in report.skipped if s.startswith(f"{safe}:")), "")
    if reason:  # not indexed, so the index is as it was; take the file back out of the corpus
        target.unlink(missing_ok=True)
        raise InputError(f"{safe} was refused by the indexer: {reason.split(':', 1)[1].strip()}.")
    return report


def _write_atomic(target: Path, data: bytes, *, replace: bool = False) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not replace and target.exists():  # checked again just before the rename, under the upload lock
            raise InputError(f"{target.name} is already in the corpus.")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def upload(engine: Engine, path: str | None) -> tuple[bool, str]:
    """Add a file synchronously (checked, saved and indexed before returning): (accepted, HTML message).

    The app uses ``receive_upload`` instead, which queues the indexing."""
    if not path:
        return False, ""
    name = Path(path).name
    result, refused = _read_upload(
        name, path, upload_limit(engine, name), lambda data: add_article(engine, name, data), "indexing"
    )
    if refused:
        return False, refused
    saved, report = result
    chunks = engine.index.manifest.get("documents", {}).get(saved, {}).get("chunks", 0)
    log.info("upload: added %s (%s chunks, %d embedded)", saved, chunks, report.embedded_chunks)
    return True, (
        f'<div class="qa-upload qa-upload-ok">Added <b>{esc(shown_name(name))}</b>{_saved_as(name, saved)}: '
        f"{_chunks(chunks)} indexed; you can ask about it now.</div>"
    )


def _refused_html(name: str, why: str) -> str:
    return (
        f'<div class="qa-upload qa-upload-refused"><b>Not added: {esc(shown_name(name))}.</b> '
        f"{esc(_printable(_CONTROL.sub(' ', why)))}</div>"
    )


def _saved_as(name: str, saved: str) -> str:
    return f", saved as <b>{esc(saved)}</b>" if saved != name else ""


def _chunks(n: int) -> str:
    return f"{n} chunk{'' if n == 1 else 's'}"


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S UTC")


# ---------------------------------------------------------------- uploads indexed in the background


@dataclass
class UploadJob:
    """One upload: saved at once, then queued, indexed, and added or refused."""

    id: int
    name: str  # the name the user's file had
    saved: str  # the name it has in the corpus folder
    size: int
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    state: str = "queued"  # queued -> indexing -> added | refused | failed
    detail: str = ""  # why it was refused or failed
    chunks: int = 0

    @property
    def done(self) -> bool:
        return self.state in ("added", "refused", "failed")


class Indexer:
    """Indexes uploaded articles in one background thread, one upload at a time.

    ``submit`` checks an upload and saves it at once into a hidden staging folder of the corpus
    (``corpus/.uploads-queued/``, never read as an article), then queues it. The worker moves each
    upload into the corpus and runs the incremental ``engine.build_index()``, which swaps the new
    index in when it is done; questions are answered from the current index meanwhile. An upload
    the indexer skips is taken back out of the corpus. Uploads still queued when the app stops are
    picked up by ``resume()`` at the next start. ``status_html()`` and ``version`` only read what
    the worker wrote, so the page can poll them cheaply."""

    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        self.engine = engine
        self.read_only = read_only
        self._cond = threading.Condition()
        self._queue: deque[UploadJob] = deque()
        self._current: UploadJob | None = None
        self._last: UploadJob | None = None
        self._jobs: dict[int, UploadJob] = {}
        self._saving: set[str] = set()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._index_html = ""
        self.version = 0  # changes whenever something the status panel shows changes

    @property
    def staging(self) -> Path:
        return self.engine.settings.corpus_path / STAGING_DIR

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._queue)

    def submit(self, name: object, data: object) -> UploadJob:
        """Check an upload and save it at once, then queue it for indexing. Raises InputError naming
        the file when it is refused (bad name, too large, not UTF-8 text, a name already taken)."""
        if self.read_only:
            raise InputError("uploads are turned off: this app runs read-only.")
        name, data = convert_upload(self.engine, name, data)
        safe = check_article(self.engine, name, data)
        with self._cond:
            if self._closed:
                raise InputError("uploads are closed: the app is shutting down.")
            if self._current is not None and self._current.saved == safe:
                raise InputError(f"{safe} is already being indexed; rename the file to add it as a new article.")
            if safe in self._saving or any(j.saved == safe for j in self._queue):
                raise InputError(f"{safe} is already queued; rename the file to add it as a new article.")
            if (self.engine.settings.corpus_path / safe).exists():
                raise InputError(f"{safe} is already in the corpus; rename the file to add it as a new article.")
            self._saving.add(safe)  # the name is taken while the file is written (outside the lock)
        try:
            self.staging.mkdir(exist_ok=True)
            _write_atomic(self.staging / safe, bytes(data), replace=True)  # type: ignore[arg-type]
        except OSError as e:
            log.error("upload: cannot save %s in %s: %s", safe, self.staging, e)
            raise CorpusError(f"{safe} could not be saved ({e.strerror or type(e).__name__}).") from None
        finally:
            with self._cond:
                self._saving.discard(safe)
        with self._cond:
            job = self._enqueue(str(name), safe, len(data))  # type: ignore[arg-type]
        log.info("upload: saved %s (%d bytes); %d ahead of it", safe, job.size, self.ahead(job))
        return job

    def resume(self) -> list[UploadJob]:
        """Queue the uploads a previous run saved but did not index (oldest first)."""
        if self.read_only or not self.staging.is_dir():
            return []
        jobs = []
        with self._cond:
            queued = {j.saved for j in self._queue}
            for path in sorted(self.staging.iterdir(), key=lambda p: p.stat().st_mtime):
                if path.name.startswith(".") or not path.is_file() or path.name in queued:
                    continue
                jobs.append(self._enqueue(path.name, path.name, path.stat().st_size))
        if jobs:
            log.info(
                "upload: %d upload(s) left queued by the last run: %s", len(jobs), ", ".join(j.saved for j in jobs)
            )
        return jobs

    def _enqueue(self, name: str, saved: str, size: int) -> UploadJob:
        job = UploadJob(next(self._ids), name, saved, size)
        self._queue.append(job)
        self._jobs[job.id] = job
        while len(self._jobs) > JOBS_KEPT:
            oldest = next(iter(self._jobs))
            if not self._jobs[oldest].done:
                break
            del self._jobs[oldest]
        self._changed()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="qa-upload-indexer", daemon=True)
            self._thread.start()
        self._cond.notify_all()
        return job

    def _changed(self) -> None:
        self.version += 1

    def job(self, job_id: object) -> UploadJob | None:
        return self._jobs.get(job_id) if isinstance(job_id, int) else None

    def ahead(self, job: UploadJob) -> int:
        """How many uploads will be indexed before this one (0 when it is being indexed or done)."""
        with self._cond:
            if job.state != "queued":
                return 0
            position = next((i for i, j in enumerate(self._queue) if j is job), 0)
            return position + (self._current is not None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or being indexed; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self.busy, timeout)

    def close(self, timeout: float = 10) -> None:
        """Stop the worker after the upload it is indexing (queued ones stay saved for ``resume``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                job = self._queue.popleft()
                job.state, job.started_at = "indexing", time.time()
                self._current = job
                self._changed()
            self._index(job)
            index_html = self._index_status()
            with self._cond:
                job.finished_at = time.time()
                self._current, self._last, self._index_html = None, job, index_html
                self._changed()
                self._cond.notify_all()

    def _index(self, job: UploadJob) -> None:
        staged, target = self.staging / job.saved, self.engine.settings.corpus_path / job.saved
        try:
            with _UPLOAD_LOCK:
                if target.exists():
                    staged.unlink(missing_ok=True)
                    raise InputError(
                        f"{job.saved} is already in the corpus; rename the file to add it as a new article."
                    )
                os.replace(staged, target)
                _index_new_article(self.engine, job.saved)
                documents = self.engine.index.manifest.get("documents", {})
            job.chunks = documents.get(job.saved, {}).get("chunks", 0)
            job.state = "added"
            log.info("upload: added %s (%s)", job.saved, _chunks(job.chunks))
        except QAError as e:
            job.state, job.detail = "refused", _printable(str(e))
            log.warning("upload: %s refused: %s", job.saved, e)
        except Exception:  # the worker must live on: log it, tell the uploader, go to the next upload
            log.exception("upload: indexing %s failed", job.saved)
            job.state, job.detail = "failed", f"indexing {job.saved} failed; the server log has the details."

    def _index_status(self) -> str:
        try:
            return status_line(self.engine)
        except Exception:  # noqa: BLE001 - the panel keeps its last line rather than break the worker
            log.exception("cannot read the index status")
            return self._index_html

    def status_html(self) -> str:
        """The status panel: the index (articles, chunks, built), what is being indexed and since
        when, what is queued, and the last result. Reads only what the worker wrote."""
        with self._cond:
            if not self._index_html:
                self._index_html = self._index_status()
            current, queue, last, index_html = self._current, list(self._queue), self._last, self._index_html
        parts = [index_html]
        if current is not None and current.started_at is not None:
            elapsed = max(0, round(time.time() - current.started_at))
            parts.append(
                f'<div class="qa-indexing">Indexing <b>{esc(current.saved)}</b> since '
                f"{_clock(current.started_at)} ({elapsed} s)</div>"
            )
        if queue:
            names = ", ".join(esc(j.saved) for j in queue[:QUEUE_SHOWN])
            more = f" and {len(queue) - QUEUE_SHOWN} more" if len(queue) > QUEUE_SHOWN else ""
            parts.append(f'<div class="qa-queued">Queued ({len(queue)}): {names}{more}</div>')
        if last is not None and last.finished_at is not None:
            if last.state == "added":
                what = f"Added <b>{esc(last.saved)}</b> ({_chunks(last.chunks)})"
            else:
                what = f"<b>{esc(last.saved)}</b> not added: {esc(_CONTROL.sub(' ', last.detail))}"
            parts.append(f'<div class="qa-last">Last upload: {what} at {_clock(last.finished_at)}</div>')
        return "".join(parts)


def render_job(job: UploadJob, ahead: int = 0) -> str:
    """The uploader's message about their upload, from saved to added or refused."""
    name = esc(shown_name(job.name))
    saved_as = _saved_as(job.name, job.saved)
    if job.state == "added":
        return (
            f'<div class="qa-upload qa-upload-ok">Added <b>{name}</b>{saved_as}: {_chunks(job.chunks)} indexed; '
            "you can ask about it now.</div>"
        )
    if job.state in ("refused", "failed"):
        return _refused_html(job.name, job.detail)
    verb = "Received" if saved_as else "Saved"
    if job.state == "indexing":
        when = f" (since {_clock(job.started_at)})" if job.started_at else ""
        state = f"indexing it now{when}"
    else:
        state = f"queued: {ahead} ahead" if ahead else "indexing it next"
    return (
        f'<div class="qa-upload qa-upload-wait">{verb} <b>{name}</b>{saved_as}; {state}. '
        "The status panel shows the progress.</div>"
    )


def receive_upload(indexer: Indexer, path: str | None, orig_name: object = None) -> tuple[UploadJob | None, str]:
    """Handle a file uploaded from the browser: check and save it at once, queue its indexing.

    ``orig_name`` is the name the browser gave (Gradio keeps the file under a shortened one:
    "x </b>.txt" arrives as ".../b.txt"). Returns (the queued job or None, HTML message)."""
    if not path:
        return None, ""
    name = orig_name if isinstance(orig_name, str) and orig_name.strip() else Path(path).name
    if Path(name).suffix.lower() in FEED_UPLOADS:
        jobs, refused = _read_upload(
            name, path, UPLOAD_GRADIO_MAX_BYTES, lambda data: _submit_feed(indexer, name, data), "saving"
        )
        if refused:
            return None, refused
        queued, duplicates = jobs
        note = f" ({duplicates} already in the corpus)" if duplicates else ""
        head = (
            f'<div class="qa-upload qa-upload-wait">Feed <b>{esc(shown_name(name))}</b>: '
            f"{len(queued)} article(s) queued{note}.</div>"
        )
        if not queued:
            return None, head
        return queued[-1], head + render_job(queued[-1], indexer.ahead(queued[-1]))
    job, refused = _read_upload(
        name, path, upload_limit(indexer.engine, name), lambda data: indexer.submit(name, data), "saving"
    )
    if refused:
        return None, refused
    return job, render_job(job, indexer.ahead(job))


def _submit_feed(indexer: Indexer, name: str, data: bytes) -> tuple[list[UploadJob], int]:
    """Every entry of an uploaded feed as an article file, queued (entries already in the corpus
    skipped): (the jobs, how many were skipped). Nothing is queued when the feed is refused."""
    if indexer.read_only:
        raise InputError("uploads are turned off: this app runs read-only.")
    if len(data) > UPLOAD_GRADIO_MAX_BYTES:
        raise InputError(f"{shown_name(name)} is too large; the limit is {UPLOAD_GRADIO_MAX_BYTES:,} bytes.")
    from .ingest.add import convert, known_articles
    from .ingest.article import file_name, render, text_hash

    articles = convert(bytes(data), re.split(r"[\\/]", name)[-1])
    by_url, by_text = known_articles(indexer.engine.settings.corpus_path)
    fresh = []
    for a in articles:
        if (a.url and a.url in by_url) or text_hash(a.text) in by_text:
            continue
        by_text[text_hash(a.text)] = file_name(a)
        fresh.append(a)
    jobs = [indexer.submit(file_name(a), render(a).encode("utf-8")) for a in fresh]
    return jobs, len(articles) - len(fresh)


def _read_upload(name: str, path: str, limit: int, act: Callable[[bytes], Any], doing: str) -> tuple[Any, str]:
    """Read an uploaded file (at most ``limit`` + 1 bytes, so an oversized one is still refused by
    size) and ``act`` on its bytes: (what ``act`` returned, "") or (None, the refusal's HTML).
    The edge of the app: any failure becomes a polite line, never a stack trace."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        return act(data), ""
    except QAError as e:
        log.info("upload: refused %s: %s", shown(name), e)
        return None, _refused_html(name, str(e))
    except OSError as e:
        return None, _refused_html(name, f"the uploaded file could not be read ({e.strerror or type(e).__name__}).")
    except Exception:
        log.exception("upload of %s failed", shown(name))
        return None, _refused_html(name, f"{doing} it failed unexpectedly.")


def status_tick(indexer: Indexer, seen: object, job_id: object) -> tuple[str, str | None, int] | None:
    """What a page's status timer gets: None when nothing changed since version ``seen`` (the tick
    sends nothing), else (status panel HTML, the message about this page's upload or None, version)."""
    version = indexer.version
    if version == seen and not indexer.busy:
        return None
    job = indexer.job(job_id)
    message = render_job(job, indexer.ahead(job)) if job is not None else None
    return indexer.status_html(), message, version


# ---------------------------------------------------------------- the Blocks


CSS = """
.qa-turn { line-height: 1.5; }
.qa-searched { font-size: 0.9em; color: var(--body-text-color-subdued); margin-bottom: 0.4em; }
.qa-text { margin: 0 0 0.5em 0; }
.qa-marker { font-weight: 600; text-decoration: none; padding: 0 1px; color: var(--link-text-color) !important; }
.qa-confidence { font-size: 0.85em; color: var(--body-text-color-subdued); margin: 0.2em 0 0.6em 0; }
.qa-bar { display: inline-block; vertical-align: middle; width: 90px; height: 7px; border-radius: 4px;
          background: var(--border-color-primary); overflow: hidden; margin-left: 6px; }
.qa-bar-fill { display: block; height: 100%; background: #16a34a; }
.qa-conf-medium .qa-bar-fill { background: #d97706; }
.qa-conf-low .qa-bar-fill { background: #dc2626; }
.qa-source { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 0.5em 0.75em;
             margin: 0.5em 0; scroll-margin-top: 60px; }
.qa-source:target { outline: 2px solid var(--color-accent); }
.qa-src-line { font-size: 0.85em; margin-bottom: 0.3em; }
.qa-num { font-weight: 700; }
.qa-context { margin: 0.3em 0; padding-left: 0.75em; border-left: 3px solid var(--border-color-primary);
              font-size: 0.95em; }
.qa-turn mark { background: #fde68a; color: #111827; padding: 0 2px; border-radius: 2px; }
.qa-article summary, .qa-passages summary { cursor: pointer; font-size: 0.9em; color: var(--link-text-color); }
.qa-article-text { max-height: 320px; overflow-y: auto; font-size: 0.9em; padding: 0.25em 0.5em;
                   border-left: 3px solid var(--border-color-primary); }
.qa-passages { margin-top: 0.5em; }
.qa-passages li, .qa-related li { margin: 0.4em 0; font-size: 0.9em; }
.qa-refusal { border: 1px dashed #d97706; background: rgba(245, 158, 11, 0.10); border-radius: 8px;
              padding: 0.6em 0.8em; }
.qa-refusal-title { font-weight: 700; color: #b45309; }
.qa-refusal p { margin: 0.3em 0; }
.qa-related-title { font-size: 0.85em; font-style: italic; margin-top: 0.4em; }
.qa-note { font-size: 0.8em; color: var(--body-text-color-subdued); }
.qa-status { font-size: 0.95em; }
.qa-upload { font-size: 0.9em; padding: 0.4em 0.6em; border-radius: 6px; }
.qa-upload-ok { background: rgba(22, 163, 74, 0.10); border: 1px solid #16a34a; }
.qa-upload-refused { background: rgba(220, 38, 38, 0.08); border: 1px solid #dc2626; }
.qa-upload-wait { background: rgba(37, 99, 235, 0.08); border: 1px solid #2563eb; }
.qa-indexing, .qa-queued, .qa-last { font-size: 0.85em; margin-top: 0.4em; }
.qa-indexing { color: #1d4ed8; }
.qa-question { white-space: pre-wrap; }
footer { display: none !important; }
"""

INTRO = (
    "Ask about the news articles. Answers are quotes from the articles, each with a numbered source "
    "you can open; when the articles don't say, you get told so."
)


def theme() -> Any:
    """The default theme with system fonts only: nothing is fetched from a font host."""
    import gradio as gr

    return gr.themes.Default(
        font=[gr.themes.Font("system-ui"), "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=[gr.themes.Font("ui-monospace"), "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    )


# The browser enforces this on every page of the app: scripts, styles, images, fonts and requests
# from this server only. Gradio's page needs inline scripts (its config) and inline styles.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' data: blob:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class GuardMiddleware:
    """ASGI middleware in front of the Gradio app.

    - adds the Content Security Policy (and nosniff, no-referrer) to every HTTP response;
    - refuses request bodies over ``max_body`` bytes with a 413 before the app reads them (declared
      by Content-Length, or counted as they arrive); Gradio's upload route is left to its own
      ``max_file_size``;
    - in read-only mode, refuses Gradio's upload route with a 403.
    """

    def __init__(self, app: Any, *, read_only: bool = False, max_body: int = REQUEST_MAX_BYTES) -> None:
        self.app = app
        self.read_only = read_only
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        path = re.sub("/+", "/", scope.get("path", "")).rstrip("/")
        if path.endswith("/gradio_api/upload") or path == "/upload":
            if self.read_only:
                await _plain(send_with_headers, 403, "Uploads are turned off: this app runs read-only.")
                return
            await self.app(scope, receive, send_with_headers)
            return
        if scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send_with_headers)
            return
        too_big = f"The request is larger than {self.max_body:,} bytes; questions and histories must be smaller."
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _plain(send_with_headers, 400, "Bad Content-Length header.")
                return
            if size > self.max_body:
                await _drain(receive, size)
                await _plain(send_with_headers, 413, too_big)
                return
            await self.app(scope, receive, send_with_headers)
            return
        # No declared length (a chunked body): read it here, up to the limit, then hand it on.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                if message.get("more_body", False):
                    await _drain(receive, DRAIN_MAX_BYTES)
                await _plain(send_with_headers, 413, too_big)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)


async def _drain(receive: Any, declared: int) -> None:
    """Read and drop a refused request's body (up to DRAIN_MAX_BYTES), so the client gets to read
    the refusal instead of a broken connection; a larger one is cut off."""
    if declared > DRAIN_MAX_BYTES:
        return
    seen = 0
    while seen <= DRAIN_MAX_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _plain(send: Any, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def launch_kwargs(read_only: bool = False) -> dict[str, Any]:
    """Arguments for ``Blocks.launch`` that keep the app offline, styled and bounded: no analytics,
    no MCP server, no run history, uploads capped by Gradio at ``UPLOAD_GRADIO_MAX_BYTES`` (the
    friendly limit, ``upload_limit``, is below it), other request bodies at ``REQUEST_MAX_BYTES``,
    and the Content Security Policy on every response."""
    from starlette.middleware import Middleware

    return {
        "theme": theme(),
        "css": CSS,
        "footer_links": [],
        "ssr_mode": False,
        "pwa": False,
        "mcp_server": False,
        "enable_monitoring": False,
        "run_history": False,
        "max_file_size": UPLOAD_GRADIO_MAX_BYTES,
        "show_error": False,
        "app_kwargs": {"middleware": [Middleware(GuardMiddleware, read_only=read_only)]},
    }


def named_upload_button(*args: Any, **kwargs: Any) -> Any:
    """A gr.UploadButton whose value also carries the file's name as the browser gave it
    (``.orig_name``): Gradio keeps an upload under the last part of its name, some characters
    removed, so "x </b>.txt" arrives as ".../b.txt".

    The instance's file processing is wrapped rather than the class subclassed: Gradio writes a
    ``.pyi`` stub next to the module of every Component subclass, which a package must not do."""
    import gradio as gr

    button = gr.UploadButton(*args, **kwargs)
    process = button._process_single_file

    def process_single_file(f: Any) -> Any:
        value = process(f)
        try:
            value.orig_name = getattr(f, "orig_name", None)
        except AttributeError:  # bytes (type="binary") carry no attributes
            pass
        return value

    button._process_single_file = process_single_file
    return button


def build_ui(
    engine: Engine, *, read_only: bool = False, indexer: Indexer | None = None, examples: list[str] | None = None
) -> Any:
    """The chat as gr.Blocks, with API endpoints /ask (HTML) and /answer_json (Answer.to_dict()).

    ``read_only`` leaves the upload control out (and the indexer refuses uploads). ``examples``:
    the example questions, when already computed (``example_questions``; app.py does it while
    gradio is still being imported)."""
    import gradio as gr

    indexer = indexer or Indexer(engine, read_only=read_only)
    indexer.resume()

    def chat(question: object, messages: list, history: list) -> tuple:
        reply = respond(engine, question, history)
        if reply.warning:  # nothing is sent back: the question stays in the box as typed
            gr.Warning(reply.warning)
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        messages = [*messages, *chat_messages(str(question), reply)][-CHAT_MAX_MESSAGES:]
        return messages, messages, reply.history, ""

    def forget() -> tuple:
        return [], [], [], ""

    def on_upload(file: Any) -> tuple:
        job, message = receive_upload(indexer, file, getattr(file, "orig_name", None))
        return message, (job.id if job else None), indexer.status_html(), indexer.version

    def tick(seen: object, job_id: object) -> tuple:
        update = status_tick(indexer, seen, job_id)
        if update is None:
            return gr.skip(), gr.skip(), gr.skip()
        panel, message, version = update
        return panel, gr.skip() if message is None else message, version

    def ask(question: str, history: list[dict] | None = None) -> str:
        """The answer to a question as HTML (quotes, [n] markers, sources), or a refusal."""
        reply = respond(engine, question, history)
        if reply.warning:
            raise gr.Error(reply.warning, print_exception=False)
        return reply.html

    def answer_json(question: str, history: list[dict] | None = None) -> dict:
        """The answer as a dict: text, citations (with offsets), confidence, abstained, passages, query, message."""
        reply = respond(engine, question, history)
        if reply.warning or reply.answer is None:
            raise gr.Error(reply.warning, print_exception=False)
        return reply.answer.to_dict()

    examples = example_questions(engine) if examples is None else examples
    with gr.Blocks(title="Ask the articles", analytics_enabled=False) as demo:
        gr.Markdown(f"## Ask the articles\n{INTRO}")
        history = gr.State([])  # plain questions and answer texts, for follow-ups (kept on the server)
        shown_messages = gr.State([])  # the chat as shown, kept on the server: the page never sends it back
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Answers",
                    height=600,
                    latex_delimiters=[],
                    feedback_options=None,
                    buttons=[],
                    placeholder="Ask a question below, or pick an example.",
                    elem_id="qa-chat",
                )
                with gr.Row():
                    question = gr.Textbox(
                        placeholder=f"e.g. {examples[0]}" if examples else "Ask about the articles",
                        show_label=False,
                        scale=5,
                        lines=1,
                        max_lines=4,
                        elem_id="qa-question",
                        submit_btn="Ask",
                    )
                    clear = gr.Button("New chat", scale=1, min_width=100, variant="secondary", elem_id="qa-clear")
                gr.Examples(examples, inputs=question, label="Try asking")
            with gr.Column(scale=1, min_width=260, elem_id="qa-side"):
                gr.Markdown("### The index")
                # gr.Markdown, not gr.HTML: Gradio's HTML component compiles templates with eval, which
                # the Content Security Policy forbids. Our HTML is one block, so Markdown leaves it alone.
                status = gr.Markdown("", elem_id="qa-status")  # filled on each page load, then by the timer
                if read_only:
                    gr.Markdown("### Adding articles\nUploads are turned off: this app runs read-only.")
                else:
                    gr.Markdown(
                        "### Add an article\n"
                        f"A UTF-8 .txt or .md file, up to {upload_limit(engine) // 1000:,} KB, or a saved web page "
                        f"(.html) or a PDF, up to {UPLOAD_GRADIO_MAX_BYTES // 1_000_000} MB (its main text is kept, "
                        "with its date, outlet and link), or an RSS/Atom feed (one article per entry). It is checked and "
                        "saved at once, then indexed in the background, one upload at a time; the panel above "
                        "shows the progress. A name already in the corpus or queued is refused."
                    )
                    upload_button = named_upload_button(
                        "Upload .txt / .md / .html / .pdf",
                        file_types=[".txt", ".md", *CONVERTED_UPLOADS, *FEED_UPLOADS],
                        file_count="single",
                        size="md",
                        elem_id="qa-upload",
                    )
                    upload_message = gr.Markdown("", elem_id="qa-upload-message")
                    my_job = gr.State(None)  # this page's last upload, whose progress the message follows
                    seen = gr.State(None)  # the indexer version this page shows
                    timer = gr.Timer(STATUS_TICK_SECONDS)

        outputs = [chatbot, shown_messages, history, question]
        question.submit(chat, [question, shown_messages, history], outputs, api_visibility="private")
        clear.click(forget, None, outputs, api_visibility="private")
        chatbot.clear(forget, None, outputs, api_visibility="private")  # its trash icon forgets the history too
        demo.load(indexer.status_html, None, status, api_visibility="private")  # fresh on every page load
        if not read_only:
            upload_button.upload(
                on_upload, upload_button, [upload_message, my_job, status, seen], api_visibility="private"
            )
            timer.tick(
                tick,
                [seen, my_job],
                [status, upload_message, seen],
                api_visibility="private",
                show_progress="hidden",
                queue=False,  # one plain request per tick, not a queue join and an event stream
            )
        gr.api(ask, api_name="ask")
        gr.api(answer_json, api_name="answer_json")
    return demo
