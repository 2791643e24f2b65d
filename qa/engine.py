"""The Engine ties the stages together for one corpus folder and one index folder.

Heavy things are loaded on first use and kept: the embedding model (shared by all engines of
the process) and the loaded index. The module-level functions of ``qa`` use a default engine
for the folders named by the arguments or by ``QA_CORPUS_DIR`` / ``QA_INDEX_DIR``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from . import answering, retrieval
from . import index as index_mod
from .embedding import Embedder, SentenceTransformerEmbedder
from .errors import InputError
from .settings import Settings
from .types import Answer, BuildReport, Passage

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self._embedder = embedder
        self._index: index_mod.Index | None = None
        self._lock = threading.RLock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder(self.settings)
        return self._embedder

    # ------------------------------------------------------------ index

    def build_index(self, *, force: bool = False) -> BuildReport:
        """Bring the index up to date (incremental) and load it."""
        with self._lock:
            report = index_mod.build_index(self.settings, self.embedder, force=force)
            if report.changed or self._index is None:
                self._index = index_mod.load_index(self.settings.index_path, self.settings, self.embedder)
            return report

    @property
    def index(self) -> index_mod.Index:
        """The loaded index; built or brought up to date on first use."""
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self.build_index()
        assert self._index is not None
        return self._index

    def warm_up(self) -> None:
        """Load the model and the index now, so the first question does not wait for them."""
        _ = self.index
        self.embedder.embed(["warm up"])

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
                f"(max_question_chars). It begins {q[:60]!r}."
            )
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.settings.max_k:
            raise InputError(f"k must be an integer from 1 to {self.settings.max_k}. Currently, it is {k!r}.")
        return q, k

    def retrieve(self, question: str, k: int = 5) -> list[Passage]:
        q, k = self._check(question, k)
        return retrieval.search(self.index, self.embedder, self.settings, q, k).passages

    def answer(self, question: str, history: list[dict] | None = None, k: int = 5) -> Answer:
        q, k = self._check(question, k)
        if history is not None:
            if not isinstance(history, list):
                raise InputError(
                    f"history must be a list of {{'role', 'content'}} messages. Currently, it is {type(history).__name__}."
                )
            for i, m in enumerate(history):
                if not isinstance(m, dict) or "role" not in m or "content" not in m:
                    raise InputError(
                        f"history[{i}] must be a {{'role', 'content'}} message. Currently, it is {m!r:.80}."
                    )
        query = answering.rewrite_query(q, history, self.settings.history_turns)
        index = self.index
        hits = retrieval.search(index, self.embedder, self.settings, q, k, also=(query,))
        return answering.build_answer(index, hits, q, query, self.settings)


_EMBEDDER: Embedder | None = None
_ENGINES: dict[tuple[str, str], Engine] = {}
_GLOBAL_LOCK = threading.Lock()


def default_embedder(settings: Settings) -> Embedder:
    """The process-wide sentence-transformers embedder (loaded on first use)."""
    global _EMBEDDER
    with _GLOBAL_LOCK:
        if _EMBEDDER is None:
            _EMBEDDER = SentenceTransformerEmbedder(
                settings.model_id, settings.model_path or None, settings.batch_size, settings.progress_min_texts
            )
        return _EMBEDDER


def get_engine(corpus_dir: str | Path | None = None, index_dir: str | Path | None = None) -> Engine:
    """The engine for these folders (arguments, else QA_CORPUS_DIR / QA_INDEX_DIR, else ./corpus, ./index)."""
    settings = Settings.from_env(
        corpus_dir=str(corpus_dir) if corpus_dir is not None else None,
        index_dir=str(index_dir) if index_dir is not None else None,
    )
    key = (str(Path(settings.corpus_dir).resolve()), str(Path(settings.index_dir).resolve()))
    with _GLOBAL_LOCK:
        engine = _ENGINES.get(key)
        if engine is None or engine.settings != settings:
            engine = _ENGINES[key] = Engine(settings)
    return engine
