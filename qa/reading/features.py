"""Question-vs-sentence features: how well each sentence of a chunk matches a question.

The shared scoring layer under both passage reranking (``retrieval.rerank`` orders passages by
their best sentence) and the sentence picker (``answering.candidates`` chooses the quote). It
holds the term machinery (stemmed ``TermSet`` with loose prefix matching, per-index memoised
sentence and chunk terms, IDF-weighted ``coverage``), the answer-type patterns (does a sentence
hold the age, duration, count, date or names the question asks for), the question's focus term,
and ``sentence_features`` / ``sentence_score`` that combine them with the dense similarity.

It builds only on the lower layers (``index``, ``lexical``, ``settings``, ``types``), never on
``retrieval`` or ``answering``, so both of those can import it at module level.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import lexical
from ..corpus import page_of
from ..index import Index
from ..settings import Settings
from ..types import Citation, Passage, Span

_END_PUNCT = tuple(".!?\"”’')")


def quotable(text: str, min_words: int) -> bool:
    """Prose worth quoting: enough words, ends like a sentence (or is long); not a caption,
    heading or "RELATED CONTENT:" line, nor a text holding a run of non-space characters longer
    than ``lexical.MAX_WORD_CHARS``."""
    runs = text.split()
    n = len(runs)
    if n < min_words or text.endswith(":") or not re.search(r"[a-z]", text):
        return False
    if any(len(r) > lexical.MAX_WORD_CHARS for r in runs):
        return False  # a URL, a blob or a hostile run: no window of it could be quoted whole
    return text.endswith(_END_PUNCT) or n >= 12


def _idf(index: Index, term: str) -> float:
    cache = _cache(index, "idf")
    v = cache.get(term)
    if v is None:
        n = max(1, index.n_stats)
        df = index.df.get(term, 0)
        v = cache[term] = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return v


MEMO_ENTRIES = 20_000  # per memo: a big index answering for days must not keep every chunk it read


class _Memo(dict):
    """A dict that empties itself when full (bounded memory, no bookkeeping per hit)."""

    def __setitem__(self, key, value) -> None:
        if len(self) >= MEMO_ENTRIES:
            self.clear()
        super().__setitem__(key, value)


def _cache(index: Index, name: str) -> dict:
    """A per-index memo (kept on the index object, so it goes when the index goes), bounded."""
    caches = index.__dict__.setdefault("_answering_cache", {})
    return caches.setdefault(name, _Memo())


@dataclass(frozen=True)
class TermSet:
    """A text's stemmed terms, and their prefixes of 4 to ``lexical.MAX_WORD_CHARS`` letters (for
    loose matching). The bound keeps memory and time linear in the text whatever its words
    (the tokenizer never makes longer terms, so it changes nothing for tokenized text)."""

    terms: frozenset[str]
    prefixes: frozenset[str]

    @classmethod
    def of(cls, terms) -> TermSet:
        terms = frozenset(terms)
        top = lexical.MAX_WORD_CHARS
        return cls(terms, frozenset(t[:i] for t in terms for i in range(4, min(len(t), top) + 1)))

    def has(self, term: str) -> bool:
        """The term, or a term it starts, or one that starts it (both 4 to MAX_WORD_CHARS letters)."""
        if term in self.terms:
            return True
        if len(term) < 4:
            return False
        top = lexical.MAX_WORD_CHARS
        return (len(term) <= top and term in self.prefixes) or any(
            term[:i] in self.terms for i in range(4, min(len(term), top + 1))
        )

    def __or__(self, other: TermSet) -> TermSet:
        return TermSet(self.terms | other.terms, self.prefixes | other.prefixes)


def _matches(term: str, terms) -> bool:
    return (terms if isinstance(terms, TermSet) else TermSet.of(terms)).has(term)


def chunk_sentences(index: Index, chunk_id: int) -> list[tuple[Span, str, TermSet]]:
    """The chunk's sentences with their terms (memoised per index)."""
    cache = _cache(index, "sentences")
    out = cache.get(chunk_id)
    if out is None:
        chunk = index.chunks[chunk_id]
        out = []
        for span in chunk.sentences:
            text = chunk.text[span.start - chunk.start : span.end - chunk.start]
            out.append((span, text, TermSet.of(lexical.tokenize(text))))
        cache[chunk_id] = out
    return out


def _quotable_sentences(index: Index, chunk_id: int, min_words: int) -> list[bool]:
    """``quotable`` of each of the chunk's sentences (memoised per index)."""
    cache = _cache(index, "quotable")
    out = cache.get((chunk_id, min_words))
    if out is None:
        out = cache[(chunk_id, min_words)] = [
            quotable(text, min_words) for _, text, _ in chunk_sentences(index, chunk_id)
        ]
    return out


def chunk_terms(index: Index, chunk_id: int) -> TermSet:
    cache = _cache(index, "chunk_terms")
    out = cache.get(chunk_id)
    if out is None:
        out = cache[chunk_id] = TermSet.of(lexical.tokenize(index.chunks[chunk_id].text))
    return out


def coverage(index: Index, question_terms: list[str], text_terms) -> float:
    """IDF-weighted share of the question's terms found in the text (0..1)."""
    weighted = _Weighted.of(index, question_terms)
    ts = text_terms if isinstance(text_terms, TermSet) else TermSet.of(text_terms)
    return weighted.share(weighted.found(ts))


@dataclass(frozen=True)
class _Weighted:
    """A question's distinct terms with their IDF weights, worked out once per question and chunk
    rather than once per sentence (``coverage`` of many texts, as reranking asks, is then only
    the ``TermSet.has`` lookups)."""

    terms: tuple[str, ...]
    weights: tuple[float, ...]
    total: float
    # per term, what TermSet.has looks up: (the term and its prefixes that may be terms, whether
    # the term itself may be a text term's prefix)
    probes: tuple[tuple[tuple[str, ...], bool], ...] = ()

    @classmethod
    def of(cls, index: Index, question_terms: list[str]) -> _Weighted:
        uniq = tuple(dict.fromkeys(question_terms))
        weights = tuple(_idf(index, t) for t in uniq)
        top = lexical.MAX_WORD_CHARS
        probes = tuple(
            ((t, *(t[:i] for i in range(4, min(len(t), top + 1)))), 4 <= len(t) <= top)
            if len(t) >= 4
            else ((t,), False)
            for t in uniq
        )
        return cls(uniq, weights, sum(weights), probes)

    def found(self, ts: TermSet) -> tuple[bool, ...]:
        """``ts.has(t)`` for each term, with the lookups worked out once per question."""
        terms, prefixes = ts.terms, ts.prefixes
        return tuple(
            not terms.isdisjoint(candidates) or (maybe_prefix and candidates[0] in prefixes)
            for candidates, maybe_prefix in self.probes
        )

    def share(self, found) -> float:
        """IDF-weighted share of the terms ``found`` marks (summed in the terms' order)."""
        if not self.terms:
            return 0.0
        return sum(w for w, hit in zip(self.weights, found, strict=True) if hit) / self.total


# What a question asks for, and how a sentence that has it looks: (question pattern, precise
# answer pattern, generic answer pattern). A precise match scores 1, a generic one 0.5.
_NUMBER = r"(?:\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|billion|dozen|several|few)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_UNITS = r"(?:years?|months?|weeks?|days?|hours?|minutes?|seconds?|decades?|centuries|century)"
_TYPES: list[tuple[re.Pattern, re.Pattern, re.Pattern]] = [
    (
        re.compile(r"\bhow (?:old|young)\b|\bwhat age\b|\bage of\b", re.I),
        re.compile(r",\s\d{1,3},|\b\d{1,3}[- ]years?[- ]old\b|\baged? \d{1,3}\b"),
        re.compile(r"\b\d{1,3}\b"),
    ),
    (
        re.compile(r"\bhow long\b", re.I),
        re.compile(r"\b" + _NUMBER + r"\s+" + _UNITS + r"\b", re.I),
        re.compile(r"\b" + _NUMBER + r"\b", re.I),
    ),
    (
        re.compile(r"\bhow (?:many|much|far|big|large|tall|often)\b|\bwhat (?:percentage|number|amount)\b", re.I),
        None,  # precise: the number is followed by the thing counted (see answer_type_score)
        re.compile(r"\b" + _NUMBER + r"\b", re.I),
    ),
    (
        re.compile(
            r"\bwhen\b|\bwhat (?:year|date|day|month|time|century|decade)\b|\bwhich (?:year|date|day|month|century)\b|\bin what year\b",
            re.I,
        ),
        re.compile(
            r"\b" + _MONTH + r"\s+\d{1,2},?\s+(?:1[0-9]|20)\d\d\b|\b\d{1,2}\s+" + _MONTH + r"\s+(?:1[0-9]|20)\d\d\b"
        ),
        re.compile(
            r"\b(?:1[0-9]|20)\d\d\b|\b"
            + _MONTH
            + r"\s+\d{1,2}\b|\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|spring|summer|autumn|fall|winter|century|decade)\b",
            re.I,
        ),
    ),
]
_COUNTED = re.compile(r"\bhow many\s+([A-Za-z-]+)", re.I)
_WHO = re.compile(r"\bwho(?:m|se)?\b|\bwhich (?:actor|actress|person|people|star|stars|director|writer)\b", re.I)
_WHO_PLURAL = re.compile(r"\bwho (?:are|were)\b", re.I)
_WHERE = re.compile(
    r"\bwhere\b|\bwhat (?:city|country|place|state|town)\b|\bin which (?:city|country|place|state|town)\b", re.I
)
_NAME2 = re.compile(r"\b[A-Z][a-z’'A-Z-]+(?:\s+(?:[A-Z]\.|[A-Z][a-z’'A-Z-]+))+")


@dataclass(frozen=True)
class _Asked:
    """What a question asks for, as answer_type_score reads it (worked out once per question)."""

    kind: int | None  # index in _TYPES of the first kind of answer it asks for
    counted: tuple[str, ...]  # "how many X": the stemmed X
    who_or_where: bool
    who_plural: bool
    words: frozenset[str]


def asks_who(question: str) -> bool:
    """The question asks for someone ("who", "whom", "whose", "which actor ...")."""
    return bool(_WHO.search(question))


@lru_cache(maxsize=256)
def _asked(question: str) -> _Asked:
    kind = next((i for i, (asks, _, _) in enumerate(_TYPES) if asks.search(question)), None)
    m = _COUNTED.search(question) if kind is not None and _TYPES[kind][1] is None else None
    return _Asked(
        kind,
        tuple(lexical.tokenize(m.group(1))) if m else (),
        bool(_WHO.search(question) or _WHERE.search(question)),
        bool(_WHO_PLURAL.search(question)),
        frozenset(lexical.words(question)),
    )


def answer_type_score(question: str, sentence: str, generic_credit: float = 0.5) -> float:
    """How well the sentence holds the kind of thing the question asks for: 1 for a precise
    match (an age for "how old", a duration for "how long", the thing counted for "how many X",
    a full date for "when", several names for "who are/were"), ``generic_credit`` for a generic one (any number, a year, a name of
    two or more words for "who"/"where" that the question does not already give), else 0."""
    asked = _asked(question)
    if asked.kind is not None:
        _, precise, generic = _TYPES[asked.kind]
        if precise is None:
            if asked.counted:
                for n in re.finditer(r"\b" + _NUMBER + r"\s+(?:\S+\s+){0,2}?(\S+)", sentence, re.I):
                    if lexical.tokenize(n.group(1))[:1] == list(asked.counted[:1]):
                        return 1.0
        elif precise.search(sentence):
            return 1.0
        return generic_credit if generic.search(sentence) else 0.0
    if asked.who_or_where:
        q = asked.words
        names = {m.group(0) for m in _NAME2.finditer(sentence) if not set(lexical.words(m.group(0))) & q}
        if len(names) >= 2 and asked.who_plural:
            return 1.0
        return generic_credit if names else 0.0
    return 0.0


_HOW = re.compile(r"\bhow\s+(old|young|long|far|big|large|tall|often|much|many|wide|high|deep|heavy|fast)\b", re.I)
_FOCUS = re.compile(
    r"^\s*(?:who|what|which|whose)\s+(?:is|are|was|were)\s+(?:the\s+|a\s+|an\s+)?([A-Za-z][\w-]*)", re.I
)


def question_terms(question: str) -> list[str]:
    """The question's terms for matching sentences: "how old", "how long" (...) name the kind
    of answer, not words the answer sentence holds, so their adjective is left out."""
    return lexical.tokenize(_HOW.sub(" ", question)) or lexical.tokenize(question)


_GENERIC_HEADS = frozenset(
    "name names type kind sort term number amount percentage year date time part one purpose reason result "
    "role use way form main first last other best most".split()
)


def focus_term(question: str) -> str | None:
    """The noun asked about in "Who are the stars of ...", "What were the causes of ..." (stemmed);
    None for a generic head ("What is the name of ...") that answer sentences seldom repeat."""
    m = _FOCUS.search(question)
    if not m or m.group(1).lower() in _GENERIC_HEADS:
        return None
    t = lexical.tokenize(m.group(1))
    return t[0] if t else None


def _previous_terms(index: Index, chunk_id: int, i: int) -> TermSet | None:
    """Terms of the sentence before sentence ``i`` of the chunk (across chunk edges, same file)."""
    sents = chunk_sentences(index, chunk_id)
    if i > 0:
        return sents[i - 1][2]
    if index.same_document_before(chunk_id):
        before = [s for s in chunk_sentences(index, chunk_id - 1) if s[0].end <= sents[i][0].start]
        if before:
            return before[-1][2]
    return None


@dataclass(frozen=True)
class SentenceFeatures:
    span: Span
    text: str
    dense: float
    coverage: float
    context: float
    typed: float
    quotable: bool
    focus: float = 0.0
    raw_coverage: float = 0.0


def sentence_features(
    index: Index,
    chunk_id: int,
    question: str,
    question_terms: list[str],
    question_vector: np.ndarray,
    settings: Settings,
) -> list[SentenceFeatures]:
    """Every sentence of a chunk with what sentence scoring needs. A sentence's coverage counts the
    sentence before it at ``w_previous`` (its subject is often there: "The show stars ...")."""
    sents = chunk_sentences(index, chunk_id)
    vecs = index.sentence_block(chunk_id)
    sims = vecs @ question_vector if len(vecs) else np.zeros(0)
    weighted = _Weighted.of(index, question_terms)
    context = weighted.share(weighted.found(chunk_terms(index, chunk_id)))
    focus = focus_term(question) if settings.w_focus else None
    oks = _quotable_sentences(index, chunk_id, settings.min_answer_words)
    total = weighted.total
    out = []
    for i, ((span, text, ts), sim, ok) in enumerate(zip(sents, sims, oks, strict=True)):
        found = weighted.found(ts) if ok else ()
        cov = raw = weighted.share(found) if ok else 0.0
        if ok and settings.w_previous > 0 and cov < 1.0:
            prev = _previous_terms(index, chunk_id, i)
            if prev is not None:
                # the sentence and the one before together: a term is found in either (as in ts | prev)
                both = [a or b for a, b in zip(found, weighted.found(prev), strict=True)]
                raw += settings.w_previous * (weighted.share(both) - raw)
        if ok and settings.coverage_smoothing:
            cov = raw * total / (total + settings.coverage_smoothing) if total else 0.0
        else:
            cov = raw
        typed = answer_type_score(question, text, settings.type_generic_credit) if ok else 0.0
        has_focus = 1.0 if focus and ok and ts.has(focus) else 0.0
        out.append(SentenceFeatures(span, text, float(sim), cov, context, typed, ok, has_focus, raw))
    return out


def sentence_score(f: SentenceFeatures, settings: Settings) -> float:
    """A sentence's score before the rank of its passage is counted."""
    return (
        settings.w_dense * f.dense
        + settings.w_coverage * f.coverage
        + settings.w_context * f.context
        + settings.w_type * f.typed
        + settings.w_focus * f.focus
    )


_CAPS = re.compile(r"[A-Za-z][\w'’-]*")


def question_signals(index: Index, question: str) -> tuple[float, float]:
    """(IDF-weighted share of the question's terms the corpus knows, share of its capitalised words
    past the first (names, mostly) that the corpus never mentions): signals of an out-of-corpus question."""
    terms = list(dict.fromkeys(lexical.tokenize(question)))
    w = [_idf(index, t) for t in terms]
    known = sum(wi for t, wi in zip(terms, w, strict=True) if index.df.get(t, 0) > 0) / sum(w) if w else 0.0
    caps = lexical.tokenize(" ".join(x for x in _CAPS.findall(question)[1:] if x[0].isupper()))
    cap_unknown = sum(1 for t in caps if index.df.get(t, 0) == 0) / len(caps) if caps else 0.0
    return known, cap_unknown


def citation(number: int, p: Passage, start: int, end: int, quote: str, documents: dict | None) -> Citation:
    """The citation of a quote ``file_text[start:end]`` from passage ``p``: its article, and for an
    ingested one its outlet, original URL and (PDF) page (from ``documents``, the index's)."""
    page = page_of((documents or {}).get(p.source, {}), start)
    return Citation(number, p.source, p.title, p.date, start, end, quote, url=p.url, outlet=p.outlet, page=page)
