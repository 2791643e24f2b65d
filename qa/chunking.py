"""Sentences -> chunks that fit the model window, with offsets into the raw file text.

Paragraphs (blank-line separated) are the natural units: short ones are packed together while
they fit; a paragraph too long for one chunk is split between sentences, with
``chunk_overlap_sentences`` repeated at the start of the next chunk; a sentence too long alone
is split between words, and a word too long alone between characters. Nothing is ever
truncated: every sentence of the body is in a chunk.

"Fits" means at most ``max_tokens`` model tokens AND at most ``max_chars`` characters
(``max_tokens * MAX_CHARS_PER_TOKEN`` unless given): the model's tokenizer maps any word over 100
characters to one [UNK] token, so a token bound alone lets a 1 MB word be one chunk. Normal
text has about 5 characters per token, so the character bound only binds on such text.

pysbd takes time quadratic in the length of the text it is given (one 100 KB paragraph: 3.6 s,
1 MB: 300 s), so a paragraph longer than ``PYSBD_MAX_CHARS`` is first cut into pieces at
sentence ends (else at whitespace, else anywhere) and each piece is split on its own.
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
# A chunk holds at most chunk_max_tokens * MAX_CHARS_PER_TOKEN characters (4,000 for 200 tokens;
# the longest chunk of the seed and SQuAD corpora is 1,158). A change changes the index: the
# manifest records it (chunk_max_chars_per_token). Candidate for a setting; a constant for now.
MAX_CHARS_PER_TOKEN = 20
# How sentences are split, recorded in the manifest: an index split by other rules is rebuilt.
# 2: the "!" of a markdown image ("![alt](url)") does not end a sentence (pysbd ends one there).
SENTENCE_RULES = 2
# Longest text given to pysbd at once (no SQuAD paragraph is over 4,100 characters).
PYSBD_MAX_CHARS = 8_000
# Where a long paragraph may be cut before pysbd: after sentence punctuation and its closing
# quotes, not after an initial ("U.S.") or a short title ("Mr.", "Dr.").
_PIECE_END = re.compile(r"(?<!\b[A-Z][a-z])(?<!\b[A-Z])[.!?][\"'”’)\]]*\s+")


def max_chunk_chars(max_tokens: int) -> int:
    """The default character bound of a chunk of ``max_tokens`` tokens."""
    return max_tokens * MAX_CHARS_PER_TOKEN


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd
    from pysbd.utils import TextSpan

    class Segmenter(pysbd.Segmenter):
        """pysbd with its character spans found in linear time. pysbd 0.3 searches each
        sentence from the start of the text (quadratic: 8,000 characters of one-letter lines took
        2.4 s); the search starts where a match can first end after the previous sentence (it
        includes the trailing whitespace, so an earlier match cannot): the same spans, found fast."""

        def sentences_with_char_spans(self, sentences):
            spans, prior_end, text = [], 0, self.original_text
            for sent in sentences:
                pattern = re.compile(re.escape(sent) + r"\s*")
                for m in pattern.finditer(text, max(0, prior_end - len(sent))):
                    if m.end() > prior_end:
                        spans.append(TextSpan(m.group(), m.start(), m.end()))
                        prior_end = m.end()
                        break
            return spans

    return Segmenter(language="en", clean=False, char_span=True)


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans of ``text[start:end]`` as offsets into ``text``, whitespace trimmed.

    Blank lines always end a sentence, and so does a heading-like line (a short line with no
    closing punctuation, or a markdown heading or list item).
    """
    end = len(text) if end is None else end
    spans: list[Span] = []
    for seg_start, seg_end in _segments(text, start, end):
        for piece_start, piece_end in _pieces(text, seg_start, seg_end, PYSBD_MAX_CHARS):
            for s in _pysbd_spans(text, piece_start, piece_end):
                if spans and _image_mark(text, spans[-1], s):
                    spans[-1] = Span(spans[-1].start, s.end)
                else:
                    spans.append(s)
    return spans


def _image_mark(text: str, before: Span, after: Span) -> bool:
    """Whether pysbd split a markdown image's "![": a "!" right against the next "[" is no
    sentence end ("The mill ![photo](mill.png) was restored." is one sentence)."""
    return before.end == after.start and text[before.end - 1] == "!" and text[after.start] == "["


def _pieces(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """``text[start:end]`` as consecutive pieces of at most ``limit`` characters, cut after the
    last sentence end in the second half of each window, else after its last whitespace, else
    at the limit. A segment within the limit is one piece (normal paragraphs never get cut)."""
    out: list[tuple[int, int]] = []
    while end - start > limit:
        hi = start + limit
        cut = 0
        for m in _PIECE_END.finditer(text, start + limit // 2, hi):
            cut = m.end()
        if not cut:
            cut = max(text.rfind(c, start, hi) for c in " \n\t") + 1
        if cut <= start:
            cut = hi
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


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
    *,
    max_chars: int | None = None,
) -> list[Chunk]:
    """The document's body as chunks of at most ``max_tokens`` model tokens and ``max_chars``
    characters (default ``max_chunk_chars(max_tokens)``), in order."""
    if max_tokens < 8:
        raise ValueError(f"chunk_max_tokens must be at least 8. Currently, it is {max_tokens}.")
    max_chars = max_chunk_chars(max_tokens) if max_chars is None else max_chars
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1. Currently, it is {max_chars}.")
    text = doc.text
    sentences = split_sentences(text, doc.body_start)
    if not sentences:
        return []
    paras = paragraph_of(text, sentences)
    counts = count_tokens([text[s.start : s.end] for s in sentences])
    units: list[_Unit] = []
    budget = max_tokens - _SPECIAL_TOKENS
    for s, n, p in zip(sentences, counts, paras, strict=True):
        if n <= budget and s.end - s.start <= max_chars:
            units.append(_Unit(s, n, p))
        else:
            units.extend(_Unit(w, c, p) for w, c in _split_words(text, s, count_tokens, budget, max_chars))

    groups: list[list[_Unit]] = []
    i = 0
    while i < len(units):
        group = [units[i]]
        total = units[i].tokens
        j = i + 1
        while (
            j < len(units)
            and total + units[j].tokens <= budget
            and units[j].span.end - group[0].span.start <= max_chars
        ):
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
            while overlap and (
                sum(u.tokens for u in group[-overlap:]) + units[j].tokens > budget
                or units[j].span.end - group[-overlap].span.start > max_chars
            ):
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


def _split_words(
    text: str, sentence: Span, count_tokens: TokenCounter, budget: int, max_chars: int
) -> list[tuple[Span, int]]:
    """A sentence longer than the window, as consecutive word windows that each fit."""
    words = [Span(m.start(), m.end()) for m in _WORD.finditer(text, sentence.start, sentence.end)]
    counts = count_tokens([text[w.start : w.end] for w in words])
    pieces: list[tuple[Span, int]] = []
    for w, c in zip(words, counts, strict=True):
        fits = c <= budget and w.end - w.start <= max_chars
        pieces.extend([(w, c)] if fits else _split_chars(text, w, count_tokens, budget, max_chars))
    out: list[tuple[Span, int]] = []
    first, total = 0, 0
    for k, (span, c) in enumerate(pieces):
        if (total + c > budget or span.end - pieces[first][0].start > max_chars) and k > first:
            out.append((Span(pieces[first][0].start, pieces[k - 1][0].end), total))
            first, total = k, 0
        total += c
    out.append((Span(pieces[first][0].start, pieces[-1][0].end), total))
    return out


def _split_chars(
    text: str, word: Span, count_tokens: TokenCounter, budget: int, max_chars: int
) -> list[tuple[Span, int]]:
    """One "word" longer than the window (a long URL, a base64 blob, a megabyte of one letter)
    cut into pieces of at most ``max_chars`` characters and ``budget`` tokens."""
    slices = [Span(a, min(a + max_chars, word.end)) for a in range(word.start, word.end, max_chars)]
    counts = count_tokens([text[p.start : p.end] for p in slices])
    out: list[tuple[Span, int]] = []
    for piece, n in zip(slices, counts, strict=True):
        if n <= budget:
            out.append((piece, n))
            continue
        start = piece.start
        while start < piece.end:
            end = piece.end
            n = count_tokens([text[start:end]])[0]
            while n > budget and end - start > 1:
                end = start + max(1, (end - start) * budget // (n + 1))
                n = count_tokens([text[start:end]])[0]
            out.append((Span(start, end), n))
            start = end
    return out
