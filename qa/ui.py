"""The Gradio chat: answers with checkable citations, honest refusals, uploads and an index status line.

The rendering and upload functions are plain (values in, HTML or errors out) and are tested without
a browser; ``build_ui(engine)`` wires them into ``gr.Blocks`` and ``app.py`` only launches it.
Every piece of corpus or user text that goes into HTML passes through ``html.escape``.
"""

from __future__ import annotations

import html
import logging
import os
import re
import secrets
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import corpus
from .engine import Engine
from .errors import InputError, QAError
from .index import document_from_index
from .types import Answer, BuildReport, Citation, Passage

log = logging.getLogger(__name__)

UPLOAD_MAX_BYTES = 1_000_000  # uploads larger than this (or than settings.max_file_bytes) are refused
HIGH_CONFIDENCE = 0.8  # at or above: "high"; from settings.abstain_threshold up: "medium"; below: "low"
CONTEXT_MAX_CHARS = 700  # a quote's surrounding paragraph is clipped to about this many characters
RELATED_MAX = 3  # passages listed under a refusal
RELATED_CHARS = 280  # characters of each related passage shown under a refusal
MAX_NAME_CHARS = 100  # longest stem of an uploaded file's name
EXAMPLES = 3  # example questions offered under the chat

_EXAMPLE_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]+(?: [A-Z][a-z]+)+")
_PARA_BREAK = re.compile(r"\n[ \t]*\n\s*")
_MARKER = re.compile(r"\[(\d+)\]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_UPLOAD_LOCK = threading.Lock()


def esc(text: str) -> str:
    return html.escape(text, quote=True)


# ---------------------------------------------------------------- answers


def render_answer(answer: Answer, question: str, engine: Engine, uid: str | None = None) -> str:
    """The HTML of one assistant turn: an answer with its sources, or a refusal with related passages."""
    uid = uid or secrets.token_hex(4)
    parts = [f'<div class="qa-turn" id="qa-{uid}">']
    if answer.query and answer.query.strip() != question.strip():
        parts.append(f'<div class="qa-searched">searched for: <q>{esc(answer.query)}</q></div>')
    if answer.abstained:
        parts.append(render_refusal(answer))
    else:
        parts.append(_answer_text(answer, uid))
        parts.append(render_confidence(answer.confidence, engine.settings.abstain_threshold))
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

    return f'<p class="qa-text">{_MARKER.sub(link, esc(answer.text))}</p>'


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
                f'<li><div class="qa-src-line">{_source_line(p.title, p.date, p.source)}</div>{esc(text)}</li>'
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


def _source_line(title: str, date: str | None, source: str) -> str:
    bits = [f"<b>{esc(title)}</b>"]
    if date:
        bits.append(esc(date))
    bits.append(f"<code>{esc(source)}</code>")
    return " · ".join(bits)


def render_citation(c: Citation, doc: corpus.Document | None, uid: str) -> str:
    """A source card: where the quote comes from, its paragraph with the quote marked, the whole article."""
    head = f'<div class="qa-src-line"><span class="qa-num">[{c.number}]</span> {_source_line(c.title, c.date, c.source)}</div>'
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
        f'<li><div class="qa-src-line">{_source_line(p.title, p.date, p.source)} · score {p.score:.3f}</div>'
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


def respond(engine: Engine, question: str | None, history: list[dict] | None = None) -> Reply:
    """Answer a question with the plain history ({"role", "content"}: questions and answer texts)."""
    history = list(history or [])
    q = (question or "").strip()
    if not q:
        return Reply(warning="Please type a question about the articles first.", history=history)
    try:
        answer = engine.answer(q, history)
    except QAError as e:
        return Reply(warning=f"Sorry, I can't answer that: {e}", history=history)
    except Exception:  # the edge of the app: log it, show a polite line, never a stack trace
        log.exception("answering %r failed", q[:200])
        return Reply(
            warning="Sorry, something went wrong while answering. The server log has the details.", history=history
        )
    history += [{"role": "user", "content": q}, {"role": "assistant", "content": answer.text}]
    return Reply(html=render_answer(answer, q, engine), answer=answer, history=history)


def example_questions(engine: Engine, n: int = EXAMPLES) -> list[str]:
    """Questions drawn from the articles: "What do we know about <name>?" for the names they mention most
    (two or more capitalised words, not at a sentence start), kept only when the engine answers
    them; else one question per article title."""
    counts: Counter[str] = Counter()
    for chunk in engine.index.chunks:
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


def upload_limit(engine: Engine) -> int:
    return min(UPLOAD_MAX_BYTES, engine.settings.max_file_bytes)


def safe_article_name(name: str) -> str:
    """The name an upload is saved under: its last path part, safe characters only, .txt or .md.

    Raises InputError for hidden names, other extensions and names with nothing left."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    if not base or base in (".", ".."):
        raise InputError(f"{name!r} has no file name.")
    if base.startswith("."):
        raise InputError(f"{base!r} is a hidden file name; rename it without the leading dot.")
    stem, dot, ext = base.rpartition(".")
    if not dot or f".{ext.lower()}" not in corpus.EXTENSIONS:
        raise InputError(f"{base!r} is not a .txt or .md file.")
    stem = _UNSAFE_NAME.sub("_", stem).strip("_.")[:MAX_NAME_CHARS]
    if not stem:
        raise InputError(f"{base!r} has no usable name before its extension.")
    return f"{stem}.{ext.lower()}"


def add_article(engine: Engine, name: str, data: bytes) -> tuple[str, BuildReport]:
    """Check an uploaded article, write it into the corpus folder atomically and index it.

    Returns (saved name, build report). Raises InputError naming the file when it is refused;
    a refused upload leaves the corpus folder and the index as they were."""
    safe = safe_article_name(name)
    limit = upload_limit(engine)
    if len(data) > limit:
        raise InputError(f"{safe} is too large ({len(data):,} bytes or more); the limit is {limit:,} bytes.")
    try:
        corpus.parse_document(safe, data)
    except ValueError as e:
        raise InputError(f"{safe} was refused: {e}.") from None
    folder = engine.settings.corpus_path
    target = folder / safe
    with _UPLOAD_LOCK:
        if target.exists():
            raise InputError(f"{safe} is already in the corpus; rename the file to add it as a new article.")
        _write_atomic(target, data)
        try:
            report = engine.build_index()
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        reason = next((s for s in report.skipped if s.startswith(f"{safe}:")), "")
        if reason:  # not indexed, so the index is as it was; take the file back out of the corpus
            target.unlink(missing_ok=True)
            raise InputError(f"{safe} was refused by the indexer: {reason.split(':', 1)[1].strip()}.")
    return safe, report


def _write_atomic(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if target.exists():  # checked again just before the rename, under the upload lock
            raise InputError(f"{target.name} is already in the corpus.")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def upload(engine: Engine, path: str | None) -> tuple[bool, str]:
    """Handle a file uploaded from the browser: (accepted, HTML message)."""
    if not path:
        return False, ""
    name = Path(path).name
    try:
        with open(path, "rb") as f:
            data = f.read(upload_limit(engine) + 1)
        saved, report = add_article(engine, name, data)
    except QAError as e:
        return False, f'<div class="qa-upload qa-upload-refused"><b>Not added.</b> {esc(str(e))}</div>'
    except Exception:  # the edge of the app: log it, show a polite line, never a stack trace
        log.exception("upload of %s failed", name)
        return (
            False,
            f'<div class="qa-upload qa-upload-refused">Upload of {esc(name)} failed; the server log has the details.</div>',
        )
    chunks = engine.index.manifest.get("documents", {}).get(saved, {}).get("chunks", 0)
    log.info("upload: added %s (%s chunks, %d embedded)", saved, chunks, report.embedded_chunks)
    renamed = f" (saved as {esc(saved)})" if saved != name else ""
    return True, (
        f'<div class="qa-upload qa-upload-ok">Added <b>{esc(name)}</b>{renamed}: {chunks} chunk{"" if chunks == 1 else "s"} indexed; '
        "you can ask about it now.</div>"
    )


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


def launch_kwargs() -> dict[str, Any]:
    """Arguments for ``Blocks.launch`` that keep the app offline and styled."""
    return {
        "theme": theme(),
        "css": CSS,
        "footer_links": [],
        "ssr_mode": False,
        "pwa": False,
        "mcp_server": False,
        "enable_monitoring": False,
        "max_file_size": 5 * UPLOAD_MAX_BYTES,  # Gradio's hard cap; upload() gives the friendly message below it
        "show_error": False,
    }


def build_ui(engine: Engine) -> Any:
    """The chat as gr.Blocks, with API endpoints /ask (HTML) and /answer_json (Answer.to_dict())."""
    import gradio as gr

    def chat(question: str, messages: list, history: list) -> tuple[list, list, str]:
        reply = respond(engine, question, history)
        if reply.warning:
            gr.Warning(reply.warning)
            return messages, history, question
        q = question.strip()
        messages = [*messages, {"role": "user", "content": esc(q)}, {"role": "assistant", "content": reply.html}]
        return messages, reply.history, ""

    def on_upload(path: str | None) -> tuple[str, str]:
        return upload(engine, path)[1], status_line(engine)

    def ask(question: str, history: list[dict] | None = None) -> str:
        """The answer to a question as HTML (quotes, [n] markers, sources), or a refusal."""
        reply = respond(engine, question, history)
        if reply.warning:
            raise gr.Error(reply.warning)
        return reply.html

    def answer_json(question: str, history: list[dict] | None = None) -> dict:
        """The answer as a dict: text, citations (with offsets), confidence, abstained, passages, query, message."""
        reply = respond(engine, question, history)
        if reply.warning or reply.answer is None:
            raise gr.Error(reply.warning)
        return reply.answer.to_dict()

    examples = example_questions(engine)
    with gr.Blocks(title="Ask the articles", analytics_enabled=False) as demo:
        gr.Markdown(f"## Ask the articles\n{INTRO}")
        history = gr.State([])
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
                status = gr.HTML("", elem_id="qa-status")  # filled on each page load, so it is never stale
                gr.Markdown(
                    "### Add an article\n"
                    f"A UTF-8 .txt or .md file, up to {upload_limit(engine) // 1000:,} KB. It is indexed at once; "
                    "a name already in the corpus is refused."
                )
                upload_button = gr.UploadButton(
                    "Upload .txt / .md", file_types=[".txt", ".md"], file_count="single", size="md", elem_id="qa-upload"
                )
                upload_message = gr.HTML("", elem_id="qa-upload-message")

        question.submit(chat, [question, chatbot, history], [chatbot, history, question], api_visibility="private")
        clear.click(lambda: ([], [], ""), None, [chatbot, history, question], api_visibility="private")
        chatbot.clear(lambda: [], None, history, api_visibility="private")  # its trash icon forgets the history too
        upload_button.upload(on_upload, upload_button, [upload_message, status], api_visibility="private")
        demo.load(lambda: status_line(engine), None, status, api_visibility="private")  # fresh after uploads
        gr.api(ask, api_name="ask")
        gr.api(answer_json, api_name="answer_json")
    return demo
