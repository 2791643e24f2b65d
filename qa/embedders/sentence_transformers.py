"""The float reference embedder: all-MiniLM-L6-v2 through sentence-transformers (torch), loaded
on first use from the packaged model folder, never from a hub (``embedder=sentence-transformers``).

Quiet: loading shows no progress bar (transformers 5 prints a "Loading weights" bar,
huggingface_hub its own) and embedding shows one only on a terminal and only for at least
``progress_min_texts`` texts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..embedding import _INFERENCE, URGENT_TEXTS, bundled_model_path, progress_bar
from ..errors import ModelError, shorten, show_path

log = logging.getLogger(__name__)


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
