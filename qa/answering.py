"""From retrieved passages to an extractive Answer: candidate sentences, quotes, citations,
abstention and follow-up query rewriting. The question-vs-sentence features it scores
candidates with live in ``reading.features`` (shared with ``retrieval.rerank``); the public
ones are re-exported here for older callers.

Every quote is a span of the indexed text, so ``file_text[start:end] == quote`` by
construction; the answer text is only quotes and ``[n]`` markers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from . import lexical
from .index import Index
from .reading.features import SentenceFeatures as SentenceFeatures
from .reading.features import TermSet as TermSet
from .reading.features import (
    _idf,
    chunk_terms,
    citation,
    coverage,
    question_signals,
    question_terms,
    sentence_features,
    sentence_score,
)
from .reading.features import answer_type_score as answer_type_score
from .reading.features import chunk_sentences as chunk_sentences
from .reading.features import focus_term as focus_term
from .reading.features import quotable as quotable
from .retrieval import Hits
from .settings import Settings
from .types import Answer, Passage, Span

_ANAPHORA = frozenset(
    "he she it they him her his hers its their theirs them this that these those there then the_former the_latter".split()
)
_MARKER = re.compile(r"\s*\[\d+\]")
_NAME = re.compile(r"\b[A-Z][\w’'-]*(?:[ \t]+(?:[A-Z][\w’'-]*|&|of|de|van|von))*")


# ---------------------------------------------------------------- follow-ups


def rewrite_query(question: str, history: list[dict] | None, turns: int = 2, max_chars: int | None = None) -> str:
    """The question, plus context from earlier turns when it leans on them.

    A follow-up (a pronoun like "he" or "it", or too few words of its own) gets the last
    user question and the names in the last answer appended, so retrieval can find what
    "he" refers to. With ``max_chars`` the rewrite is cut to that many characters at a word
    boundary (the question itself is assumed to fit).
    """
    question = question.strip()
    if not history:
        return question
    users = [m["content"] for m in history if m.get("role") == "user" and isinstance(m.get("content"), str)]
    bots = [m["content"] for m in history if m.get("role") == "assistant" and isinstance(m.get("content"), str)]
    ws = lexical.words(question)
    content = lexical.tokenize(question)
    if not users or not (set(ws) & _ANAPHORA or len(content) <= 1):
        return question
    context = [u.strip() for u in users[-turns:] if u.strip() and u.strip() != question][-1:]
    if bots:
        last = _MARKER.sub("", bots[-1])[:300]
        names = []
        for m in _NAME.finditer(last):
            name = m.group(0).strip(" .")
            if name and name.lower() not in _ANAPHORA and name not in names and len(name) > 2:
                names.append(name)
        context.extend(names[:4])
    query = f"{question} ({'; '.join(context)})" if context else question
    return _cut(query, max_chars) if max_chars is not None else query


def _cut(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters at a word boundary, trailing separators dropped."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    if not text[max_chars].isspace():  # the cut falls inside a word: leave that word out
        m = re.search(r"\s\S*\Z", head)
        head = head[: m.start()] if m else ""
    return head.rstrip(" \t\n(;,")


# ---------------------------------------------------------------- candidate sentences


@dataclass(frozen=True)
class Candidate:
    passage: Passage
    rank: int
    span: Span
    text: str
    score: float
    dense: float
    coverage: float  # question terms in the sentence (IDF-weighted share, smoothed)
    context: float  # question terms in the sentence's chunk
    typed: float  # the sentence holds the kind of thing asked for (a name, a number, a date)
    raw_coverage: float = 0.0  # coverage without smoothing (what the abstention model weighs)


def candidates(
    index: Index, hits: Hits, question: str, question_vector: np.ndarray, settings: Settings
) -> list[Candidate]:
    """Every quotable sentence of the passages, scored against the question, best first."""
    terms = question_terms(question)
    out: list[Candidate] = []
    seen: set[tuple[str, int]] = set()
    n = len(hits.passages)
    for rank, p in enumerate(hits.passages):
        prior = 1.0 - rank / max(n, 1)
        feats = hits.sentence_features.get(p.chunk_id)
        if feats is None or question_vector is not hits.query_vector:
            feats = sentence_features(index, p.chunk_id, question, terms, question_vector, settings)
        for f in feats:
            key = (p.source, f.span.start)
            if key in seen or not f.quotable:
                continue
            seen.add(key)
            score = sentence_score(f, settings) + settings.w_rank * prior
            out.append(
                Candidate(p, rank, f.span, f.text, score, f.dense, f.coverage, f.context, f.typed, f.raw_coverage)
            )
    out.sort(key=lambda c: -c.score)
    return out


# ---------------------------------------------------------------- the answer


def abstain_features(index: Index, hits: Hits, question: str, best: Candidate) -> list[float]:
    """What the abstention model weighs, in the order of ``Settings.abstain_model``."""
    terms = list(dict.fromkeys(lexical.tokenize(question)))
    w = [_idf(index, t) for t in terms]
    known, cap_unknown = question_signals(index, question)
    top_dense = max(p.dense_score or 0.0 for p in hits.passages)
    top_bm25 = max(p.bm25_score or 0.0 for p in hits.passages)
    rare = sorted(terms, key=lambda t: -_idf(index, t))[:2]
    top = hits.passages[0]
    rare_cov = coverage(index, rare, chunk_terms(index, top.chunk_id)) if rare and top.chunk_id >= 0 else 0.0
    return [
        known,
        top_dense,
        best.raw_coverage,
        best.dense,
        math.log1p(top_bm25),
        top_bm25 / (sum(w) or 1e-6),
        cap_unknown,
        rare_cov,
        float(top.score),
    ]


def confidence(index: Index, hits: Hits, question: str, best: Candidate | None, settings: Settings) -> float:
    """How well the passages support an answer, in [0, 1]: a logistic model over several
    signals together (``Settings.abstain_model``, fitted by ``python -m qa calibrate-reader --reader picker``)."""
    if best is None or not hits.passages:
        return 0.0
    coef = [float(x) for x in settings.abstain_model.split(",")]
    feats = abstain_features(index, hits, question, best)
    if len(coef) != len(feats) + 1:
        raise ValueError(f"abstain_model must have {len(feats) + 1} numbers. Currently, it has {len(coef)}.")
    z = coef[0] + sum(c * f for c, f in zip(coef[1:], feats, strict=True))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def build_answer(index: Index, hits: Hits, question: str, query: str, settings: Settings) -> Answer:
    """The answer to ``question`` from the passages found for it and for ``query`` (its follow-up
    rewrite, or the question itself). Sentences are scored against the question itself, whose
    vector ``retrieval.search`` returns first."""
    question_terms = lexical.tokenize(question)
    cands = candidates(index, hits, question, hits.query_vector, settings)
    best = cands[0] if cands else None
    conf = confidence(index, hits, question, best, settings)
    if best is None or conf < settings.abstain_threshold:
        return Answer(
            text="",
            citations=[],
            confidence=round(conf, 4),
            abstained=True,
            passages=hits.passages,
            query=query,
            message="The articles do not answer this question. The closest passages are listed, but they are not an answer.",
        )
    chosen = [best]
    for c in cands[1:4]:  # the best runner-up that fits beside it, if it scores close enough and is on topic
        if c.score < settings.second_sentence_ratio * best.score:
            break
        related = (
            c.raw_coverage >= settings.second_sentence_coverage * best.raw_coverage
            or c.typed >= 1.0
            or _adjacent(best, c)
        )
        if related and len(best.text) + len(c.text) + 1 <= settings.answer_max_chars:
            chosen.append(c)
            break
    spans = _merge(chosen)
    citations, parts = [], []
    for n, (p, span) in enumerate(spans, 1):
        span = _fit(p, span, question_terms, settings.answer_max_chars)
        quote = p.text[span.start - p.start : span.end - p.start]
        citations.append(citation(n, p, span.start, span.end, quote, index.documents))
        parts.append(f"{quote} [{n}]")
    return Answer(
        text=" ".join(parts),
        citations=citations,
        confidence=round(conf, 4),
        abstained=False,
        passages=hits.passages,
        query=query,
    )


def _adjacent(a: Candidate, b: Candidate) -> bool:
    """The two sentences follow each other in the same chunk (only whitespace between)."""
    if a.passage.chunk_id != b.passage.chunk_id:
        return False
    first, second = (a, b) if a.span.start < b.span.start else (b, a)
    p = a.passage
    return not p.text[first.span.end - p.start : second.span.start - p.start].strip()


def _merge(chosen: list[Candidate]) -> list[tuple[Passage, Span]]:
    """Chosen sentences in reading order; neighbours in the same passage become one quote."""
    first = chosen[0]
    rest = chosen[1:]
    ordered = (
        sorted(chosen, key=lambda c: (c.passage.source != first.passage.source, c.passage.source, c.span.start))
        if rest
        else chosen
    )
    out: list[tuple[Passage, Span]] = []
    for c in ordered:
        if out:
            p, span = out[-1]
            gap = p.text[span.end - p.start : c.span.start - p.start] if p.chunk_id == c.passage.chunk_id else None
            if gap is not None and c.span.start >= span.end and not gap.strip():
                out[-1] = (p, Span(span.start, c.span.end))
                continue
        out.append((c.passage, c.span))
    return out


def _fit(p: Passage, span: Span, terms: list[str], max_chars: int) -> Span:
    """The span, or its best window of whole words when it is longer than ``max_chars``: the first
    window holding the most question terms. Each word is tokenized once and the window slides,
    so the cost is linear in the span."""
    if span.end - span.start <= max_chars:
        return span
    text = p.text[span.start - p.start : span.end - p.start]
    wanted = set(terms)
    memo: dict[str, int] = {}
    words: list[tuple[int, int]] = []
    hits: list[int] = []  # question terms in each word
    for m in re.finditer(r"\S+", text):
        words.append((span.start + m.start(), span.start + m.end()))
        w = m.group(0)
        n = memo.get(w)
        if n is None:
            n = memo[w] = sum(1 for t in lexical.tokenize(w) if t in wanted)
        hits.append(n)
    best, best_hits = None, -1
    j, total = -1, 0  # the window is words[i..j]; total is its hits
    for i in range(len(words)):
        if j < i:
            j, total = i, hits[i]
        while j + 1 < len(words) and words[j + 1][1] - words[i][0] <= max_chars:
            j += 1
            total += hits[j]
        if total > best_hits:
            best, best_hits = Span(words[i][0], words[j][1]), total
        total -= hits[i]
    assert best is not None
    return best
