"""The trained span reader at answer time: it reads the question with each retrieved passage and
points at the short answer; the answer quotes the sentence(s) around it.

``SpanReader.spans`` turns (question, passages) into scored span guesses; ``answer_from_spans``
builds the Answer (quotes with citations, ``Answer.span``) and its confidence, a logistic model
over the reader's scores and retrieval signals (``Settings.reader_abstain_model``, fitted on
held-out SQuAD *train* articles by ``python -m qa calibrate-reader``).

The network runs on the process's one inference thread (``embedding._INFERENCE``), like the
embedder, so answering never oversubscribes the cores.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import lexical
from ..errors import ModelError
from ..settings import Settings
from ..types import Answer, AnswerSpan, Passage, Span
from . import model as rm
from .features import asks_who, citation, quotable

log = logging.getLogger(__name__)

_PRONOUN = frozenset("he she they it his her their its him them this these those".split())
_WORD = re.compile(r"\S+")
# capitalised words that name no one: months and days, with their abbreviations
_CALENDAR = frozenset(
    "january february march april may june july august september october november december jan feb mar apr "
    "jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday".split()
)
ABSTAIN_MESSAGE = (
    "The articles do not answer this question. The closest passages are listed, but they are not an answer."
)


@dataclass(frozen=True)
class SpanGuess:
    """One place the reader points at: file offsets of the short answer in passage ``rank``."""

    rank: int  # index of the passage in the list read
    start: int
    end: int
    text: str
    score: float  # start + end logit
    no_answer: float  # the no-answer score ([CLS] start + end) of the window it came from


@dataclass(frozen=True)
class Reading:
    """What the reader made of the passages: span guesses best first, and per passage the lowest
    no-answer score over its windows. Once the rank model has ordered them, ``choice`` holds per
    guess its sentence's rank score (the best of that sentence's guesses'), else it is None."""

    spans: list[SpanGuess]
    no_answer: list[float]
    choice: list[float] | None = None


def share_out(lengths: Sequence[int], workers: int) -> list[list[int]]:
    """Window indices split into ``workers`` lists of about equal tokens (longest first, each to
    the least loaded list), so the threads reading one question finish together."""
    shares: list[list[int]] = [[] for _ in range(max(1, workers))]
    load = [0] * len(shares)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        w = load.index(min(load))
        shares[w].append(i)
        load[w] += lengths[i]
    return [x for x in shares if x]


def run_shared(run, lengths: Sequence[int], pool, threads: int) -> None:
    """``run(indices)`` over ``share_out(lengths, threads)``: the first share on this thread, the
    others on ``pool``'s helpers (none: all here), returning when every share is done."""
    shares = share_out(lengths, threads if pool else 1)
    helpers = [pool.submit(run, share) for share in shares[1:]] if pool else []
    if shares:
        run(shares[0])
    for h in helpers:
        h.result()


class SpanReader:
    """The trained network, loaded on first use from the package's weights (or ``folder``).
    ``backend``: 'onnx' (the int8 graph through onnxruntime), 'torch' (the float weights), or
    'auto' (onnx when onnxruntime and the graph are there, else torch).

    With onnx, each window runs on its own (no padding), and ``threads`` > 1 reads a question's
    windows on that many threads at once: the inference thread and helpers, each running one
    window at a time on a single-threaded onnxruntime call. Unlike one call with several intra-op
    threads, no thread waits at a barrier for the others, so a busy machine slows a question
    down in proportion instead of stalling it."""

    def __init__(
        self,
        folder: str | Path | None = None,
        model_path: str | Path | None = None,
        backend: str = "auto",
        window_tokens: int = 0,
        threads: int = 1,
    ) -> None:
        self.folder = Path(folder) if folder else rm.WEIGHTS_DIR
        self.model_path = model_path
        self.backend = backend
        self.window_tokens = window_tokens  # 0: the model card's window length
        self.threads = threads
        self._pool = None  # helper threads beside the inference thread (onnx, threads > 1)
        self._lock = threading.Lock()
        self._run = None
        self._tokenizer = None
        self.card: dict = {}
        self.config = rm.WindowConfig()
        self.loaded_backend = ""

    def load(self) -> None:
        with self._lock:
            if self._run is not None:
                return
            try:
                from ..embedding import _INFERENCE  # noqa: F401 - its thread and torch settings apply

                run, card, backend = self._load_backend()
                tokenizer = rm.FastTokenizer(self.model_path)
            except ModelError:
                raise
            except Exception as e:  # noqa: BLE001 - a broken install must be one clear error
                raise ModelError(f"could not load the trained reader from {self.folder}: {e}") from e
            window = card.get("window", {})
            self.config = rm.WindowConfig(
                max_length=self.window_tokens or int(window.get("max_length", rm.WindowConfig.max_length)),
                stride=int(window.get("stride", rm.WindowConfig.stride)),
                max_answer_tokens=int(window.get("max_answer_tokens", rm.WindowConfig.max_answer_tokens)),
            )
            self.card, self._tokenizer, self.loaded_backend, self._run = card, tokenizer, backend, run

    def _load_backend(self):
        """(run(ids, mask, types) -> (start, end) numpy arrays, card, backend name)."""
        if self.backend in ("auto", "onnx"):
            loaded = rm.load_onnx(self.folder)
            if loaded is not None:
                session, card = loaded
                embeddings = rm.load_word_embeddings(self.model_path)

                def run_onnx(ids, mask, types):
                    start, end = session.run(
                        None, {"inputs_embeds": embeddings[ids], "attention_mask": mask, "token_type_ids": types}
                    )
                    return start, end

                if self.threads > 1:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="qa-reader")
                return run_onnx, card, "onnx"
            if self.backend == "onnx":
                raise ModelError("reader_backend 'onnx' needs onnxruntime and the reader's ONNX graph")
        import torch

        network, card = rm.load_network(self.folder, self.model_path)

        def run_torch(ids, mask, types):
            with torch.inference_mode():
                start, end = network(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
            return start.numpy(), end.numpy()

        return run_torch, card, "torch"

    def read(self, question: str, passages: Sequence[Passage], top: int = 5) -> Reading:
        """Span guesses over all passages' windows, best first (at most ``top``)."""
        if not passages:
            return Reading([], [])
        self.load()
        from ..embedding import _INFERENCE

        return _INFERENCE.run(lambda: self._read(question, passages, top), urgent=True)

    def _read(self, question: str, passages: Sequence[Passage], top: int) -> Reading:
        tok, config = self._tokenizer, self.config
        enc = rm.encode_windows(tok, [question] * len(passages), [p.text for p in passages], config)
        n = len(enc["input_ids"])
        windows = [self._window(enc, i) for i in range(n)]
        if self.loaded_backend == "onnx":
            start, end = self._run_each(windows)
        else:
            start, end = self._run_padded(windows)
        pmask = [w[3] for w in windows]
        guesses: list[SpanGuess] = []
        no_answer = [math.inf] * len(passages)
        for i in range(n):
            rank = enc["overflow_to_sample_mapping"][i]
            p = passages[rank]
            null = float(start[i][0] + end[i][0])
            no_answer[rank] = min(no_answer[rank], null)
            offsets = enc["offset_mapping"][i]
            for score, s, e in rm.best_spans_np(start[i], end[i], pmask[i], config.max_answer_tokens, top=top):
                cs, ce = offsets[s][0], offsets[e][1]
                text = p.text[cs:ce]
                stripped = text.strip()
                if not stripped:
                    continue
                cs += len(text) - len(text.lstrip())
                ce = cs + len(stripped)
                guesses.append(SpanGuess(rank, p.start + cs, p.start + ce, stripped, score, null))
        guesses.sort(key=lambda g: -g.score)
        seen, unique = set(), []
        for g in guesses:
            key = (passages[g.rank].source, g.start, g.end)
            if key not in seen:
                seen.add(key)
                unique.append(g)
        return Reading(unique[:top], [x if math.isfinite(x) else 0.0 for x in no_answer])

    def _window(self, enc, i: int):
        """(ids, mask, types, passage mask) of window ``i``, each of shape (1, its length)."""
        import numpy as np

        ids = np.asarray([enc["input_ids"][i]], dtype=np.int64)
        types = np.asarray([enc["token_type_ids"][i]], dtype=np.int64)
        pmask = np.asarray([s == 1 for s in enc.sequence_ids(i)], dtype=bool)
        return ids, np.ones_like(ids), types, pmask

    def _run_each(self, windows) -> tuple[list, list]:
        """Every window on its own (no padding), shared out over the reader's threads."""
        start: list = [None] * len(windows)
        end: list = [None] * len(windows)

        def run(share: list[int]) -> None:
            for i in share:
                ids, mask, types, _ = windows[i]
                s, e = self._run(ids, mask, types)
                start[i], end[i] = s[0], e[0]

        run_shared(run, [w[0].shape[1] for w in windows], self._pool, self.threads)
        return start, end

    def _run_padded(self, windows) -> tuple[list, list]:
        """All windows in one padded batch (the torch path)."""
        import numpy as np

        width = max(w[0].shape[1] for w in windows)
        ids = np.full((len(windows), width), self._tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for i, (w_ids, _, w_types, _) in enumerate(windows):
            m = w_ids.shape[1]
            ids[i, :m], types[i, :m], mask[i, :m] = w_ids[0], w_types[0], 1
        start, end = self._run(ids, mask, types)
        return [start[i, : w[0].shape[1]] for i, w in enumerate(windows)], [
            end[i, : w[0].shape[1]] for i, w in enumerate(windows)
        ]


# ---------------------------------------------------------------- the answer around the span


def quote_around(
    passage: Passage, sentences: Sequence[Span], guess: SpanGuess, max_chars: int, who: bool = False
) -> Span | None:
    """The quote for a span: the sentence(s) holding it, with the sentence before when the span's
    sentence names its subject only by a pronoun or the span is an age given after a description
    ("the actor, 66,"), or (``who``: the question asks for someone,
    ``features.asks_who``) the span names them by the surname alone while the sentence before has
    the full name; cut to ``max_chars`` around the span. None when
    the quote would hold a run longer than ``lexical.MAX_WORD_CHARS`` (never quoted)."""
    inside = [s for s in sentences if s.start < guess.end and s.end > guess.start]
    if not inside:
        quote = Span(guess.start, guess.end)
    else:
        quote = Span(min(inside[0].start, guess.start), max(inside[-1].end, guess.end))
        first = sentences.index(inside[0])
        before = sentences[first - 1] if first > 0 else None
        if (
            before is not None
            and before.start >= passage.start
            and quote.end - before.start <= max_chars
            and (
                _pronoun_subject(passage, quote, guess)
                or _described_subject(passage, quote, guess)
                or (who and _surname_only(passage, quote, guess, before))
            )
        ):
            quote = Span(before.start, quote.end)
    quote = _fit_around(passage, quote, guess, max_chars)
    text = passage.text[quote.start - passage.start : quote.end - passage.start]
    if any(len(w) > lexical.MAX_WORD_CHARS for w in text.split()):
        return None
    return quote


def _pronoun_subject(passage: Passage, quote: Span, guess: SpanGuess) -> bool:
    """The quoted sentence, before the span, refers to someone by a pronoun and names nobody."""
    before = passage.text[quote.start - passage.start : guess.start - passage.start]
    words = before.split()
    if not words:
        words = passage.text[guess.end - passage.start : quote.end - passage.start].split()[:6]
    lowered = [w.strip(",.;:!?\"'“”‘’()").lower() for w in words[:8]]
    names = [w for w in words[1:] if w[:1].isupper() and w.strip(".,;:").lower() not in _CALENDAR]
    return any(w in _PRONOUN for w in lowered) and not names


# "the actor, " / "The Parks and Recreation alum, ": a description, not a name, just before the span
_DESCRIBED = re.compile(r"\b(?:the|The)\s+(?:[\w.&'’-]+\s+){0,4}[a-z][\w'’-]*,\s*$")
_AGE = re.compile(r"\d{1,3}")


def _described_subject(passage: Passage, quote: Span, guess: SpanGuess) -> bool:
    """The span is an age in apposition to a description of someone ("the actor, 66, said"; "The
    Parks and Recreation alum, 50,"): the sentence names them elsewhere."""
    if not _AGE.fullmatch(guess.text.strip()):
        return False
    before = passage.text[quote.start - passage.start : guess.start - passage.start]
    return bool(_DESCRIBED.search(before))


_NAME = r"[A-Z][\w'’.-]*"
_EDGE = ",.;:!?\"'“”‘’()[]"


def _bare(word: str) -> str:
    """A word without the punctuation around it or a possessive ending."""
    word = word.strip(_EDGE)
    for end in ("'s", "’s"):
        if word.endswith(end):
            word = word[: -len(end)]
    return word


def _surname_only(passage: Passage, quote: Span, guess: SpanGuess, before: Span) -> bool:
    """The span names someone by a surname alone (news style after the first mention: "Glover,
    40, and Erskine, 36"): a capitalised word of the span with no name word next to it, no "the"
    in front and not in capitals (those are titles, bodies and acronyms), which the sentence before
    has after a first name ("Donald Glover"), while the quoted sentence never has that full name."""
    at = passage.start
    quoted = passage.text[quote.start - at : quote.end - at]
    before_text = passage.text[before.start - at : before.end - at]
    words = [(quote.start + m.start(), _bare(m.group())) for m in _WORD.finditer(quoted)]
    for i, (start, name) in enumerate(words):
        if not guess.start <= start < guess.end:
            continue
        if len(name) < 2 or not name[0].isupper() or name.isupper() or name.lower() in _CALENDAR:
            continue
        previous = words[i - 1][1] if i > 0 else ""
        following = words[i + 1][1] if i + 1 < len(words) else ""
        if previous.lower() == "the" or (previous[:1].isupper() and previous.lower() not in lexical.STOPWORDS):
            continue
        if following[:1].isupper():
            continue
        full = re.compile(rf"\b({_NAME})\s+{re.escape(name)}\b")
        named = [m for m in full.finditer(before_text) if m.group(1).lower() not in lexical.STOPWORDS]
        if named and not any(m.group(0) in quoted for m in named):
            return True
    return False


def _fit_around(passage: Passage, quote: Span, guess: SpanGuess, max_chars: int) -> Span:
    """``quote``, or the longest run of its whole words that holds the span and fits ``max_chars``
    (grown from the span outwards, a word at a time on each side)."""
    if quote.end - quote.start <= max_chars:
        return quote
    text = passage.text[quote.start - passage.start : quote.end - passage.start]
    words = [(quote.start + m.start(), quote.start + m.end()) for m in _WORD.finditer(text)]
    inside = [i for i, (s, e) in enumerate(words) if s < guess.end and e > guess.start]
    if not inside:
        return Span(guess.start, guess.end)
    i, j = inside[0], inside[-1]
    if words[j][1] - words[i][0] > max_chars:
        return Span(guess.start, guess.end)
    grew = True
    while grew:
        grew = False
        if j + 1 < len(words) and words[j + 1][1] - words[i][0] <= max_chars:
            j, grew = j + 1, True
        if i > 0 and words[j][1] - words[i - 1][0] <= max_chars:
            i, grew = i - 1, True
    return Span(words[i][0], words[j][1])


def abstain_features(
    reading: Reading,
    guess: SpanGuess,
    passages: Sequence[Passage],
    known: float,
    cap_unknown: float,
    follow_up: bool = False,
) -> list[float]:
    """What the reader's confidence model weighs, in the order of ``Settings.reader_abstain_model``.
    ``follow_up``: the question was read with a rewrite from the history (its pronoun form alone
    knows fewer words and retrieves with less certainty than the same question asked in full)."""
    top_dense = max((p.dense_score or 0.0) for p in passages)
    top_bm25 = max((p.bm25_score or 0.0) for p in passages)
    min_null = min(reading.no_answer) if reading.no_answer else 0.0
    runner_up = next((g.score for g in reading.spans[1:] if g.text != guess.text), guess.score - 10.0)
    return [
        guess.score,
        guess.score - guess.no_answer,
        guess.score - min_null,
        min(10.0, guess.score - runner_up),
        top_dense,
        math.log1p(top_bm25),
        known,
        cap_unknown,
        guess.rank / max(1, len(passages)),
        max(p.score for p in passages),
        1.0 if follow_up else 0.0,
    ]


ABSTAIN_FEATURES = 11  # must match Settings.reader_abstain_model (see settings.READER_ABSTAIN_FEATURES)


# ---------------------------------------------------------------- choosing among the guesses

GUESSES = 20  # span guesses (best first, over all passages) the rank model chooses among; measured on
# 4,000 held-out training questions: 10 -> 20 raised its accuracy 0.8845 -> 0.8874, 30 added nothing
RANK_FEATURES = 13  # must match Settings.reader_rank_model (see settings.READER_RANK_FEATURES)


def sentence_of(guess: SpanGuess, features: Sequence) -> object | None:
    """The ``SentenceFeatures`` (of its passage's, ``features``) of the sentence the span starts in."""
    return next((f for f in features if f.span.start <= guess.start < f.span.end), None)


def rank_features(reading: Reading, passages: Sequence[Passage], features: Sequence[Sequence]) -> list[list[float]]:
    """What the choice among the span guesses weighs, per guess of ``reading.spans``, in the order
    of ``Settings.reader_rank_model``: the network's span score minus the best guess's, span minus
    its window's no-answer score, the passage's retrieval score minus the best passage's, the
    passage's rank (share of k), its cosine with the question; then the sentence picker's view of
    the sentence holding the span (``features[rank]``: the passage's ``SentenceFeatures``): its
    cosine, that minus the passage's best sentence cosine, its question-term coverage, whether it
    holds the kind of thing asked for, the chunk's coverage, the focus term; and the log share of
    the reader's weight (softmax over the guesses) on guesses of the same text (case-insensitive),
    and the span's length in words / 10."""
    guesses = reading.spans
    if not guesses:
        return []
    best_score = max(g.score for g in guesses)
    best_passage = max(p.score for p in passages)
    weight: dict[str, float] = {}
    for g in guesses:
        weight[g.text.lower()] = weight.get(g.text.lower(), 0.0) + math.exp(g.score - best_score)
    total = sum(weight.values())
    out = []
    for g in guesses:
        p = passages[g.rank]
        f = sentence_of(g, features[g.rank])
        best_sentence = max((x.dense for x in features[g.rank]), default=0.0)
        out.append(
            [
                g.score - best_score,
                g.score - g.no_answer,
                p.score - best_passage,
                g.rank / max(1, len(passages)),
                p.dense_score or 0.0,
                f.dense if f else 0.0,
                (f.dense - best_sentence) if f else 0.0,
                f.coverage if f else 0.0,
                f.typed if f else 0.0,
                f.context if f else 0.0,
                f.focus if f else 0.0,
                math.log(weight[g.text.lower()] / total),
                len(g.text.split()) / 10,
            ]
        )
    return out


def rank_order(reading: Reading, passages: Sequence[Passage], features: Sequence[Sequence], model: str) -> Reading:
    """The guesses in the order the rank model (``Settings.reader_rank_model``) chooses them:
    sentences by their best guess's rank score; within a sentence, by the network's span score
    (the model picks the sentence well, the network the exact words inside it)."""
    if not reading.spans:
        return reading
    coef = [float(x) for x in model.split(",")]
    scores = [
        coef[0] + sum(c * x for c, x in zip(coef[1:], row, strict=True))
        for row in rank_features(reading, passages, features)
    ]
    groups: dict[tuple, list[tuple[float, SpanGuess]]] = {}
    for g, z in zip(reading.spans, scores, strict=True):
        f = sentence_of(g, features[g.rank])
        key = (g.rank, f.span.start) if f is not None else (g.rank, g.start, g.end)
        groups.setdefault(key, []).append((z, g))
    ordered = sorted(groups.values(), key=lambda grp: -max(z for z, _ in grp))
    spans = [g for grp in ordered for _, g in sorted(grp, key=lambda zg: -zg[1].score)]
    choice = [max(z for z, _ in grp) for grp in ordered for _ in grp]
    return Reading(spans, reading.no_answer, choice)


def confidence(features: Sequence[float], settings: Settings) -> float:
    coef = [float(x) for x in settings.reader_abstain_model.split(",")]
    z = coef[0] + sum(c * f for c, f in zip(coef[1:], features, strict=True))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def answer_from_reading(
    reading: Reading,
    passages: Sequence[Passage],
    sentences_of,
    query: str,
    settings: Settings,
    known: float,
    cap_unknown: float,
    documents: dict | None = None,
    follow_up: bool = False,
) -> tuple[Answer, list[float]]:
    """The Answer built around the best quotable span guess, and the confidence features used.
    ``sentences_of(passage)`` gives the passage's sentence spans (file offsets, in order);
    ``follow_up``: the query is the question's rewrite with its history."""
    passages = list(passages)
    quotes = _quotes(reading, passages, sentences_of, settings, asks_who(query))
    chosen = next(quotes, None)
    if chosen is None:
        feats: list[float] = []
        conf = 0.0
    else:
        i, guess, p, quote = chosen
        feats = abstain_features(reading, guess, passages, known, cap_unknown, follow_up)
        conf = confidence(feats, settings)
        if conf >= settings.reader_abstain_threshold:
            quoted = [(p, quote)]
            runner_up = next(quotes, None)
            if runner_up is not None and _close(reading, i, runner_up[0], settings.reader_second_margin):
                quoted = _with_second(p, quote, runner_up[2], runner_up[3], settings.answer_max_chars)
            citations, parts = [], []
            for n, (q_passage, q_span) in enumerate(quoted, 1):
                text = q_passage.text[q_span.start - q_passage.start : q_span.end - q_passage.start]
                citations.append(citation(n, q_passage, q_span.start, q_span.end, text, documents))
                parts.append(f"{text} [{n}]")
            return (
                Answer(
                    text=" ".join(parts),
                    citations=citations,
                    confidence=round(conf, 4),
                    abstained=False,
                    passages=passages,
                    query=query,
                    span=short_answer(guess, p.source),
                    reader="trained",
                ),
                feats,
            )
    return (
        Answer(
            text="",
            citations=[],
            confidence=round(conf, 4),
            abstained=True,
            passages=passages,
            query=query,
            message=ABSTAIN_MESSAGE,
            reader="trained",
        ),
        feats,
    )


_SPAN_EDGE = " \t\n,;:-\u2013\u2014"  # what a short answer never begins or ends with ("Scott --")


def short_answer(guess: SpanGuess, source: str) -> AnswerSpan:
    """The guess as ``Answer.span``, without dashes, commas, colons or semicolons at its edges
    (the network's span may take in "--" after a name); the guess itself if nothing would be left."""
    text = guess.text.strip(_SPAN_EDGE)
    if not text:
        return AnswerSpan(guess.text, source, guess.start, guess.end)
    start = guess.start + len(guess.text) - len(guess.text.lstrip(_SPAN_EDGE))
    return AnswerSpan(text, source, start, start + len(text))


def _quotes(reading: Reading, passages: Sequence[Passage], sentences_of, settings: Settings, who: bool = False):
    """(index of the guess, guess, passage, quote) for the guesses in order, one per quote: those
    whose quote is not quotable, or repeats an earlier one's, are skipped."""
    seen: set[tuple[str, int, int]] = set()
    for i, guess in enumerate(reading.spans):
        p = passages[guess.rank]
        quote = quote_around(p, sentences_of(p), guess, settings.answer_max_chars, who)
        if quote is None or (p.source, quote.start, quote.end) in seen:
            continue
        seen.add((p.source, quote.start, quote.end))
        if quotable(p.text[quote.start - p.start : quote.end - p.start], settings.min_answer_words):
            yield i, guess, p, quote


def _close(reading: Reading, first: int, second: int, margin: float) -> bool:
    """The rank model scores guess ``second``'s sentence within ``margin`` of guess ``first``'s."""
    if margin <= 0 or reading.choice is None:
        return False
    return reading.choice[first] - reading.choice[second] <= margin


def _with_second(p: Passage, quote: Span, p2: Passage, quote2: Span, max_chars: int) -> list[tuple[Passage, Span]]:
    """The chosen quote and the runner-up's, best first. Quotes of one article that overlap, or
    that only whitespace parts, become one quote (cited from the passage that holds all of it). The
    chosen quote alone when the two do not fit ``max_chars`` (or cannot be joined)."""
    if p2.source == p.source:
        lo, hi = (quote, quote2) if quote.start <= quote2.start else (quote2, quote)
        file_gap = (lo.end, hi.start)
        holder = next((x for x in (p, p2) if x.start <= file_gap[0] and file_gap[1] <= x.end), None)
        joins = hi.start <= lo.end or (
            holder is not None and not holder.text[lo.end - holder.start : hi.start - holder.start].strip()
        )
        if joins:
            merged = Span(lo.start, max(lo.end, hi.end))
            inside = next((x for x in (p, p2) if x.start <= merged.start and merged.end <= x.end), None)
            if inside is not None and merged.end - merged.start <= max_chars:
                return [(inside, merged)]
            return [(p, quote)]
    if (quote.end - quote.start) + (quote2.end - quote2.start) <= max_chars:
        return [(p, quote), (p2, quote2)]
    return [(p, quote)]


# ---------------------------------------------------------------- the Reader


class TrainedReader:
    """The ``Reader`` that points at a span with the trained network (``Settings.reader = 'trained'``)."""

    name = "trained"

    def __init__(self, settings: Settings, spans: SpanReader | None = None) -> None:
        self.settings = settings
        self.spans = spans or SpanReader(
            settings.reader_weights or None,
            settings.model_path or None,
            settings.reader_backend,
            settings.reader_window_tokens,
            settings.reader_threads,
        )

    def warm_up(self) -> None:
        self.spans.load()

    def read(self, question: str, hits, index, query: str) -> Answer:
        return self.read_with_features(question, hits, index, query)[0]

    def read_with_features(self, question: str, hits, index, query: str) -> tuple[Answer, list[float]]:
        """The answer and the confidence features it was judged on (for calibration)."""
        # a follow-up is read with its rewrite ("How old is he? (Who plays Irving?; John Turturro)"):
        # the network sees who "he" is
        reading = self.spans.read(query or question, list(hits.passages), top=GUESSES)
        return self.answer_reading(question, reading, hits, index, query)

    def answer_reading(self, question: str, reading: Reading, hits, index, query: str) -> tuple[Answer, list[float]]:
        """The answer built from the network's guesses (``read_with_features`` without the network)."""
        from .features import question_signals

        passages = list(hits.passages)
        reading = self.order(reading, hits, index, query or question)
        known, cap_unknown = question_signals(index, question)
        return answer_from_reading(
            reading,
            passages,
            lambda p: _sentences(index, p),
            query,
            self.settings,
            known,
            cap_unknown,
            index.documents,
            follow_up=bool(query) and query != question,
        )

    def order(self, reading: Reading, hits, index, question: str) -> Reading:
        """The guesses in the order they are tried: by ``reader_rank_model`` when set, else by span
        score plus ``reader_w_passage`` × (passage score - the best one's)."""
        passages = list(hits.passages)
        if not passages or not reading.spans:
            return reading
        if self.settings.reader_rank_model:
            features = passage_sentence_features(hits, index, question, self.settings)
            return rank_order(reading, passages, features, self.settings.reader_rank_model)
        w = self.settings.reader_w_passage
        if not w:
            return reading
        best = passages[0].score
        order = sorted(reading.spans, key=lambda g: -(g.score + w * (passages[g.rank].score - best)))
        return Reading(order, reading.no_answer)


def passage_sentence_features(hits, index, question: str, settings: Settings) -> list[list]:
    """Per passage of ``hits``, its sentences' ``SentenceFeatures`` for the question (as reranking
    computed them, or worked out here when it did not)."""
    from .features import question_terms, sentence_features

    out = []
    terms = None
    for p in hits.passages:
        feats = hits.sentence_features.get(p.chunk_id)
        if feats is None and 0 <= p.chunk_id < len(index.chunks):
            terms = question_terms(question) if terms is None else terms
            feats = sentence_features(index, p.chunk_id, question, terms, hits.query_vector, settings)
        out.append(feats or [])
    return out


def _sentences(index, p: Passage) -> Sequence[Span]:
    if 0 <= p.chunk_id < len(index.chunks):
        chunk = index.chunks[p.chunk_id]
        if chunk.source == p.source and chunk.start == p.start:
            return chunk.sentences
    return ()
