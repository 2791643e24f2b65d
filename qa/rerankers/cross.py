"""The cross-encoder rerank: a three-layer network reading the question together with each
result's best sentence, to reorder the results around the top-k edge.

The learned linear rerank (``retrieval.rerank``) weighs cosines and lexical features, each of
question and text apart; what it misses most are results that share the question's words but
answer something else. This network reads them together: ``[CLS] question [SEP] title | the
sentence before, the best sentence [SEP]`` (the best sentence by the rerank's own sentence score)
through the trained reader's embeddings and first three layers, and a linear head on ``[CLS]``
gives one score. Results ranked ``cross_rerank_from`` to ``cross_rerank_to`` - 1 are then
reordered by their rerank score plus ``cross_rerank_weight`` times it; the others keep their
places and every ``Passage.score`` stays the rerank's (the confidence models weigh it).

Trained by ``python -m qa train-cross-rerank`` on SQuAD *train* articles (``rerankers/train.py``);
shipped as an int8 ONNX graph taking ``inputs_embeds`` (the word embeddings come from the packaged
model, as for the reader and the embedder) with a JSON model card holding its sha256.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, show_path
from ..files import check_file
from ..types import Passage

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CARD_FILE = "cross.json"
MAX_TOKENS = 96  # question, title and sentences together (the card's max_tokens wins)
MAX_QUESTION_TOKENS = 48  # a longer question is cut: the pair must leave room for the text
TITLE_CHARS = 80


def pair_text(title: str, snippet: str) -> str:
    """What the network reads of a result after the question."""
    return f"{title[:TITLE_CHARS]} | {snippet}"


def snippet(sentences: Sequence, settings) -> str:
    """The best quotable sentence (by ``sentence_score`` at ``settings``, which must carry the
    rerank's ``w_type``) with the sentence before it in the chunk, if any."""
    from ..reading.features import sentence_score

    if not sentences:
        return ""
    quotable = [i for i, f in enumerate(sentences) if f.quotable] or list(range(len(sentences)))
    best = max(quotable, key=lambda i: sentence_score(sentences[i], settings))
    before = sentences[best - 1].text + " " if best > 0 else ""
    return before + sentences[best].text


def reorder(
    passages: Sequence[Passage], scores: Sequence[float], weight: float, first: int, last: int
) -> list[Passage]:
    """``passages`` (best first) with those at ranks ``first`` to ``last`` - 1 reordered by
    ``p.score + weight * scores[i - first]`` (ties keep their order); the rest keep their places."""
    lo, hi = min(first, len(passages)), min(last, len(passages))
    if hi - lo != len(scores):
        raise ValueError(f"{hi - lo} passages to reorder but {len(scores)} scores")
    window = list(passages[lo:hi])
    mixed = [p.score + weight * float(s) for p, s in zip(window, scores, strict=True)]
    order = sorted(range(len(window)), key=lambda i: (-mixed[i], i))
    return [*passages[:lo], *(window[i] for i in order), *passages[hi:]]


def read_card(folder: Path = WEIGHTS_DIR) -> dict[str, Any]:
    path = folder / CARD_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelError(
            f"no cross-encoder in {show_path(folder)}: run python -m qa train-cross-rerank, "
            "or set cross_rerank_weight=0"
        ) from e
    except (OSError, ValueError) as e:
        raise ModelError(f"cross-encoder model card {show_path(path)} is unreadable: {e}") from e


class CrossScorer:
    """The int8 graph through onnxruntime on one thread, loaded on first use (sha256 checked)."""

    def __init__(
        self, folder: str | Path | None = None, model_path: str | Path | None = None, threads: int = 1
    ) -> None:
        self.folder = Path(folder) if folder else WEIGHTS_DIR
        self.model_path = model_path
        self.threads = max(1, threads)
        self._pool = None  # helper threads beside the inference thread
        self.card: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._session = None
        self._words = None
        self._tok = None
        self._question_tok = None

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            card = read_card(self.folder)
            path = self.folder / str(card.get("onnx_file", ""))
            check_file(path, card.get("onnx_sha256"), "cross-encoder graph", "reinstall the package or train it again")
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                from ..reading import model as rm

                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                words = rm.load_word_embeddings(self.model_path)
                tok_file = str(Path(self.model_path or rm.packaged_model_path()) / "tokenizer.json")
                tok = Tokenizer.from_file(tok_file)
                tok.no_padding()
                tok.enable_truncation(int(card.get("max_tokens", MAX_TOKENS)), strategy="only_second")
                question_tok = rm.FastTokenizer(self.model_path)
            except ModelError:
                raise
            except Exception as e:  # noqa: BLE001 - a broken install must be one clear error
                raise ModelError(f"could not load the cross-encoder from {show_path(self.folder)}: {e}") from e
            if self.threads > 1:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="qa-cross")
            self.card, self._words, self._tok, self._question_tok = card, words, tok, question_tok
            self._session = session

    def score(self, question: str, texts: Sequence[str]) -> np.ndarray:
        """One score per text (higher: more likely to hold the answer). Each pair runs alone (no
        padding: faster than one padded batch here), shared out over ``threads`` as the reader's
        windows are."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        self.load()
        from ..embedding import _INFERENCE

        return _INFERENCE.run(lambda: self._score(question, texts), urgent=True)

    def _score(self, question: str, texts: Sequence[str]) -> np.ndarray:
        from ..reading.model import plain_typography, question_prefix
        from ..reading.trained import run_shared

        q = question_prefix(self._question_tok, plain_typography(question), MAX_QUESTION_TOKENS)
        encs = self._tok.encode_batch([(q, plain_typography(t)) for t in texts], add_special_tokens=True)
        out = np.zeros(len(encs), dtype=np.float32)

        def run(share: list[int]) -> None:
            for i in share:
                ids = np.asarray([encs[i].ids], dtype=np.int64)
                types = np.asarray([encs[i].type_ids], dtype=np.int64)
                feed = {"inputs_embeds": self._words[ids], "attention_mask": np.ones_like(ids), "token_type_ids": types}
                out[i] = float(self._session.run(None, feed)[0].reshape(-1)[0])

        run_shared(run, [len(e.ids) for e in encs], self._pool, self.threads)
        return out


_SCORERS: dict[tuple[str, int], CrossScorer] = {}
_SCORERS_LOCK = threading.Lock()


def scorer(folder: str | Path | None = None, threads: int = 1) -> CrossScorer:
    """The process's one scorer for a weights folder (the package's when empty) and thread count."""
    key = (str(Path(folder).resolve()) if folder else str(WEIGHTS_DIR), threads)
    with _SCORERS_LOCK:
        if key not in _SCORERS:
            _SCORERS[key] = CrossScorer(key[0], threads=threads)
        return _SCORERS[key]
