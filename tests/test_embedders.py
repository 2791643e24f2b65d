"""The onnx embedder (the default): shipped graph checked, tokenization as sentence-transformers
does it, batches in any order, and (slow) vectors that agree with the sentence-transformers
reference."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from qa.embedders import onnx as onnx_mod
from qa.embedders.onnx import OnnxEmbedder
from qa.errors import InputError, ModelError
from qa.settings import Settings

TEXTS = [
    "Who plays Mark in Severance?",
    "Adam Scott plays Mark Scout, a Lumon employee whose memories are split.",
    "The series was created by Dan Erickson and directed in part by Ben Stiller.",
    "Season 2 premiered on Apple TV+ in January 2025.",
    "Paris is the capital of France.",
    "A short one.",
    "Électricité de France, São Paulo, naïve café: accents and ünïcödé.",
    "Numbers like 3.14, 1,000,000 and 2024-01-31 are tokens too.",
    "x",
    "John Turturro plays Irving, who works in Macrodata Refinement.",
    "Britt Lower plays Helly R., the newest member of the team.",
]


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    e = OnnxEmbedder(workers=2)
    e.load()
    return e


def test_vectors_are_unit_length_float32(embedder):
    v = embedder.embed(TEXTS)
    assert v.shape == (len(TEXTS), 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert embedder.embed([]).shape == (0, 384)


def test_batches_and_single_calls_agree(embedder):
    """A build embeds texts in batches sorted by length over several sessions, rows put back in
    order; each vector is the one the text gets alone up to the int8 noise (activations are
    quantized per batch), and the same texts in the same order give the same vectors."""
    together = embedder.embed(TEXTS * 3)  # more than URGENT_TEXTS: the build path
    alone = np.stack([embedder.embed([t])[0] for t in TEXTS])
    for copy in range(3):
        cos = (together[copy * len(TEXTS) : (copy + 1) * len(TEXTS)] * alone).sum(1)
        assert cos.min() > 0.96, cos
        assert np.median(cos) > 0.985, cos
    np.testing.assert_array_equal(together, embedder.embed(TEXTS * 3))
    one_by_one = OnnxEmbedder(batch_tokens=1, workers=2)
    assert ((one_by_one.embed(TEXTS * 2)[: len(TEXTS)] * alone).sum(1) > 0.99999).all()


def test_related_texts_are_closer_than_unrelated(embedder):
    q, right, wrong = embedder.embed([TEXTS[0], TEXTS[1], TEXTS[4]])
    assert q @ right > q @ wrong + 0.2


def test_count_tokens_leaves_special_tokens_out(embedder):
    assert embedder.count_tokens(["x"]) == [1]
    assert embedder.count_tokens([]) == []
    n = embedder.count_tokens(["Severance season 2"])[0]
    assert 3 <= n <= 6


def test_long_text_is_truncated_like_sentence_transformers(embedder):
    """Past max_seq_length (256) the rest of a text is not read: [CLS] + 254 tokens + [SEP]."""
    head = " ".join(f"word{i}" for i in range(400))
    a = embedder.embed([head + " tail about cats"])[0]
    b = embedder.embed([head + " tail about rockets and the moon"])[0]
    assert embedder.count_tokens([head])[0] > 256
    assert float(a @ b) > 0.9999


def test_hostile_long_word_is_one_bounded_call(embedder):
    v = embedder.embed(["a" * 300_000, "ok"])
    assert np.isfinite(v).all()


def _copy_weights(tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(onnx_mod.WEIGHTS_DIR, folder)
    return folder


def test_altered_graph_is_refused_naming_the_file(tmp_path):
    folder = _copy_weights(tmp_path)
    graph = folder / onnx_mod.GRAPH_FILE
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"embedder\.int8\.onnx.*does not match the model card"):
        OnnxEmbedder(folder=folder).embed(["x"])


def test_missing_card_and_graph_are_clear_errors(tmp_path):
    folder = _copy_weights(tmp_path)
    (folder / onnx_mod.GRAPH_FILE).unlink()
    with pytest.raises(ModelError, match=r"embedder\.int8\.onnx.*missing"):
        OnnxEmbedder(folder=folder).embed(["x"])
    (folder / onnx_mod.CARD_FILE).unlink()
    with pytest.raises(ModelError, match=r"embedder\.json.*missing.*export-embedder"):
        OnnxEmbedder(folder=folder).embed(["x"])
    (folder / onnx_mod.CARD_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match=r"unreadable"):
        OnnxEmbedder(folder=folder).embed(["x"])


def test_graph_of_another_model_file_is_refused(tmp_path):
    folder = _copy_weights(tmp_path)
    card = json.loads((folder / onnx_mod.CARD_FILE).read_text(encoding="utf-8"))
    card["source_size"] += 1
    (folder / onnx_mod.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelError, match=r"exported from another model file"):
        OnnxEmbedder(folder=folder).embed(["x"])


def test_onnx_and_st_indexes_are_never_mixed():
    assert OnnxEmbedder().model_id == "sentence-transformers/all-MiniLM-L6-v2@onnx-int8"


@pytest.mark.parametrize("value", ["torch", "", "ONNX"])
def test_bad_embedder_setting_is_an_input_error(value):
    with pytest.raises(InputError, match=r"setting embedder .*'onnx', 'sentence-transformers'"):
        Settings(embedder=value)


def test_onnx_embedder_only_for_the_shipped_model():
    with pytest.raises(InputError, match=r"embedder.*model_id"):
        Settings(model_id="some/other-model")
    Settings(model_id="some/other-model", embedder="sentence-transformers")


def test_the_onnx_path_needs_no_torch(tmp_path):
    """Embedding with the default backend imports neither torch nor transformers."""
    import subprocess

    code = (
        "import sys; from qa.embedders.onnx import OnnxEmbedder; OnnxEmbedder().embed(['hello world'] * 20);"
        "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_onnx_vectors_agree_with_sentence_transformers(real_embedder, st_embedder, seed_texts):
    """The reference check: cosine to the float sentence-transformers vectors, on every sentence
    and paragraph of the seed articles: 0.99 on average (short sentences lose the most)."""
    a = real_embedder.embed(seed_texts)
    b = st_embedder.embed(seed_texts)
    cos = (a * b).sum(1)
    assert cos.mean() >= 0.99, cos.mean()
    assert np.percentile(cos, 5) >= 0.985, np.percentile(cos, 5)
    assert cos.min() >= 0.96, (cos.min(), seed_texts[int(cos.argmin())][:80])
