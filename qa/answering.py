"""From retrieved passages to an extractive Answer: sentence scoring, quotes, citations,
abstention and follow-up query rewriting.

Every quote is a span of the indexed text, so ``file_text[start:end] == quote`` by
construction; the answer text is only quotes and ``[n]`` markers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import lexical
from .index import Index
from .retrieval import Hits
from .settings import Settings
from .types import Answer, Citation, Passage, Span

_ANAPHORA = frozenset(
    "he she it they him her his hers its their theirs them this that these those there then the_former the_latter".split()
)
_END_PUNCT = tuple(".!?\"”’')")
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


# ---------------------------------------------------------------- sentence scoring


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
        n = max(1, len(index.chunks))
        df = index.df.get(term, 0)
        v = cache[term] = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return v


def _cache(index: Index, name: str) -> dict:
    """A per-index memo (kept on the index object, so it goes when the index goes)."""
    caches = index.__dict__.setdefault("_answering_cache", {})
    return caches.setdefault(name, {})


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


def chunk_terms(index: Index, chunk_id: int) -> TermSet:
    cache = _cache(index, "chunk_terms")
    out = cache.get(chunk_id)
    if out is None:
        out = cache[chunk_id] = TermSet.of(lexical.tokenize(index.chunks[chunk_id].text))
    return out


def coverage(index: Index, question_terms: list[str], text_terms) -> float:
    """IDF-weighted share of the question's terms found in the text (0..1)."""
    uniq = list(dict.fromkeys(question_terms))
    if not uniq:
        return 0.0
    ts = text_terms if isinstance(text_terms, TermSet) else TermSet.of(text_terms)
    weights = [_idf(index, t) for t in uniq]
    got = sum(w for t, w in zip(uniq, weights, strict=True) if ts.has(t))
    return got / sum(weights)


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
    if chunk_id > 0 and index.chunks[chunk_id - 1].source == index.chunks[chunk_id].source:
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
    context = coverage(index, question_terms, chunk_terms(index, chunk_id))
    focus = focus_term(question) if settings.w_focus else None
    out = []
    for i, ((span, text, ts), sim) in enumerate(zip(sents, sims, strict=True)):
        ok = quotable(text, settings.min_answer_words)
        cov = raw = coverage(index, question_terms, ts) if ok else 0.0
        if ok and settings.w_previous > 0 and cov < 1.0:
            prev = _previous_terms(index, chunk_id, i)
            if prev is not None:
                raw += settings.w_previous * (coverage(index, question_terms, ts | prev) - raw)
        if ok and settings.coverage_smoothing:
            total = sum(_idf(index, t) for t in dict.fromkeys(question_terms))
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


_CAPS = re.compile(r"[A-Za-z][\w'’-]*")


def abstain_features(index: Index, hits: Hits, question: str, best: Candidate) -> list[float]:
    """What the abstention model weighs, in the order of ``Settings.abstain_model``."""
    terms = list(dict.fromkeys(lexical.tokenize(question)))
    w = [_idf(index, t) for t in terms]
    known = sum(wi for t, wi in zip(terms, w, strict=True) if index.df.get(t, 0) > 0) / sum(w) if w else 0.0
    top_dense = max(p.dense_score or 0.0 for p in hits.passages)
    top_bm25 = max(p.bm25_score or 0.0 for p in hits.passages)
    # capitalised words past the first (names, mostly) that the corpus never mentions
    caps = lexical.tokenize(" ".join(x for x in _CAPS.findall(question)[1:] if x[0].isupper()))
    cap_unknown = sum(1 for t in caps if index.df.get(t, 0) == 0) / len(caps) if caps else 0.0
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
    signals together (``Settings.abstain_model``, fitted by ``python -m qa eval --squad --calibrate``)."""
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
        citations.append(Citation(n, p.source, p.title, p.date, span.start, span.end, quote))
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
