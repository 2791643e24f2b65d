"""Sentences -> chunks that fit the model window, with offsets into the raw file text.

Paragraphs (blank-line separated) are the natural units: short ones are packed together while
they fit; a paragraph too long for one chunk is split between sentences, with
``chunk_overlap_sentences`` repeated at the start of the next chunk; a sentence too long alone
is split between words. Nothing is ever truncated: every sentence of the body is in a chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .types import Chunk, Document, Span

TokenCounter = Callable[[Sequence[str]], list[int]]

_BLOCK = re.compile(r"\n[ \t]*\n")
_END_PUNCT = tuple(".!?:;\"”’')")
_LIST_MARK = re.compile(r"\A\s*(#{1,6}\s|[-*+]\s|\d+[.)]\s)")
_WORD = re.compile(r"\S+")
_SPECIAL_TOKENS = 2  # [CLS] and [SEP]


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans of ``text[start:end]`` as offsets into ``text``, whitespace trimmed.

    Blank lines always end a sentence, and so does a heading-like line (a short line with no
    closing punctuation, or a markdown heading or list item).
    """
    end = len(text) if end is None else end
    spans: list[Span] = []
    for seg_start, seg_end in _segments(text, start, end):
        spans.extend(_pysbd_spans(text, seg_start, seg_end))
    return spans


def paragraph_of(text: str, spans: Sequence[Span]) -> list[int]:
    """For each sentence span, the number of the paragraph it is in (blank lines between)."""
    ids, para, prev_end = [], 0, None
    for s in spans:
        if prev_end is not None and _BLOCK.search(text, prev_end, s.start):
            para += 1
        ids.append(para)
        prev_end = s.end
    return ids


def _segments(text: str, start: int, end: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    seg_start = None
    pos = start
    first_in_block = True
    for line in text[start:end].splitlines(keepends=True):
        line_start, pos = pos, pos + len(line)
        stripped = line.strip()
        if not stripped:
            if seg_start is not None:
                out.append((seg_start, line_start))
                seg_start = None
            first_in_block = True
            continue
        if seg_start is not None and _LIST_MARK.match(line):
            out.append((seg_start, line_start))
            seg_start = None
        if seg_start is None:
            seg_start = line_start
        if stripped.startswith("#") or (first_in_block and _heading_like(stripped)):
            out.append((seg_start, pos))
            seg_start = None
        first_in_block = False
    if seg_start is not None:
        out.append((seg_start, end))
    return out


def _heading_like(line: str) -> bool:
    return not line.endswith(_END_PUNCT) and len(line.split()) < 10


def _pysbd_spans(text: str, start: int, end: int) -> list[Span]:
    segment = text[start:end]
    spans: list[Span] = []
    cursor = 0
    for piece in _segmenter().segment(segment):
        sent = piece.sent.strip()
        if not sent:
            continue
        # pysbd's spans are usually exact; find() from the cursor guards against the rare miss
        # (a wrong text, or a span that starts back inside the previous sentence: "! ! !").
        at = piece.start + (len(piece.sent) - len(piece.sent.lstrip()))
        if at < cursor or segment[at : at + len(sent)] != sent:
            at = segment.find(sent, cursor)
        if at < 0:  # pysbd changed the text: give up on finer splitting for the rest
            rest = segment[cursor:].strip()
            if rest:
                at = segment.index(rest, cursor)
                spans.append(Span(start + at, start + at + len(rest)))
            return spans
        _keep_left_out(spans, segment, start, cursor, at)
        spans.append(Span(start + at, start + at + len(sent)))
        cursor = at + len(sent)
    _keep_left_out(spans, segment, start, cursor, len(segment))
    return spans


def _keep_left_out(spans: list[Span], segment: str, start: int, lo: int, hi: int) -> None:
    """Text pysbd left out of ``segment[lo:hi]`` (stray punctuation such as "\t?!"): joined to
    the sentence before it, so that nothing of the body is lost."""
    gap = segment[lo:hi]
    if not gap.strip():
        return
    first, last = lo + len(gap) - len(gap.lstrip()), hi - (len(gap) - len(gap.rstrip()))
    if spans:
        spans[-1] = Span(spans[-1].start, start + last)
    else:
        spans.append(Span(start + first, start + last))


@dataclass(frozen=True)
class _Unit:
    span: Span
    tokens: int
    para: int


def chunk_document(
    doc: Document,
    count_tokens: TokenCounter,
    max_tokens: int = 200,
    overlap_sentences: int = 1,
) -> list[Chunk]:
    """The document's body as chunks of at most ``max_tokens`` model tokens, in order."""
    if max_tokens < 8:
        raise ValueError(f"chunk_max_tokens must be at least 8. Currently, it is {max_tokens}.")
    text = doc.text
    sentences = split_sentences(text, doc.body_start)
    if not sentences:
        return []
    paras = paragraph_of(text, sentences)
    counts = count_tokens([text[s.start : s.end] for s in sentences])
    units: list[_Unit] = []
    budget = max_tokens - _SPECIAL_TOKENS
    for s, n, p in zip(sentences, counts, paras, strict=True):
        if n <= budget:
            units.append(_Unit(s, n, p))
        else:
            units.extend(_Unit(w, c, p) for w, c in _split_words(text, s, count_tokens, budget))

    groups: list[list[_Unit]] = []
    i = 0
    while i < len(units):
        group = [units[i]]
        total = units[i].tokens
        j = i + 1
        while j < len(units) and total + units[j].tokens <= budget:
            group.append(units[j])
            total += units[j].tokens
            j += 1
        if j < len(units) and units[j].para == group[-1].para:
            # cut inside a paragraph: end at the last paragraph break if the group has one
            breaks = [n for n in range(1, len(group)) if group[n].para != group[n - 1].para]
            if breaks:
                group = group[: breaks[-1]]
                j = i + len(group)
        groups.append(group)
        if j >= len(units):
            break
        overlap = 0
        if units[j].para == group[-1].para and len(group) > overlap_sentences:
            overlap = overlap_sentences
            # repeat only what fits beside the next unit, or the next chunk would hold nothing new
            while overlap and sum(u.tokens for u in group[-overlap:]) + units[j].tokens > budget:
                overlap -= 1
        i = j - overlap
    return [
        Chunk(
            source=doc.source,
            start=g[0].span.start,
            end=g[-1].span.end,
            text=text[g[0].span.start : g[-1].span.end],
            sentences=tuple(u.span for u in g),
        )
        for g in groups
    ]


def _split_words(text: str, sentence: Span, count_tokens: TokenCounter, budget: int) -> list[tuple[Span, int]]:
    """A sentence longer than the window, as consecutive word windows that each fit."""
    words = [Span(m.start(), m.end()) for m in _WORD.finditer(text, sentence.start, sentence.end)]
    counts = count_tokens([text[w.start : w.end] for w in words])
    pieces: list[tuple[Span, int]] = []
    for w, c in zip(words, counts, strict=True):
        pieces.extend(_split_chars(text, w, count_tokens, budget) if c > budget else [(w, c)])
    out: list[tuple[Span, int]] = []
    first, total = 0, 0
    for k, (_, c) in enumerate(pieces):
        if total + c > budget and k > first:
            out.append((Span(pieces[first][0].start, pieces[k - 1][0].end), total))
            first, total = k, 0
        total += c
    out.append((Span(pieces[first][0].start, pieces[-1][0].end), total))
    return out


def _split_chars(text: str, word: Span, count_tokens: TokenCounter, budget: int) -> list[tuple[Span, int]]:
    """One "word" longer than the window (a long URL, a base64 blob) cut into pieces that fit."""
    out: list[tuple[Span, int]] = []
    start = word.start
    while start < word.end:
        end = word.end
        n = count_tokens([text[start:end]])[0]
        while n > budget and end - start > 1:
            end = start + max(1, (end - start) * budget // (n + 1))
            n = count_tokens([text[start:end]])[0]
        out.append((Span(start, end), n))
        start = end
    return out
