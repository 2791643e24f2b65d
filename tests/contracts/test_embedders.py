"""The Embedder contract (qa/protocols.py), run by every implementation: the fake one (fast),
the shipped onnx graph and the sentence-transformers reference (slow: real model)."""

from __future__ import annotations

import numpy as np
import pytest

from qa.embedders.fake import FakeEmbedder
from qa.protocols import Embedder

TEXTS = [
    "Severance is a thriller about office workers at Lumon Industries.",
    "Heavy rain flooded the coastal town on Tuesday.",
    "é 🚀 — mixed scripts: 東京, Ελλάδα, and a very " + "long " * 400 + "text.",
    "",
]


@pytest.fixture(
    params=[
        "fake",
        pytest.param("onnx", marks=pytest.mark.slow),
        pytest.param("sentence-transformers", marks=pytest.mark.slow),
    ]
)
def embedder(request) -> Embedder:
    if request.param == "fake":
        return FakeEmbedder()
    return request.getfixturevalue("real_embedder" if request.param == "onnx" else "st_embedder")


def test_implements_the_protocol(embedder):
    assert isinstance(embedder, Embedder)
    assert isinstance(embedder.model_id, str) and embedder.model_id
    assert embedder.dimension > 0 and embedder.max_tokens > 0


def test_vectors_are_normalized_float32_one_per_text(embedder):
    v = embedder.embed(TEXTS)
    assert v.shape == (len(TEXTS), embedder.dimension) and v.dtype == np.float32
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)


def test_no_texts_no_vectors(embedder):
    assert embedder.embed([]).shape == (0, embedder.dimension)


def test_a_text_alone_is_embedded_the_same_every_time(embedder):
    a, b = embedder.embed([TEXTS[0]]), embedder.embed([TEXTS[0]])
    np.testing.assert_array_equal(a, b)


def test_related_texts_are_nearer_than_unrelated_ones(embedder):
    q, near, far = embedder.embed(["office workers at Lumon", TEXTS[0], TEXTS[1]])
    assert q @ near > q @ far


def test_count_tokens_one_count_per_text(embedder):
    counts = embedder.count_tokens(TEXTS)
    assert len(counts) == len(TEXTS) and all(isinstance(c, int) and c >= 0 for c in counts)
    assert counts[3] == 0 and counts[2] > counts[0] > 0
