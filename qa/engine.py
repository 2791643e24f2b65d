"""The Engine ties the stages together for one corpus folder and one index folder.

Heavy things are loaded on first use and kept: the embedding model (shared by all engines of
the process) and the loaded index. The module-level functions of ``qa`` use a default engine
for the folders named by the arguments or by ``QA_CORPUS_DIR`` / ``QA_INDEX_DIR``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from . import answering, filters, retrieval
from . import index as index_mod
from .corpus import decode, read_corpus_file
from .embedders.sentence_transformers import SentenceTransformerEmbedder
from .embedding import Embedder, release_memory
from .errors import IndexCorruptError, InputError, QAError, show
from .protocols import Reader
from .settings import READERS, Settings
from .types import Answer, BuildReport, Passage

FOLLOW_SECONDS = 1.0  # how often a loaded engine looks for a version published by another process
ARTICLE_CACHE = 64  # articles kept in memory for checking quotes (the most recently cited)
ROLES = ("user", "assistant", "system")  # the Gradio / OpenAI chat message roles we accept
T = TypeVar("T", Answer, list[Passage])

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self._embedder = embedder
        self._index: index_mod.Index | None = None
        self._lock = threading.RLock()
        # source -> (size, mtime_ns, text), least recently used first
        self._articles: OrderedDict[str, tuple[int, int, str | None]] = OrderedDict()
        self._articles_lock = threading.Lock()
        self._readers: dict[str, Reader] = {}
        self._readers_lock = threading.Lock()  # not _lock: a build holds that one for long
        self._followed = time.monotonic()  # when CURRENT was last compared with the loaded version

    def reader(self, name: str | None = None) -> Reader:
        """The Reader named ``name`` (default ``Settings.reader``): 'trained' or 'picker'."""
        name = self.settings.reader if name is None else name
        if name not in READERS:
            raise InputError(f"reader must be one of {', '.join(map(repr, READERS))}. Currently, it is {show(name)}.")
        with self._readers_lock:
            r = self._readers.get(name)
            if r is None:
                if name == "trained":
                    from .reading.trained import TrainedReader

                    r = TrainedReader(self.settings)
                else:
                    from .reading.picker import SentencePicker

                    r = SentencePicker(self.settings)
                self._readers[name] = r
        return r

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder(self.settings)
        return self._embedder

    # ------------------------------------------------------------ index

    def build_index(self, *, force: bool = False, load: bool = True, embedder: Embedder | None = None) -> BuildReport:
        """Bring the index up to date (incremental) and, unless ``load`` is False, load it: only
        once, and only its new segments when it was loaded before. ``embedder`` embeds this
        build's chunks instead of the engine's (the same model: ``python -m qa index --ray``)."""
        if embedder is not None and embedder.model_id != self.embedder.model_id:
            raise InputError(
                f"a build embedder must be {self.embedder.model_id}. Currently, it is {show(embedder.model_id)}."
            )
        with self._lock:
            report = index_mod.build_index(self.settings, embedder or self.embedder, force=force)
            if load and (report.changed or self._index is None):
                self._index = index_mod.load_index(
                    self.settings.index_path, self.settings, self.embedder, reuse=None if force else self._index
                )
            if report.embedded_chunks:
                release_memory()
            return report

    def verify_index(self) -> dict:
        """Check every byte of the index against its sha256 (IndexCorruptError naming the first bad file)."""
        return index_mod.verify_index(self.settings.index_path, self.settings, self.embedder)

    @property
    def index(self) -> index_mod.Index:
        """The loaded index; built or brought up to date on first use. A version published since
        by another process (``python -m qa index`` beside a running app, a builder serving
        several app replicas) is picked up within ``FOLLOW_SECONDS``: only its new segments read."""
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self.build_index()
        else:
            self._follow()
        assert self._index is not None
        return self._index

    def _follow(self) -> None:
        """Load the live version if CURRENT names another than the one loaded (checked at most
        every FOLLOW_SECONDS; skipped while this engine builds). A version that cannot be loaded
        is logged and the loaded one kept."""
        now = time.monotonic()
        if now - self._followed < FOLLOW_SECONDS or not self._lock.acquire(blocking=False):
            return
        try:
            self._followed = now
            loaded = self._index
            try:
                pointer = index_mod.read_pointer(self.settings.index_path)
                if loaded is None or pointer is None or pointer[0] == loaded.path:
                    return
                fresh = index_mod.load_index(self.settings.index_path, self.settings, self.embedder, reuse=loaded)
            except QAError as e:
                log.warning("kept the loaded index: the one published since cannot be loaded: %s", e)
                return
            if fresh is not None:
                self._index = fresh
                log.info("loaded the index version published by another process: %s", fresh.path.name)
        finally:
            self._lock.release()

    def warm_up(self) -> None:
        """Load the model and the index now, so the first question does not wait for them."""
        _ = self.index
        self.embedder.embed(["warm up"])
        warm = getattr(self.reader(), "warm_up", None)
        if warm is not None:
            warm()
        if self.settings.cross_rerank_weight > 0:
            from .rerankers import cross

            cross.scorer(self.settings.cross_rerank_weights, self.settings.cross_rerank_threads).score(
                "warm up", ["warm up"]
            )

    # ------------------------------------------------------------ questions

    def _check(self, question: object, k: object) -> tuple[str, int]:
        if not isinstance(question, str):
            raise InputError(f"question must be a string. Currently, it is {type(question).__name__}.")
        q = question.strip()
        if not q:
            raise InputError("question is empty. Ask something about the articles.")
        if len(q) > self.settings.max_question_chars:
            raise InputError(
                f"question is {len(q):,} characters long; the limit is {self.settings.max_question_chars:,} "
                f"(max_question_chars). It begins {show(q[:60])}."
            )
        _check_text("question", q)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.settings.max_k:
            raise InputError(f"k must be an integer from 1 to {self.settings.max_k}. Currently, it is {show(k)}.")
        return q, k

    def _check_history(self, history: object) -> list[dict] | None:
        return None if history is None else check_history(history, self.settings)

    def retrieve(self, question: str, k: int = 5, *, since=None, until=None, sources=None) -> list[Passage]:
        """The ``k`` best passages; only from articles dated ``since``..``until`` (dates: YYYY-MM-DD,
        YYYY-MM or YYYY) and among ``sources`` (file names, outlets or web sites) when given, and
        within the period the question names ("in 2025") when some article is dated in it."""
        q, k = self._check(question, k)
        asked = filters.check(since, until, sources)

        def run(index: index_mod.Index) -> list[Passage]:
            _, allowed = _restriction(index, asked, q)
            return retrieval.search(index, self.embedder, self.settings, q, k, allowed=allowed).passages

        return self._verified(run)

    def answer(
        self,
        question: str,
        history: list[dict] | None = None,
        k: int = 5,
        *,
        reader: str | None = None,
        since=None,
        until=None,
        sources=None,
    ) -> Answer:
        """Retrieve for the question (and its follow-up rewrite), then let the reader answer
        (``reader``: 'trained' or 'picker'; default ``Settings.reader``). ``since``, ``until`` and
        ``sources`` restrict the articles searched, as in ``retrieve``; ``Answer.filter`` says how."""
        q, k = self._check(question, k)
        messages = self._check_history(history)
        asked = filters.check(since, until, sources)
        chosen = self.reader(reader)
        query = answering.rewrite_query(q, messages, self.settings.history_turns, self.settings.max_question_chars)

        def run(index: index_mod.Index) -> Answer:
            applied, allowed = _restriction(index, asked, q)
            hits = retrieval.search(index, self.embedder, self.settings, q, k, also=(query,), allowed=allowed)
            answer = chosen.read(q, hits, index, query)
            return dataclasses.replace(answer, filter=applied.describe()) if applied else answer

        return self._verified(run)

    # ------------------------------------------------------------ quotes checked against the articles

    def _verified(self, run: Callable[[index_mod.Index], T]) -> T:
        """``run(index)``, after checking every quote and passage it returns against the article
        file at its offsets. A mismatch means the index is stale or altered: it is rebuilt once
        and ``run`` repeated; if that still does not verify, IndexCorruptError."""
        index = self.index
        result = run(index)
        bad = self._mismatch(result)
        if bad is None:
            return result
        source, start, end = bad
        log.warning(
            "the index's text of %s at %d-%d is not the file's; rebuilding the index before answering",
            show(source),
            start,
            end,
        )
        with self._lock:
            if self._index is index:  # another thread may have repaired it already
                self._repair(index, source)
        result = run(self.index)
        bad = self._mismatch(result)
        if bad is not None:
            source, start, end = bad
            raise IndexCorruptError(
                f"the index's text of {show(source)} at {start}-{end} does not match the file, even after a rebuild"
            )
        return result

    def _repair(self, index: index_mod.Index, source: str) -> None:
        """An ordinary update when the file changed since the index was built; else (the index
        itself is wrong) a forced rebuild."""
        meta = index.documents.get(source)
        changed = False
        if meta is not None and self._article_path(source) is not None:
            try:
                data = read_corpus_file(self.settings.corpus_path, source, self.settings.max_file_bytes)
                changed = hashlib.sha256(data).hexdigest() != meta.get("sha256")
            except (OSError, ValueError):
                changed = True  # gone or no longer a regular file: an update drops it
        if changed:
            report = self.build_index()
            if report.changed:
                return
        self.build_index(force=True)

    def _mismatch(self, result: Answer | list[Passage]) -> tuple[str, int, int] | None:
        """(source, start, end) of the first quote or passage that is not the article's text."""
        passages = result if isinstance(result, list) else result.passages
        spans = [(p.source, p.start, p.end, p.text) for p in passages]
        if isinstance(result, Answer):
            spans += [(c.source, c.start, c.end, c.quote) for c in result.citations]
            if result.span is not None:
                s = result.span
                spans.append((s.source, s.start, s.end, s.text))
        for source, start, end, text in spans:
            article = self._article(source)
            if article is None or not 0 <= start <= end <= len(article) or article[start:end] != text:
                return source, start, end
        return None

    def _article_path(self, source: str) -> Path | None:
        """The corpus file of a source, or None when the name points outside the corpus folder."""
        rel = PurePosixPath(source)
        if not source or "\\" in source or rel.is_absolute() or any(part in ("..", "") for part in rel.parts):
            return None
        return self.settings.corpus_path.joinpath(*rel.parts)

    def _article(self, source: str) -> str | None:
        """The article's text as the index reads it (UTF-8, universal newlines), or None when it
        is missing, unreadable or not a regular file (links are not followed). The last
        ``ARTICLE_CACHE`` articles are kept by (size, mtime_ns): a warm answer re-reads nothing."""
        path = self._article_path(source)
        if path is None:
            return None
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        with self._articles_lock:
            cached = self._articles.get(source)
            if cached is not None and cached[:2] == (st.st_size, st.st_mtime_ns):
                self._articles.move_to_end(source)
                return cached[2]
        text: str | None = None
        try:
            text = decode(read_corpus_file(self.settings.corpus_path, source, self.settings.max_file_bytes), source)
        except (OSError, ValueError):
            text = None
        with self._articles_lock:
            self._articles[source] = (st.st_size, st.st_mtime_ns, text)
            while len(self._articles) > ARTICLE_CACHE:
                self._articles.popitem(last=False)
        return text


def check_history(history: object, settings: Settings) -> list[dict]:
    """The history as plain {"role", "content"} messages, within the bounds in ``settings``;
    InputError naming the bad value otherwise (checked before any work, so a 10 MB history is
    refused at once)."""
    if not isinstance(history, (list, tuple)):
        raise InputError(
            f"history must be a list of {{'role', 'content'}} messages. Currently, it is {_typed(history)}."
        )
    if len(history) > settings.max_history_messages:
        raise InputError(
            f"history has {len(history):,} messages; the limit is {settings.max_history_messages:,} "
            "(max_history_messages). Pass only the recent turns."
        )
    out, total = [], 0
    for i, m in enumerate(history):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise InputError(f"history[{i}] must be a {{'role', 'content'}} message. Currently, it is {_typed(m)}.")
        role, content = m["role"], m["content"]
        if not isinstance(role, str) or role not in ROLES:
            raise InputError(
                f"history[{i}]['role'] must be one of {', '.join(map(repr, ROLES))}. Currently, it is {_typed(role)}."
            )
        if not isinstance(content, str):
            raise InputError(f"history[{i}]['content'] must be text. Currently, it is {_typed(content)}.")
        total += len(content)
        out.append({"role": role, "content": content})
    if total > settings.max_history_chars:
        raise InputError(
            f"history holds {total:,} characters; the limit is {settings.max_history_chars:,} (max_history_chars). "
            "Pass only the recent turns."
        )
    for i, m in enumerate(out):
        _check_text(f"history[{i}]['content']", m["content"])
    return out


def _typed(value: object) -> str:
    """A value for a message, with its type: "int 5", "dict {'a': 1}"."""
    return f"{type(value).__name__} {show(value)}"


def _check_text(name: str, text: str) -> None:
    """Refuse text that is not valid Unicode (a lone surrogate, from a bad UTF-16 decoding):
    the tokenizer would fail on it deep inside the model."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(
            f"{name} holds a lone surrogate {show(text[e.start : e.end])[1:-1]} at position {e.start:,}, "
            f"which is not text. Currently, it is {show(text)}."
        ) from None


def _folder(name: str, value: object) -> str | None:
    """A folder argument as a str, or InputError naming it: not a path, empty (it would mean the
    current folder), or a name no file can have (a NUL, a lone surrogate)."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise InputError(f"{name} must be a folder path (a str or a pathlib.Path). Currently, it is {show(value)}.")
    if not value.strip():
        raise InputError(f"{name} is empty. Name a folder (an empty path would mean the current folder).")
    if "\0" in value:
        raise InputError(f"{name} holds a NUL character, which no file name can. Currently, it is {show(value)}.")
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        raise InputError(
            f"{name} is not a file name this system can use (it holds a lone surrogate). Currently, it is {show(value)}."
        ) from None
    return value


def _restriction(index: index_mod.Index, asked: filters.Filter, question: str):
    """(the Filter applied, allowed rows or None). The API's filter always applies; the period a
    question names ("in 2025") only when some article is dated in it: "nominated in 2022" in an
    article of 2024 is still found."""
    said = filters.from_question(question)
    applied = asked
    allowed = index.allowed_rows(asked.allows) if asked else None
    if said:
        both = asked.merged(said)
        rows = index.allowed_rows(both.allows)
        if rows.any():
            applied, allowed = both, rows
    return applied, allowed


_EMBEDDERS: dict[tuple, Embedder] = {}
_ENGINES: dict[tuple[str, str], Engine] = {}
_GLOBAL_LOCK = threading.Lock()


def default_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder the settings name (loaded on first use, shared by every engine
    with the same embedding settings)."""
    key = (settings.embedder, settings.model_id, settings.model_path, settings.batch_size, settings.progress_min_texts)
    with _GLOBAL_LOCK:
        embedder = _EMBEDDERS.get(key)
        if embedder is None:
            if settings.embedder == "onnx":
                from .embedders.onnx import OnnxEmbedder

                embedder = OnnxEmbedder(
                    settings.model_id, settings.model_path or None, progress_min_texts=settings.progress_min_texts
                )
            else:
                embedder = SentenceTransformerEmbedder(
                    settings.model_id, settings.model_path or None, settings.batch_size, settings.progress_min_texts
                )
            embedder = _EMBEDDERS[key] = embedder
        return embedder


def get_engine(corpus_dir: str | Path | None = None, index_dir: str | Path | None = None, **overrides: Any) -> Engine:
    """The engine for these folders (arguments, else QA_CORPUS_DIR / QA_INDEX_DIR, else ./corpus,
    ./index), with ``overrides`` of other settings (over their ``QA_*`` values)."""
    settings = Settings.from_env(
        corpus_dir=_folder("corpus_dir", corpus_dir), index_dir=_folder("index_dir", index_dir), **overrides
    )
    for name in ("corpus_dir", "index_dir"):  # QA_CORPUS_DIR / QA_INDEX_DIR too
        _folder(name, getattr(settings, name))
    key = (str(Path(settings.corpus_dir).resolve()), str(Path(settings.index_dir).resolve()))
    with _GLOBAL_LOCK:
        engine = _ENGINES.get(key)
        if engine is None or engine.settings != settings:
            engine = _ENGINES[key] = Engine(settings)
    return engine
