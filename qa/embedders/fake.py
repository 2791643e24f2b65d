"""A deterministic embedder for tests and demos: no model, no download, instant.

A text's vector is its bag of hashed words (signed), normalized: texts sharing words get similar
vectors, so retrieval behaves plausibly. It passes the Embedder contract suite like the real ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np


class FakeEmbedder:
    """Bag of hashed words. Counts what it embeds (``calls``, ``texts``), for tests."""

    model_id = "fake/hash-embedder"
    dimension = 64
    max_tokens = 256

    def __init__(self) -> None:
        self.calls = 0
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.texts.extend(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                h = hashlib.sha256(w.encode()).digest()
                out[i, h[0] % self.dimension] += 1.0 if h[1] & 1 else -1.0
            n = np.linalg.norm(out[i])
            if n == 0:
                out[i, 0], n = 1.0, 1.0
            out[i] /= n
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]
