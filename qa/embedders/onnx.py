"""all-MiniLM-L6-v2 on onnxruntime: the default embedder, with no torch in the process.

The graph is exported by this project from the packaged sentence-transformers model
(``python -m qa export-embedder``) and shipped next to this file with a JSON card holding its
sha256 (checked when loaded) and the size and sha256 of the model file it came from. It takes
``inputs_embeds``, not token ids: the word-embedding lookup (11.7 M of MiniLM's 22.7 M numbers) is
done here from the packaged model's own matrix, so those numbers are neither shipped twice nor
quantized. Mean pooling and L2 normalization are inside the graph, as in the sentence-transformers
pipeline (Transformer -> Pooling(mean) -> Normalize).

Tokenization is the packaged ``tokenizer.json`` through ``tokenizers`` (no transformers import),
truncated to the model's ``max_seq_length`` as sentence-transformers does.

Threads: every session has one intra-op thread. A question runs alone on one core; a build runs
batches of like-length texts (at most 512 tokens padded), one session per core side by side (1.2-1.3x faster than one
session with two threads), in rounds scheduled on the process's one inference thread
(``qa.embedding._INFERENCE``), so a question asked meanwhile waits for one round at most.

Quantization: int8 weights, per channel, on every MatMul of the six layers (dynamic: activations
are quantized at run time). On 600 SQuAD chunks and sentences the cosine to the float vectors is
0.994 on average, 0.986 at the 1st percentile, 0.971 at worst (short sentences); what decided it
is the retrieval figure (docs/quality.md, "Speed"; README, "Speed and size").
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, shorten, show_path
from ..files import check_file, sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CARD_FILE = "embedder.json"
GRAPH_FILE = "embedder.int8.onnx"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_model_path() -> Path:
    from ..embedding import bundled_model_path

    return bundled_model_path()


# ---------------------------------------------------------------- export (development only)


def export(
    folder: Path = WEIGHTS_DIR, model_path: str | Path | None = None, keep_fp32: Path | None = None
) -> dict[str, Any]:
    """Export the packaged model as an ONNX graph taking ``inputs_embeds``, quantize its matrix
    multiplications to int8 (dynamic, per-channel: per-tensor gives cosine 0.886 to the float
    vectors), and write it with its card. Needs torch, transformers and onnx (the dev extra)."""
    import tempfile
    import warnings

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    model_path = Path(model_path or packaged_model_path())
    folder.mkdir(parents=True, exist_ok=True)
    bert = AutoModel.from_pretrained(str(model_path), local_files_only=True).float().eval()

    class Graph(torch.nn.Module):
        def __init__(self, bert) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, inputs_embeds, attention_mask):
            h = self.bert(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(attention_mask),
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            mean = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    graph = Graph(bert).eval()
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    embeds = bert.embeddings.word_embeddings(ids).detach()
    axes = {0: "texts", 1: "tokens"}
    card: dict[str, Any] = {
        "model_id": MODEL_ID,
        "source_file": "model.safetensors",
        "source_size": (model_path / "model.safetensors").stat().st_size,
        "source_sha256": sha256_file(model_path / "model.safetensors"),
        "command": "python -m qa export-embedder",
        "inputs": ["inputs_embeds", "attention_mask"],
        "output": "embedding (mean-pooled, L2-normalized)",
        "quantization": "onnxruntime quantize_dynamic: QInt8 weights, per-channel, MatMul only",
        "files": {},
    }
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        fp32 = Path(tmp) / "fp32.onnx"
        with torch.no_grad():
            torch.onnx.export(
                graph,
                (embeds, mask),
                str(fp32),
                input_names=["inputs_embeds", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={"inputs_embeds": axes, "attention_mask": axes, "embedding": {0: "texts"}},
                opset_version=17,
                dynamo=False,
            )
        if keep_fp32 is not None:
            Path(keep_fp32).write_bytes(fp32.read_bytes())
        int8 = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )
        dest = folder / GRAPH_FILE
        part = dest.with_suffix(".tmp")
        part.write_bytes(int8.read_bytes())
        part.chmod(0o644)
        part.replace(dest)
        card["files"]["int8"] = {"file": dest.name, "sha256": sha256_file(dest), "bytes": dest.stat().st_size}
    (folder / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return card


# ---------------------------------------------------------------- inference


_WORDS: dict[str, np.ndarray] = {}
_WORDS_LOCK = threading.Lock()


def word_embeddings(model_path: str | Path | None = None) -> np.ndarray:
    """The packaged model's word-embedding matrix (vocabulary x 384, float32), read once per
    process and shared by the embedder and the trained reader."""
    path = Path(model_path or packaged_model_path()) / "model.safetensors"
    key = str(path)
    with _WORDS_LOCK:
        if key not in _WORDS:
            from safetensors import safe_open

            try:
                with safe_open(key, framework="np") as f:
                    for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                        if name.removeprefix("bert.").removeprefix("encoder.") == "embeddings.word_embeddings.weight":
                            _WORDS[key] = np.ascontiguousarray(f.get_tensor(name), dtype=np.float32)
                            break
            except Exception as e:  # noqa: BLE001 - any read failure is one clear error
                raise ModelError(f"could not read the word embeddings from {show_path(path)}: {shorten(e, 100)}") from e
            if key not in _WORDS:
                raise ModelError(f"no word embeddings in {show_path(path)}")
        return _WORDS[key]


class OnnxEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime (int8, per-channel), loaded on first use."""

    dimension = 384

    def __init__(
        self,
        model_id: str = MODEL_ID,
        model_path: str | Path | None = None,
        batch_tokens: int = 512,
        workers: int = 0,
        progress_min_texts: int = 200,
        folder: Path = WEIGHTS_DIR,
    ) -> None:
        # Vectors differ a little from sentence-transformers' (cosine >= 0.98): an index records
        # which backend built it, and one built by the other is rebuilt, never mixed.
        self.model_id = f"{model_id}@onnx-int8"
        self._model_path = Path(model_path) if model_path else None
        self._folder = folder
        # Batches of like-length texts, at most ``batch_tokens`` tokens padded (two chunks, or a
        # dozen sentences): on 2,000 SQuAD chunks and sentences 5 % faster than batches of 4 texts,
        # 20 % faster than one text per run. The price: int8 activations are quantized per run,
        # over the whole batch, so a text's vector depends a little on its batch-mates (cosine
        # 0.97-0.99 to the text alone, the size of the int8 error itself; retrieval figures
        # unchanged). A question is always embedded alone.
        self.batch_tokens = batch_tokens
        self.workers = workers or max(1, min(os.cpu_count() or 1, 4))
        self.progress_min_texts = progress_min_texts
        self.max_tokens = 256
        self._state: tuple[Any, list[Any], np.ndarray] | None = None  # tokenizer, sessions, word embeddings
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -------------------------------------------------------- loading

    def _loaded(self) -> tuple[Any, list[Any], np.ndarray]:
        if self._state is None:
            with self._lock:
                if self._state is None:
                    self._state = self._load()
        return self._state

    def load(self) -> None:
        """Load the graph now (it is otherwise loaded by the first call that needs it)."""
        self._loaded()

    def _load(self) -> tuple[Any, list[Any], np.ndarray]:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ModelError(f"the onnx embedder needs onnxruntime and tokenizers ({e}): pip install -e .") from e
        model_path = self._model_path or packaged_model_path()
        graph, card = checked_graph(self._folder)
        source = model_path / card.get("source_file", "model.safetensors")
        try:
            size = source.stat().st_size
        except OSError:
            size = -1
        if size != card.get("source_size"):
            raise ModelError(
                f"embedder graph {show_path(graph)} was exported from another model file than {show_path(source)} "
                f"({card.get('source_size')} bytes; this one has {size}): run python -m qa export-embedder"
            )
        try:
            config = json.loads((model_path / "sentence_bert_config.json").read_text(encoding="utf-8"))
            self.max_tokens = int(config.get("max_seq_length", 256))
        except (OSError, ValueError, TypeError):
            self.max_tokens = 256
        try:
            tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 - any load failure is one clear error
            raise ModelError(f"could not load the tokenizer of {show_path(model_path)}: {shorten(e, 100)}") from e
        tokenizer.no_padding()
        tokenizer.no_truncation()
        words = word_embeddings(model_path)

        options = ort.SessionOptions()
        # One thread per session: a question runs on one core (two threads stall when the other
        # core is busy), a build's batches run on one session per core side by side (measured:
        # 1.2-1.3x faster than one session with two threads).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            sessions = [
                ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
                for _ in range(self.workers)
            ]
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"could not load the embedder graph {show_path(graph)}: {shorten(e, 100)}") from e
        return tokenizer, sessions, words

    # -------------------------------------------------------- embedding

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        tokenizer = self._loaded()[0]
        limit = self.max_tokens
        out = []
        for e in tokenizer.encode_batch(texts, add_special_tokens=True):
            ids = e.ids
            if len(ids) > limit:  # [CLS] ... [SEP] kept, as sentence-transformers truncates
                ids = ids[: limit - 1] + ids[-1:]
            out.append(ids)
        return out

    def _run(self, session: Any, token_ids: list[list[int]]) -> np.ndarray:
        words = self._loaded()[2]
        width = max(len(ids) for ids in token_ids)
        ids = np.zeros((len(token_ids), width), dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for i, row in enumerate(token_ids):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        (vectors,) = session.run(None, {"inputs_embeds": words[ids], "attention_mask": mask})
        return vectors

    def _side_by_side(self, batches: list[list[list[int]]]) -> list[np.ndarray]:
        """Each batch on its own session, all at once (onnxruntime lets go of the GIL)."""
        sessions = self._loaded()[1]
        if len(batches) == 1:
            return [self._run(sessions[0], batches[0])]
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(len(sessions) - 1, thread_name_prefix="qa-embed")
        futures = [self._pool.submit(self._run, s, b) for s, b in zip(sessions[1:], batches[1:], strict=False)]
        return [self._run(sessions[0], batches[0]), *(f.result() for f in futures)]

    def _plan(self, token_ids: list[list[int]]) -> list[list[int]]:
        """Batches of ``token_ids`` as indices, in the order ``embed`` runs them (see ``plan``)."""
        from ..embedding import URGENT_TEXTS

        if len(token_ids) <= URGENT_TEXTS:  # a question: one run, in the given order
            return [list(range(len(token_ids)))] if token_ids else []
        order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))  # like lengths together: less padding
        rows: list[list[int]] = []
        for i in order:  # longest first: a batch's first text sets its width
            if rows and (len(rows[-1]) + 1) * len(token_ids[rows[-1][0]]) <= self.batch_tokens:
                rows[-1].append(i)
            else:
                rows.append([i])
        return rows

    def plan(self, texts: Sequence[str]) -> list[list[int]]:
        """The batches ``embed(texts)`` runs, in its order: each a list of indices into ``texts``,
        every index in exactly one. A text's vector depends a little on its batch-mates (int8
        activations are quantized per run), so ``embed_batch`` over these batches is how another
        process (``qa.embedders.ray_embed``) reproduces ``embed``'s vectors exactly."""
        return self._plan(self._token_ids(list(texts))) if texts else []

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32: ``texts`` as one run of the graph, in this order; one
        batch of ``plan`` gives the same rows as ``embed`` gives those texts."""
        from ..embedding import _INFERENCE

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session = self._loaded()[1][0]
        token_ids = self._token_ids(list(texts))
        vectors = _INFERENCE.run(lambda: self._run(session, token_ids), urgent=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of an embedder giving the same vectors, for a copy in another
        process or on another machine: paths only where not the installed package's own."""
        kwargs: dict[str, Any] = {
            "model_id": self.model_id.removesuffix("@onnx-int8"),
            "batch_tokens": self.batch_tokens,
        }
        if self._model_path is not None:
            kwargs["model_path"] = self._model_path
        if Path(self._folder) != WEIGHTS_DIR:
            kwargs["folder"] = Path(self._folder)
        return kwargs

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        from ..embedding import _INFERENCE, URGENT_TEXTS, progress_bar

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        texts = list(texts)
        sessions = self._loaded()[1]
        token_ids = self._token_ids(texts)
        if len(texts) <= URGENT_TEXTS:
            vectors = _INFERENCE.run(lambda: self._run(sessions[0], token_ids), urgent=True)
            return np.ascontiguousarray(vectors, dtype=np.float32)
        rows = self._plan(token_ids)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        # One job per round of batches (one per session): a question asked meanwhile waits for one
        # round at most.
        with progress_bar(len(texts), progress and len(texts) >= self.progress_min_texts) as advance:
            for g in range(0, len(rows), len(sessions)):
                group = rows[g : g + len(sessions)]
                batches = [[token_ids[i] for i in r] for r in group]
                done = _INFERENCE.run(lambda batches=batches: self._side_by_side(batches), urgent=False)
                for r, vectors in zip(group, done, strict=True):
                    out[r] = vectors
                advance(sum(len(r) for r in group))
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        tokenizer = self._loaded()[0]
        return [len(e.ids) for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def checked_graph(folder: Path = WEIGHTS_DIR) -> tuple[Path, dict[str, Any]]:
    """(path of the int8 graph, its card), after checking the graph's sha256 against the card."""
    card_path = folder / CARD_FILE
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        entry = card["files"]["int8"]
        name, want = entry["file"], entry["sha256"]
    except FileNotFoundError:
        raise ModelError(
            f"embedder graph card {show_path(card_path)} is missing: reinstall the package, "
            "or run python -m qa export-embedder"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"embedder graph card {show_path(card_path)} is unreadable: {shorten(e, 80)}") from e
    graph = folder / str(name)
    check_file(graph, want, "embedder graph", "reinstall the package, or run python -m qa export-embedder")
    return graph, card
