"""The trained reader without its network (fast tier): span search, the quote around a span, the
Answer and its confidence, the reader inside an Engine (a fake span reader), settings, the UI's bold
span, the SQuAD metrics and the training data pipeline. The real weights are tested in
test_reader_real.py (slow)."""

from __future__ import annotations

import argparse
import html
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import qa
from qa import answering, evaluation, lexical, ui
from qa.errors import IndexCorruptError, InputError, ModelError
from qa.protocols import Reader
from qa.reading import model as rm
from qa.reading import train
from qa.reading.features import SentenceFeatures, asks_who
from qa.reading.trained import (
    ABSTAIN_FEATURES,
    ABSTAIN_MESSAGE,
    GUESSES,
    RANK_FEATURES,
    Reading,
    SpanGuess,
    SpanReader,
    TrainedReader,
    _fit_around,
    _sentences,
    abstain_features,
    answer_from_reading,
    quote_around,
    rank_features,
    rank_order,
    share_out,
)
from qa.retrieval import Hits
from qa.settings import READER_ABSTAIN_FEATURES, READER_RANK_FEATURES, Settings
from qa.types import Answer, AnswerSpan, Citation, Passage, Span

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tokenizer():
    """The tokenizer the reader runs with (tokenizers alone)."""
    return rm.FastTokenizer()


@pytest.fixture(scope="module")
def hf_tokenizer():
    """transformers' tokenizer: the reference that the windows cut by ``tokenizers`` alone must equal."""
    return rm.load_tokenizer()


def test_fast_tokenizer_windows_equal_transformers(tokenizer, hf_tokenizer):
    """Training and answering tokenize without transformers; their windows must be exactly transformers'."""
    questions = ["Who plays Mark?", "why " * 90 + "?", "Quand a été créé l'ONU ?", "x"]
    passages = [
        "Adam Scott plays Mark Scout. " * 40,
        "Short passage.",
        "L'Organisation des Nations unies a été fondée en 1945 à San Francisco. " * 12,
        "a" * 300 + " end",
    ]
    for config in (rm.WindowConfig(), rm.WindowConfig(max_length=128, stride=32)):
        a = rm.encode_windows(hf_tokenizer, questions, passages, config)
        b = rm.encode_windows(tokenizer, questions, passages, config)
        assert len(a["input_ids"]) > len(questions)  # long passages overflow into several windows
        for key in ("input_ids", "token_type_ids", "overflow_to_sample_mapping"):
            assert a[key] == b[key], key
        assert [list(map(tuple, o)) for o in a["offset_mapping"]] == [list(map(tuple, o)) for o in b["offset_mapping"]]
        assert all(a.sequence_ids(i) == b.sequence_ids(i) for i in range(len(a["input_ids"])))
    assert rm.question_prefix(hf_tokenizer, questions[1]) == rm.question_prefix(tokenizer, questions[1])
    assert tokenizer.pad_token_id == hf_tokenizer.pad_token_id


def test_windows_cover_a_long_passage_with_overlap(tokenizer):
    """Every character of a long passage is in some window, and consecutive windows share
    ``stride`` tokens (tokenizers 0.23.1/0.23.2 stopped after one short overflow window)."""
    passage = " ".join(f"w{i}" for i in range(400))
    config = rm.WindowConfig(max_length=64, stride=16)
    enc = rm.encode_windows(tokenizer, ["Which word?"], [passage], config)
    spans = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        spans.append([o for o, s in zip(offsets, enc.sequence_ids(i), strict=True) if s == 1])
    assert len(spans) > 5 and spans[0][0][0] == 0 and spans[-1][-1][1] == len(passage)
    for a, b in zip(spans, spans[1:], strict=False):
        assert [tuple(o) for o in a[-config.stride :]] == [tuple(o) for o in b[: config.stride]]


def test_a_tokenizer_cutting_windows_short_is_refused(tokenizer, monkeypatch):
    """A tokenizers whose overflow stops short (huggingface/tokenizers#2091) fails loudly, naming
    its version, instead of reading only the start of long passages."""
    import tokenizers

    real = tokenizer._tok

    class ShortOverflow:
        def __getattr__(self, name):
            return getattr(real, name)

        def encode_batch(self, pairs, add_special_tokens=True):
            return [SimpleNamespace(ids=e.ids, type_ids=e.type_ids, offsets=e.offsets,
                                    sequence_ids=e.sequence_ids, overflowing=e.overflowing[:1])
                    for e in real.encode_batch(pairs, add_special_tokens=add_special_tokens)]  # fmt: skip

    monkeypatch.setattr(tokenizer, "_tok", ShortOverflow())
    with pytest.raises(RuntimeError, match=rf"tokenizers {re.escape(tokenizers.__version__)} cuts .* short"):
        tokenizer._check_windows()
    monkeypatch.setattr(tokenizer, "_tok", real)
    tokenizer._check_windows()  # the installed one is fine


def model_string(intercept: float, **weights: float) -> str:
    """A reader_abstain_model string: the intercept, then the named feature weights (others 0)."""
    names = ["score", "vs_window", "vs_min", "margin", "dense", "bm25", "known", "cap", "rank", "passage", "follow_up"]
    assert set(weights) <= set(names)
    return ",".join(str(x) for x in [intercept, *(weights.get(n, 0.0) for n in names)])


SURE = model_string(9.0)  # confidence ~1 whatever the features
NEVER = model_string(-9.0)  # confidence ~0


# ---------------------------------------------------------------- best_spans


def brute_force(start, end, mask, max_len):
    n = len(start)
    return sorted(
        (
            (float(start[s] + end[e]), s, e)
            for s in range(n)
            for e in range(s, min(n, s + max_len))
            if mask[s] and mask[e]
        ),
        key=lambda t: -t[0],
    )


def spans_of(impl: str):
    """best_spans (torch tensors) or best_spans_np (numpy arrays), called alike with torch tensors."""
    if impl == "torch":
        return rm.best_spans
    return lambda start, end, mask, *a, **k: rm.best_spans_np(start.numpy(), end.numpy(), mask.numpy(), *a, **k)


IMPLS = ["torch", "numpy"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_spans_are_valid_and_best_first(seed, impl):
    g = torch.Generator().manual_seed(seed)
    n, max_len = 24, 5
    start, end = torch.randn(n, generator=g), torch.randn(n, generator=g)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[4:20] = True
    mask[11] = False  # a hole: never a start or an end
    got = spans_of(impl)(start, end, mask, max_len, top=12)
    assert len(got) == 12
    for score, s, e in got:
        assert s <= e and e - s < max_len
        assert mask[s] and mask[e]
        assert score == pytest.approx(float(start[s] + end[e]))
    scores = [x[0] for x in got]
    assert scores == sorted(scores, reverse=True)
    want = brute_force(start, end, mask, max_len)
    assert scores == pytest.approx([x[0] for x in want[:12]])
    assert got[0][1:] == want[0][1:]


@pytest.mark.parametrize("impl", IMPLS)
def test_best_spans_top_larger_than_possible(impl):
    best_spans = spans_of(impl)
    start = torch.tensor([9.0, 1.0, 2.0, 3.0, 9.0])
    end = torch.tensor([9.0, 3.0, 2.0, 1.0, 9.0])
    mask = torch.tensor([False, True, True, False, False])  # tokens 1 and 2: spans (1,1), (1,2), (2,2)
    got = best_spans(start, end, mask, max_answer_tokens=30, top=50)
    assert sorted((s, e) for _, s, e in got) == [(1, 1), (1, 2), (2, 2)]
    assert got[0][1:] == (1, 1) and got[0][0] == pytest.approx(4.0)
    one_token = best_spans(start, end, mask, max_answer_tokens=1, top=50)
    assert sorted((s, e) for _, s, e in one_token) == [(1, 1), (2, 2)]
    assert best_spans(start, end, torch.zeros(5, dtype=torch.bool), 30, top=3) == []
    assert best_spans(start, end, mask, 30, top=1) == [(pytest.approx(4.0), 1, 1)]


# ---------------------------------------------------------------- SpanReader._read with a pointing fake network


class PointingNetwork:
    """Scores high a start at ``first`` token ids and an end at ``last`` token ids (passage tokens
    only); the no-answer score of every window is -2. Takes and gives numpy arrays (the
    ``SpanReader`` backends' run function)."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.calls = 0

    def __call__(self, ids, mask, types):
        self.calls += 1
        ids, mask, types = np.asarray(ids), np.asarray(mask), np.asarray(types)
        start = np.full(ids.shape, -5.0, dtype=np.float32)
        end = np.full(ids.shape, -5.0, dtype=np.float32)
        passage = (types == 1) & (mask == 1)
        start[(ids == self.first) & passage] = 5.0
        end[(ids == self.last) & passage] = 5.0
        start[:, 0] = end[:, 0] = -1.0
        return start, end


def passage_at(file_text: str, start: int, end: int, source: str = "a.txt", **kw) -> Passage:
    return Passage(file_text[start:end], kw.pop("score", 1.0), source, "A title", "2024-01-31", start, end, **kw)


def pointing_reader(tokenizer, word: str, config: rm.WindowConfig | None = None) -> SpanReader:
    pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
    reader = SpanReader()
    reader._tokenizer = tokenizer
    reader._run = PointingNetwork(pieces[0], pieces[-1])  # set: load() keeps it and loads nothing
    if config:
        reader.config = config
    return reader


def test_span_reader_maps_tokens_to_file_offsets(tokenizer):
    file_text = "x" * 500 + "  In the series, Christopher Walken plays Burt. The rest is filler text. " + "y" * 50
    a = file_text.index("In the series")
    p = passage_at(file_text, a, file_text.index("y" * 50))
    reader = pointing_reader(tokenizer, "Walken")
    reading = reader.read("Who plays Burt?", [p])
    assert reader._run.calls == 1, "the fake network answered, not a loaded one"
    assert reading.spans, "the pointed-at span was not found"
    g = reading.spans[0]
    assert (g.text, g.rank) == ("Walken", 0)
    assert file_text[g.start : g.end] == "Walken"
    assert g.no_answer == pytest.approx(-2.0) and reading.no_answer == [pytest.approx(-2.0)]
    assert g.score == pytest.approx(10.0)
    assert all(file_text[x.start : x.end] == x.text == x.text.strip() for x in reading.spans)
    assert [x.score for x in reading.spans] == sorted((x.score for x in reading.spans), reverse=True)
    assert len(reading.spans) <= 5


def test_span_reader_ranks_passages_and_drops_duplicates(tokenizer):
    file_text = "Adam Scott plays Mark. " * 3 + "Later, Christopher Walken plays Burt in the show. "
    first = passage_at(file_text, 0, 23)
    second = passage_at(file_text, 69, len(file_text))
    reader = pointing_reader(tokenizer, "Walken", rm.WindowConfig(max_length=16, stride=6))
    reading = reader.read("Who plays Burt?", [first, second, second])
    keys = [(g.rank, g.start, g.end) for g in reading.spans]
    assert len({(s, e) for _, s, e in keys}) == len(keys), "a span of the same passage twice"
    best = reading.spans[0]
    assert best.rank == 1 and best.text == "Walken" and file_text[best.start : best.end] == "Walken"
    assert len(reading.no_answer) == 3
    assert reader.read("Who?", []) == Reading([], [])


def test_plain_typography_writes_news_typography_as_the_training_text_same_length():
    news = "Scott -- who plays Mark -- said \u201cit\u2019s back\u201d; \u2018Irving\u2019 ---- 5\u2032 \u201eja\u201f"
    plain = rm.plain_typography(news)
    assert len(plain) == len(news)
    assert plain == "Scott \u2014  who plays Mark \u2014  said \"it's back\"; 'Irving' \u2014 \u2014  5' \"ja\""
    text = 'Plain text: it\'s "quoted" \u2014 and a-b, 1990\u20131995.'
    assert rm.plain_typography(text) == text


def test_windows_read_news_typography_as_training_text_at_the_texts_own_offsets(tokenizer):
    """The network reads "--" and curly quotes as SQuAD writes them, while every offset still points
    into the passage as it is, so the span's text is taken verbatim from the file."""
    news = "In a photo, Scott -- who plays \u201cMark\u201d -- is seen running. He\u2019s back."
    plain = 'In a photo, Scott \u2014 who plays "Mark" \u2014 is seen running. He\'s back.'
    config = rm.WindowConfig()
    a = rm.encode_windows(tokenizer, ["Who does Scott\u2019s character play?"], [news], config)
    b = rm.encode_windows(tokenizer, ["Who does Scott's character play?"], [plain], config)
    assert a["input_ids"] == b["input_ids"]
    file_text = "z" * 40 + news
    p = passage_at(file_text, 40, len(file_text))
    reading = pointing_reader(tokenizer, "Mark").read("Who does Scott play?", [p])
    g = reading.spans[0]
    assert g.text == "Mark" and file_text[g.start : g.end] == "Mark"
    assert all(file_text[x.start : x.end] == x.text for x in reading.spans)


@pytest.mark.parametrize(
    "lengths, workers",
    [([192, 192, 80, 150, 192, 60, 190], 2), ([10], 2), ([5, 5, 5], 1), ([7, 3, 9, 1, 4], 3), ([], 2)],
)
def test_share_out_gives_every_window_once_in_balanced_shares(lengths, workers):
    shares = share_out(lengths, workers)
    assert sorted(i for s in shares for i in s) == list(range(len(lengths)))
    assert len(shares) <= workers and all(shares)
    loads = [sum(lengths[i] for i in s) for s in shares]
    if loads:
        # longest-first to the least loaded: no share exceeds another by more than one window
        assert max(loads) - min(loads) <= max(lengths)


def test_windows_read_one_by_one_on_threads_equal_one_padded_batch(tokenizer):
    """The onnx path runs each window alone (no padding), shared out over threads; what it finds
    must be what one padded batch finds, in the same order."""
    from concurrent.futures import ThreadPoolExecutor

    file_text = ("Filler words about the office and its halls. " * 9) + "Later, Christopher Walken plays Burt. "
    passages = [
        passage_at(file_text, 0, 200),
        passage_at(file_text, 150, len(file_text)),
        passage_at(file_text, 40, 90),
    ]
    config = rm.WindowConfig(max_length=40, stride=12)
    padded = pointing_reader(tokenizer, "Walken", config)
    padded.loaded_backend = "torch"
    want = padded.read("Who plays Burt?", passages)
    assert want.spans and want.spans[0].text == "Walken"
    for threads in (1, 2, 3):
        each = pointing_reader(tokenizer, "Walken", config)
        each.loaded_backend, each.threads = "onnx", threads
        each._pool = ThreadPoolExecutor(threads - 1) if threads > 1 else None
        got = each.read("Who plays Burt?", passages)
        assert got == want, f"{threads} threads read differently"
        assert each._run.calls > padded._run.calls == 1, "windows were not run one by one"
        if each._pool:
            each._pool.shutdown()


# ---------------------------------------------------------------- the quote around a span

HEADER = " date 2024-01-31 Scott is back.\n\n"
S1 = "Adam Scott plays Mark in the Apple TV+ series."
S2 = "He captioned the post on Jan. 29 with a line about the office."
S3 = "The show films in New York and in Kingston."
LONG_WORDS = " ".join(f"word{i}" for i in range(60))
S4 = f"A long sentence about Ben Stiller with {LONG_WORDS} and more."
RUN = "z" * (lexical.MAX_WORD_CHARS + 1)
S5 = f"A sentence with a hostile run {RUN} near Patricia Arquette."
FILE = HEADER + " ".join([S1, S2, S3, S4, S5]) + "\n"
PASSAGE_START = len(HEADER)
PASSAGE = passage_at(FILE, PASSAGE_START, len(FILE) - 1, dense_score=0.6, bm25_score=4.0, chunk_id=0)


def sentence(s: str) -> Span:
    at = FILE.index(s)
    return Span(at, at + len(s))


SENTENCES = [sentence(s) for s in (S1, S2, S3, S4, S5)]


def guess(text: str, within: str | None = None, score: float = 5.0, no_answer: float = 0.0, rank: int = 0):
    at = FILE.index(text, FILE.index(within) if within else 0)
    return SpanGuess(rank, at, at + len(text), text, score, no_answer)


def quoted(span: Span | None) -> str:
    assert span is not None
    return FILE[span.start : span.end]


def test_quote_is_the_sentence_holding_the_span():
    assert quoted(quote_around(PASSAGE, SENTENCES, guess("New York"), 400)) == S3
    assert quoted(quote_around(PASSAGE, SENTENCES, guess("Adam Scott"), 400)) == S1


def test_quote_takes_the_sentence_before_when_the_subject_is_a_pronoun():
    q = quote_around(PASSAGE, SENTENCES, guess("Jan. 29"), 400)
    assert quoted(q) == f"{S1} {S2}"
    # not when the two would not fit: the span's own sentence alone
    assert quoted(quote_around(PASSAGE, SENTENCES, guess("Jan. 29"), len(S2) + 5)) == S2


def quote_in(sentences: list[str], span_text: str, within: str, who: bool = False, max_chars: int = 400) -> str:
    """The quote ``quote_around`` makes for ``span_text`` (its first place in sentence ``within``)
    in a one-passage file of these sentences."""
    text = HEADER + " ".join(sentences) + "\n"
    p = passage_at(text, len(HEADER), len(text) - 1, dense_score=0.6, bm25_score=4.0, chunk_id=0)
    spans = [Span(text.index(s), text.index(s) + len(s)) for s in sentences]
    at = text.index(span_text, text.index(within))
    q = quote_around(p, spans, SpanGuess(0, at, at + len(span_text), span_text, 5.0, 0.0), max_chars, who)
    assert q is not None
    return text[q.start : q.end]


def test_quote_takes_the_sentence_before_when_the_span_names_someone_by_surname_only():
    a = "The show stars Community alum Donald Glover and PEN15 star Maya Erskine in a remake."
    b = "In the series, Glover, 40, and Erskine, 36, play strangers at a spy agency."
    c = "Filming with Maya Erskine, Glover's co-star, ended in May."

    def read(span_text: str, within: str, who: bool = True) -> str:
        return quote_in([a, b, c], span_text, within, who)

    # a surname alone, its full name in the sentence before: both sentences, so the quote names them
    assert read("Glover, 40, and Erskine", b) == f"{a} {b}"
    assert read("Erskine", b) == f"{a} {b}"
    # only when the question asks for someone (a capitalised word is often a place or a thing)
    assert read("Erskine", b, who=False) == b
    # a span that names nobody, or a name given in full in its own sentence: the sentence alone
    assert read("strangers", b) == b
    assert read("Maya Erskine", c) == c
    assert read("Glover's", c) == c
    # titles, bodies and acronyms are not surnames: "the Assembly", "CAF", "Orthodox Christians"
    first = "The Federal Assembly and the Eastern Orthodox Church met the Canadian CAF."
    second = "The Assembly and Orthodox Christians vote with members of CAF."
    for name in ("Assembly", "CAF", "Orthodox"):
        assert quote_in([first, second], name, second, who=True) == second, name
    # and not when the two would not fit
    assert quote_in([a, b, c], "Erskine", b, who=True, max_chars=len(b) + 5) == b


def test_quote_takes_the_sentence_before_when_an_age_follows_a_description():
    a = "Series star John Turturro is teasing the new season."
    b = "Talking at a premiere on Wednesday, the actor, 66, said that they are still hard at work."
    c = "Filming began in 2021, 66 days late, the crew said."
    assert quote_in([a, b, c], "66", b) == f"{a} {b}"
    # not for another span of that sentence, nor for a number after no description
    assert quote_in([a, b, c], "Wednesday", b) == b
    assert quote_in([a, b, c], "66", c) == c


def test_asks_who():
    assert asks_who("Who are the stars of the series?") and asks_who("Whose idea was it?")
    assert asks_who("Which actor plays Mark?")
    assert not asks_who("Where is the show filmed?") and not asks_who("How old is the actor?")


def test_quote_spanning_two_sentences_holds_both():
    g = guess("Mark in the Apple TV+ series. He captioned")
    q = quote_around(PASSAGE, SENTENCES, g, 400)
    assert q is not None and q.start <= g.start and g.end <= q.end
    assert S1 in quoted(q) and S2 in quoted(q)


def test_long_sentence_is_cut_to_whole_words_around_the_span():
    max_chars = 80
    g = guess("word30")
    q = quote_around(PASSAGE, SENTENCES, g, max_chars)
    assert q is not None
    text = quoted(q)
    assert len(text) <= max_chars
    assert q.start <= g.start and g.end <= q.end
    s4 = sentence(S4)
    assert s4.start <= q.start and q.end <= s4.end
    # whole words: nothing cut in the middle of a word
    assert q.start == s4.start or FILE[q.start - 1].isspace()
    assert q.end == s4.end or FILE[q.end].isspace()
    # as long as it can be: one more word on either side would not fit
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", FILE[s4.start : s4.end])]
    words = [(s + s4.start, e + s4.start) for s, e in words]
    i = next(k for k, w in enumerate(words) if w[0] == q.start)
    j = next(k for k, w in enumerate(words) if w[1] == q.end)
    assert i == 0 or words[j][1] - words[i - 1][0] > max_chars
    assert j == len(words) - 1 or words[j + 1][1] - words[i][0] > max_chars


def test_fit_around_keeps_a_short_quote_and_falls_back_to_the_span():
    s1 = sentence(S1)
    g = guess("Mark")
    assert _fit_around(PASSAGE, s1, g, 400) == s1
    # a span longer than max_chars: the span itself
    g = guess(S4[:60])
    assert _fit_around(PASSAGE, sentence(S4), g, 30) == Span(g.start, g.end)


def test_quote_holding_an_overlong_run_is_refused():
    assert quote_around(PASSAGE, SENTENCES, guess("Patricia Arquette"), 400) is None
    # a run of exactly MAX_WORD_CHARS is quotable
    file_text = "Intro. " + "A run " + "q" * lexical.MAX_WORD_CHARS + " near Patricia Arquette."
    at = file_text.index("A run")
    p = passage_at(file_text, 0, len(file_text))
    g = SpanGuess(0, file_text.index("Patricia"), len(file_text) - 1, "Patricia Arquette", 5.0, 0.0)
    q = quote_around(p, [Span(0, 6), Span(at, len(file_text))], g, 400)
    assert q == Span(at, len(file_text))


# ---------------------------------------------------------------- answer_from_reading


def read(reading: Reading, settings: Settings, passages=(PASSAGE,), known=1.0, cap=0.0):
    return answer_from_reading(reading, list(passages), lambda p: SENTENCES, "the query", settings, known, cap)


def check_answer(answer: Answer, file_text: str = FILE) -> None:
    assert not answer.abstained and answer.reader == "trained"
    span = answer.span
    assert span is not None and file_text[span.start : span.end] == span.text
    assert len(answer.citations) == 1
    c = answer.citations[0]
    assert file_text[c.start : c.end] == c.quote
    assert c.source == span.source and c.start <= span.start and span.end <= c.end
    assert answer.text == f"{c.quote} [1]"
    assert not answer.message


def test_answer_is_the_quote_around_the_span():
    g = guess("New York")
    answer, feats = read(Reading([g], [0.0]), Settings(reader_abstain_model=SURE))
    check_answer(answer)
    assert answer.span == AnswerSpan("New York", "a.txt", g.start, g.end)
    assert answer.citations[0].quote == S3
    assert answer.citations[0].title == "A title" and answer.citations[0].date == "2024-01-31"
    assert answer.confidence > 0.99 and len(feats) == ABSTAIN_FEATURES
    assert answer.query == "the query" and answer.passages == [PASSAGE]
    json.dumps(answer.to_dict())


EDGES = HEADER + "Asked who plays Mark -- it is Scott --, she said: Jan. 29, the U.S. date.\n"


@pytest.mark.parametrize(
    ("network", "short"),
    [
        ("-- it is Scott --,", "it is Scott"),
        ("Mark --", "Mark"),
        (": Jan. 29,", "Jan. 29"),
        ("U.S.", "U.S."),  # a full stop is kept: it may be part of the answer
        ("plays Mark", "plays Mark"),
        ("--", "--"),  # nothing would be left: the guess as it is
    ],
)
def test_the_short_answer_loses_dashes_commas_and_colons_at_its_edges(network, short):
    """The network's "Scott --" is shown as "Scott": Answer.span drops dashes, commas, colons and
    semicolons at its edges and is still the file's text at its offsets."""
    p = passage_at(EDGES, len(HEADER), len(EDGES) - 1, dense_score=0.6, bm25_score=4.0, chunk_id=0)
    at = EDGES.index(network)
    g = SpanGuess(0, at, at + len(network), network, 5.0, 0.0)
    sents = [Span(len(HEADER), len(EDGES) - 1)]
    answer, _ = answer_from_reading(
        Reading([g], [0.0]), [p], lambda _: sents, "q", Settings(reader_abstain_model=SURE), 1, 0
    )
    assert answer.span.text == short and EDGES[answer.span.start : answer.span.end] == short
    assert answer.citations[0].start <= answer.span.start and answer.span.end <= answer.citations[0].end


@pytest.mark.parametrize("margin, answered", [(3.0, True), (-3.0, False)])
def test_confidence_decides_between_answer_and_abstention(margin, answered):
    settings = Settings(reader_abstain_model=model_string(0.0, vs_window=1.0), reader_abstain_threshold=0.5)
    g = guess("New York", score=2.0, no_answer=2.0 - margin)
    answer, feats = read(Reading([g], [2.0 - margin]), settings)
    assert feats[1] == pytest.approx(margin)
    assert answer.confidence == pytest.approx(1 / (1 + math.exp(-margin)), abs=1e-4)
    if answered:
        check_answer(answer)
    else:
        assert answer.abstained and answer.span is None and answer.citations == [] and answer.text == ""
        assert answer.message == ABSTAIN_MESSAGE and answer.reader == "trained"
        assert answer.passages == [PASSAGE], "the closest passages are kept for the refusal"


def test_abstains_under_the_threshold():
    answer, _ = read(Reading([guess("New York")], [0.0]), Settings(reader_abstain_model=NEVER))
    assert answer.abstained and answer.span is None and not answer.citations and answer.message
    assert answer.confidence < 0.01
    # the same reading answers once the threshold is low enough
    answer, _ = read(
        Reading([guess("New York")], [0.0]), Settings(reader_abstain_model=NEVER, reader_abstain_threshold=0.0)
    )
    check_answer(answer)


def test_unquotable_first_guess_is_skipped_for_the_next():
    bad = guess("Patricia Arquette", score=9.0)
    good = guess("Kingston", score=4.0, no_answer=1.0)
    answer, feats = read(Reading([bad, good], [1.0]), Settings(reader_abstain_model=SURE))
    check_answer(answer)
    assert answer.span.text == "Kingston" and answer.citations[0].quote == S3
    assert feats[0] == pytest.approx(4.0), "the confidence is judged on the guess that was used"
    # nothing quotable at all: a refusal
    answer, feats = read(Reading([bad], [1.0]), Settings(reader_abstain_model=SURE))
    assert answer.abstained and answer.span is None and feats == []
    answer, _ = read(Reading([], []), Settings(reader_abstain_model=SURE))
    assert answer.abstained and answer.span is None


def check_quotes(answer: Answer, file_text: str = FILE) -> list[str]:
    """Every citation verbatim, the text made of them in order, the span inside the first; the quotes."""
    assert not answer.abstained and answer.span is not None
    for c in answer.citations:
        assert file_text[c.start : c.end] == c.quote
    assert answer.text == " ".join(f"{c.quote} [{c.number}]" for c in answer.citations)
    first = answer.citations[0]
    assert first.start <= answer.span.start and answer.span.end <= first.end
    return [c.quote for c in answer.citations]


def test_a_close_runner_up_sentence_is_quoted_second():
    new_york, adam = guess("New York", score=6.0), guess("Adam Scott", score=7.0)
    close = Reading([new_york, adam], [0.0], choice=[2.0, 1.2])
    sure = Settings(reader_abstain_model=SURE, reader_second_margin=1.0)
    answer, _ = read(close, sure)
    assert check_quotes(answer) == [S3, S1], "the chosen sentence first, then the runner-up"
    assert answer.span.text == "New York"
    # further than the margin, with the margin switched off, or in the network's own order: one quote
    far = Reading([new_york, adam], [0.0], choice=[2.0, 0.9])
    assert check_quotes(read(far, sure)[0]) == [S3]
    assert check_quotes(read(close, sure.replace(reader_second_margin=0.0))[0]) == [S3]
    assert check_quotes(read(Reading([new_york, adam], [0.0]), sure)[0]) == [S3]
    # two quotes that together pass answer_max_chars: the chosen one alone
    assert check_quotes(read(close, sure.replace(answer_max_chars=len(S3) + len(S1) - 1))[0]) == [S3]


def test_runner_up_next_to_the_chosen_quote_joins_it():
    # S2 names its subject by a pronoun, so its quote starts at S1: S1 + S2, then S3 right after it
    captioned, new_york = guess("Jan. 29", score=6.0), guess("New York", score=5.0)
    reading = Reading([captioned, new_york], [0.0], choice=[1.0, 0.5])
    answer, _ = read(reading, Settings(reader_abstain_model=SURE))
    assert check_quotes(answer) == [f"{S1} {S2} {S3}"] and answer.span.text == "Jan. 29"
    # overlapping quotes (S1 + S2, and S1) are one quote too
    adam = guess("Adam Scott", score=5.0)
    answer, _ = read(Reading([captioned, adam], [0.0], choice=[1.0, 0.5]), Settings(reader_abstain_model=SURE))
    assert check_quotes(answer) == [f"{S1} {S2}"]
    # a runner-up whose quote repeats the chosen one's is not a second quote: the next one is
    same = guess("Mark", score=4.0)
    answer, _ = read(
        Reading([adam, same, new_york], [0.0], choice=[1.0, 1.0, 0.5]), Settings(reader_abstain_model=SURE)
    )
    assert check_quotes(answer) == [S1, S3]


def test_quotes_of_one_article_from_two_passages():
    first = passage_at(FILE, PASSAGE_START, FILE.index(S3) + len(S3), chunk_id=0)  # S1 S2 S3
    second = passage_at(FILE, FILE.index(S3), len(FILE) - 1, chunk_id=1)  # S3 S4 S5 (one sentence shared)
    new_york = guess("New York", score=6.0, rank=0)
    in_s4 = guess("Ben Stiller", score=5.0, rank=1)
    settings = Settings(reader_abstain_model=SURE, answer_max_chars=2000)
    answer, _ = read(Reading([new_york, in_s4], [0.0], choice=[1.0, 0.5]), settings, passages=(first, second))
    # S3 and S4 are next to each other, and the second passage holds both: one quote from it
    assert check_quotes(answer) == [f"{S3} {S4}"] and answer.citations[0].start == FILE.index(S3)
    # the same runner-up in another article's passage: two citations
    other = passage_at(FILE, FILE.index(S3), len(FILE) - 1, source="b.txt", chunk_id=2)
    answer, _ = read(Reading([new_york, in_s4], [0.0], choice=[1.0, 0.5]), settings, passages=(first, other))
    assert check_quotes(answer) == [S3, S4] and [c.source for c in answer.citations] == ["a.txt", "b.txt"]


def test_rank_order_records_each_guess_sentence_score():
    kingston, new_york = guess("Kingston", score=5.0), guess("New York", score=7.0)
    adam = guess("Adam Scott", score=9.0)
    order = rank_order(Reading([adam, new_york, kingston], [0.0]), [PASSAGE], [FEATS], rank_model(coverage=10.0))
    assert order.spans == [new_york, kingston, adam]
    assert order.choice == pytest.approx([6.0, 6.0, 2.0]), "coverage 0.6 for S3's guesses, 0.2 for S1's"


def test_abstain_features_in_settings_order():
    other = passage_at(FILE, PASSAGE_START, PASSAGE_START + 10, score=2.5, dense_score=0.9, bm25_score=None)
    g = guess("Kingston", score=6.0, no_answer=2.0, rank=1)
    runner = guess("New York", score=4.5)
    same_text = SpanGuess(0, 0, 8, "Kingston", 5.5, 0.0)  # the same words elsewhere: not a runner-up
    reading = Reading([g, same_text, runner], [1.0, 3.0])
    feats = abstain_features(reading, g, [other, PASSAGE], known=0.75, cap_unknown=0.25)
    assert len(feats) == ABSTAIN_FEATURES == READER_ABSTAIN_FEATURES
    assert feats == pytest.approx([6.0, 4.0, 5.0, 1.5, 0.9, math.log1p(4.0), 0.75, 0.25, 0.5, 2.5, 0.0])
    assert abstain_features(reading, g, [other, PASSAGE], 0.75, 0.25, follow_up=True)[-1] == 1.0
    # no runner-up: the margin is capped at 10
    assert abstain_features(Reading([g], [1.0]), g, [PASSAGE], 1.0, 0.0)[3] == pytest.approx(10.0)
    assert len(Settings().reader_abstain_model.split(",")) == ABSTAIN_FEATURES + 1


# ---------------------------------------------------------------- choosing among the guesses

RANK_NAMES = [
    "vs_best", "vs_window", "passage", "rank", "dense", "s_dense", "s_vs_best", "coverage", "typed", "context",
    "focus", "same_text", "words",
]  # fmt: skip


def rank_model(intercept: float = 0.0, **weights: float) -> str:
    """A reader_rank_model string: the intercept, then the named feature weights (others 0)."""
    assert set(weights) <= set(RANK_NAMES)
    return ",".join(str(x) for x in [intercept, *(weights.get(n, 0.0) for n in RANK_NAMES)])


def sentence_feats(text: str, dense: float, coverage: float = 0.0, typed: float = 0.0, focus: float = 0.0):
    return SentenceFeatures(sentence(text), text, dense, coverage, 0.25, typed, True, focus, coverage)


FEATS = [sentence_feats(S1, 0.5, 0.2), sentence_feats(S2, 0.1), sentence_feats(S3, 0.7, 0.6, 1.0, 1.0)]


def test_rank_features_in_settings_order():
    other = passage_at(FILE, PASSAGE_START, PASSAGE_START + 10, score=0.4, dense_score=0.9)
    best = guess("New York", score=6.0, no_answer=2.0, rank=1)
    same_text = guess("New York", score=6.0 - math.log(3.0), rank=0)  # the same words in the other passage
    other_text = guess("Adam Scott", score=6.0, rank=1)
    reading = Reading([best, same_text, other_text], [1.0, 2.0])
    rows = rank_features(reading, [other, PASSAGE], [[], FEATS])
    assert len(rows) == 3 and all(len(r) == RANK_FEATURES == READER_RANK_FEATURES for r in rows)
    # weight 1 (best) + 1/3 (same text) of 1 + 1/3 + 1 in all
    same = math.log((4 / 3) / (7 / 3))
    assert rows[0] == pytest.approx([0.0, 4.0, 0.0, 0.5, 0.6, 0.7, 0.0, 0.6, 1.0, 0.25, 1.0, same, 0.2])
    # a passage without sentence features: the picker's view of it counts zero
    assert rows[1] == pytest.approx([-math.log(3.0), 6.0 - math.log(3.0), -0.6, 0.0, 0.9, 0, 0, 0, 0, 0, 0, same, 0.2])
    assert rows[2][5:8] == pytest.approx([0.5, -0.2, 0.2]) and rows[2][11] == pytest.approx(math.log(1 / (7 / 3)))
    assert rank_features(Reading([], []), [PASSAGE], [FEATS]) == []


def test_rank_order_chooses_the_sentence_by_the_model_and_the_words_by_the_network():
    kingston = guess("Kingston", score=5.0)
    new_york = guess("New York", score=7.0)  # the same sentence (S3): the network's choice inside it
    the_show = guess("The show films in New York", score=2.0)
    adam = guess("Adam Scott", score=9.0)  # the best span score, in a sentence the model ranks lower
    reading = Reading([adam, new_york, kingston, the_show], [0.0])
    # the model likes long spans in covered sentences: S3's longest span has its best rank score, yet
    # the sentence's words are the network's best ones there
    model = rank_model(coverage=10.0, words=1.0)
    order = rank_order(reading, [PASSAGE], [FEATS], model)
    assert order.spans == [new_york, kingston, the_show, adam] and order.no_answer == [0.0]
    # a model weighing the span score alone keeps the network's order
    assert rank_order(reading, [PASSAGE], [FEATS], rank_model(vs_best=1.0)).spans == [
        adam,
        new_york,
        kingston,
        the_show,
    ]
    # a guess in no known sentence is its own group
    assert rank_order(Reading([adam], [0.0]), [PASSAGE], [[]], model).spans == [adam]


def test_trained_reader_orders_by_the_rank_model_when_set(monkeypatch):
    near = passage_at(FILE, PASSAGE_START, len(FILE) - 1, score=1.0, chunk_id=0)
    far = passage_at(FILE, PASSAGE_START, len(FILE) - 1, score=0.5, chunk_id=1, source="b.txt")
    good = guess("New York", score=4.0, rank=0)
    best = guess("Adam Scott", score=6.0, rank=1)
    reading = Reading([best, good], [0.0, 0.0])
    hits = Hits([near, far], np.zeros(3), [], {0: FEATS, 1: FEATS})
    by_weight = TrainedReader(Settings(reader_rank_model="", reader_w_passage=6.0), spans=object())
    assert by_weight.order(reading, hits, None, "q").spans == [good, best]  # 6 - 6 * 0.5 < 4
    unweighted = TrainedReader(Settings(reader_rank_model="", reader_w_passage=0.0), spans=object())
    assert unweighted.order(reading, hits, None, "q").spans == [best, good]
    by_model = TrainedReader(Settings(reader_rank_model=rank_model(vs_best=1.0)), spans=object())
    assert by_model.order(reading, hits, None, "q").spans == [best, good]
    by_coverage = TrainedReader(Settings(reader_rank_model=rank_model(coverage=1.0)), spans=object())
    assert by_coverage.order(reading, hits, None, "q").spans == [good, best]  # S3 covers 0.6, S1 0.2


# ---------------------------------------------------------------- the trained reader inside an Engine (fake network)

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_NAME = re.compile(r"[A-Z][\w’'+-]*(?:\s+[A-Z][\w’'+-]*)*")


class FakeSpanReader:
    """Points at the first capitalised word run (not the sentence's first word) of the passage
    sentence sharing most words with the question. ``shift`` moves the offsets (not the text)
    for the first ``shift_calls`` calls: a span that is not the file's text."""

    def __init__(self, shift: int = 0, shift_calls: int = 10**9) -> None:
        self.shift, self.shift_calls = shift, shift_calls
        self.calls = 0
        self.last: SpanGuess | None = None
        self.top: int | None = None  # how many guesses the last call asked for

    def load(self) -> None:
        pass

    def read(self, question: str, passages, top: int = 5) -> Reading:
        self.calls += 1
        self.top = top
        shift = self.shift if self.calls <= self.shift_calls else 0
        asked = set(re.findall(r"\w+", question.lower()))
        found = []
        for rank, p in enumerate(passages):
            for m in _SENTENCE.finditer(p.text):
                text = m.group()
                lead = len(text) - len(text.lstrip())
                names = [n for n in _NAME.finditer(text) if n.start() > lead]
                if not names:
                    continue
                overlap = len(asked & set(re.findall(r"\w+", text.lower())))
                n = names[0]
                start = p.start + m.start() + n.start()
                found.append(
                    (
                        overlap,
                        -rank,
                        SpanGuess(rank, start + shift, start + len(n.group()) + shift, n.group(), 3.0 + overlap, 0.0),
                    )
                )
        found.sort(key=lambda t: (-t[0], -t[1]))
        spans = [t[2] for t in found[:top]]
        self.last = spans[0] if spans else None
        return Reading(spans, [0.0] * len(passages))


@pytest.fixture
def trained_engine(make_engine, seed_corpus):
    engine = make_engine(seed_corpus, reader="trained", reader_abstain_model=SURE)
    fake = FakeSpanReader()
    engine.reader("trained").spans = fake
    return engine, fake


def corpus_text(engine, source: str) -> str:
    return (engine.settings.corpus_path / source).read_text(encoding="utf-8")


QUESTIONS = ["Who plays Irving in Severance?", "Who directed Severance?", "Who plays Mark?"]


def test_a_follow_up_read_with_its_rewrite_is_flagged_to_the_confidence_model(make_engine, seed_corpus):
    """The confidence model's last signal is 1 for a question read with its rewrite from the
    history, 0 otherwise; with a weight on it, the same reading gets another confidence."""
    from qa.retrieval import search

    flagged = model_string(-1.0, follow_up=3.0)
    engine = make_engine(seed_corpus, reader="trained", reader_abstain_model=flagged, reader_abstain_threshold=-1.0)
    reader = engine.reader("trained")
    reader.spans = FakeSpanReader()
    history = [{"role": "user", "content": "Who plays Irving?"}, {"role": "assistant", "content": "John Turturro [1]"}]
    asked = "How old is he?"
    query = answering.rewrite_query(asked, history, engine.settings.history_turns)
    assert query != asked
    hits = search(engine.index, engine.embedder, engine.settings, asked, 5, also=(query,))
    follow, f_feats = reader.read_with_features(asked, hits, engine.index, query)
    alone, a_feats = reader.read_with_features(asked, hits, engine.index, asked)
    assert f_feats[-1] == 1.0 and a_feats[-1] == 0.0
    assert follow.confidence == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-3)
    assert alone.confidence == pytest.approx(1 / (1 + math.exp(1.0)), abs=1e-3)


@pytest.mark.parametrize("question", QUESTIONS)
def test_engine_answers_with_the_trained_reader(trained_engine, question):
    engine, fake = trained_engine
    reader = engine.reader()
    assert reader.name == "trained" and isinstance(reader, Reader)
    answer = engine.answer(question)
    assert answer.reader == "trained" and not answer.abstained
    assert fake.top == GUESSES, "the rank model chooses among GUESSES guesses, as it was fitted to"
    assert answer.span is not None and fake.last is not None
    assert (answer.span.text, answer.span.start, answer.span.end) == (fake.last.text, fake.last.start, fake.last.end)
    text = corpus_text(engine, answer.span.source)
    assert text[answer.span.start : answer.span.end] == answer.span.text
    for c in answer.citations:
        assert corpus_text(engine, c.source)[c.start : c.end] == c.quote
        assert f"{c.quote} [{c.number}]" in answer.text
    assert any(
        c.source == answer.span.source and c.start <= answer.span.start <= answer.span.end <= c.end
        for c in answer.citations
    )
    d = answer.to_dict()
    assert d["reader"] == "trained"
    assert d["span"] == {
        "text": answer.span.text,
        "source": answer.span.source,
        "start": answer.span.start,
        "end": answer.span.end,
    }
    json.dumps(d)


def test_picker_and_trained_reader_share_an_engine(trained_engine):
    engine, fake = trained_engine
    picked = engine.answer("Who plays Irving in Severance?", reader="picker")
    assert picked.reader == "picker" and picked.span is None
    assert fake.calls == 0, "the picker does not run the span reader"
    trained = engine.answer("Who plays Irving in Severance?", reader="trained")
    assert trained.reader == "trained" and trained.span is not None and fake.calls == 1
    assert engine.reader("picker") is engine.reader("picker")


def test_engine_refuses_with_the_trained_reader_when_unsure(make_engine, seed_corpus):
    engine = make_engine(seed_corpus, reader="trained", reader_abstain_model=NEVER)
    engine.reader("trained").spans = FakeSpanReader()
    answer = engine.answer("Who plays Irving in Severance?")
    assert answer.abstained and answer.span is None and answer.citations == [] and answer.reader == "trained"
    assert answer.passages, "the closest passages are listed"
    assert answer.to_dict()["span"] is None


def test_a_span_that_is_not_the_file_text_is_caught(trained_engine):
    engine, _ = trained_engine
    fake = FakeSpanReader(shift=1)
    engine.reader("trained").spans = fake
    with pytest.raises(IndexCorruptError, match="does not match the file"):
        engine.answer("Who plays Irving in Severance?")
    assert fake.calls == 2, "the engine rebuilds once and asks again before giving up"


def test_a_span_wrong_once_is_repaired_by_the_rebuild(trained_engine, monkeypatch):
    engine, _ = trained_engine
    engine.build_index()
    builds = []
    build = engine.build_index
    monkeypatch.setattr(engine, "build_index", lambda **kw: builds.append(kw) or build(**kw))
    fake = FakeSpanReader(shift=1, shift_calls=1)
    engine.reader("trained").spans = fake
    answer = engine.answer("Who plays Irving in Severance?")
    assert fake.calls == 2 and builds == [{"force": True}], "rebuilt once before the second try"
    assert corpus_text(engine, answer.span.source)[answer.span.start : answer.span.end] == answer.span.text


# ---------------------------------------------------------------- bad reader names and models


def test_unknown_reader_name_is_an_input_error(trained_engine):
    engine, _ = trained_engine
    with pytest.raises(qa.InputError, match="nope"):
        engine.answer("Who plays Irving?", reader="nope")
    with pytest.raises(InputError, match="nope"):
        engine.reader("nope")


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"reader": "bm25"}, "bm25"),
        ({"reader": ""}, "reader"),
        ({"reader_abstain_model": "1,2,3"}, "1,2,3"),
        ({"reader_abstain_model": "a,b,c,d,e,f,g,h,i,j"}, "a,b,c"),
        ({"reader_abstain_model": "nan,0,0,0,0,0,0,0,0,0,0,0"}, "nan"),
        ({"reader_abstain_model": ",".join(["0"] * 13)}, "reader_abstain_model"),  # one too many
        ({"reader_abstain_threshold": float("inf")}, "reader_abstain_threshold"),
        ({"reader_backend": "cuda"}, "cuda"),
        ({"reader_rank_model": "1,2"}, "1,2"),
        ({"reader_rank_model": ",".join(["x"] * 14)}, "x,x"),
        ({"reader_rank_model": ",".join(["inf"] * 14)}, "inf"),
    ],
)
def test_bad_reader_settings_are_input_errors(changes, named):
    with pytest.raises(qa.InputError, match=re.escape(named)) as e:
        Settings(**changes)
    assert next(iter(changes)) in str(e.value)


def test_bad_reader_from_the_environment(monkeypatch):
    monkeypatch.setenv("QA_READER", "bm25")
    with pytest.raises(InputError, match="QA_READER"):
        Settings.from_env()


# ---------------------------------------------------------------- the UI's bold span


def span_answer(quote: str, span_text: str, at: int, source: str = "a.txt", prefix: Citation | None = None) -> Answer:
    c = Citation(2 if prefix else 1, "a.txt", "T", None, 1000, 1000 + len(quote), quote)
    cites = [prefix, c] if prefix else [c]
    text = " ".join(f"{x.quote} [{x.number}]" for x in cites)
    span = AnswerSpan(span_text, source, 1000 + at, 1000 + at + len(span_text))
    return Answer(text=text, citations=cites, confidence=0.9, abstained=False, span=span, reader="trained")


def strong(out: str) -> list[str]:
    return re.findall(r'<strong class="qa-span">(.*?)</strong>', out)


def test_span_is_bold_once_and_escaped():
    quote = "The tag <b>& friends</b> was shown."
    out = ui._answer_text(span_answer(quote, "<b>&", quote.index("<b>&")), "u")
    assert strong(out) == ["&lt;b&gt;&amp;"]
    assert out.count("<strong") == 1 and "<b>" not in out
    before = out.split('<strong class="qa-span">')[0]
    assert html.unescape(re.sub(r"<[^>]+>", "", before)) == "The tag "


def test_span_is_bold_where_it_is_not_where_its_words_first_occur():
    quote = "Irving met Irving again."
    at = quote.rindex("Irving")
    prefix = Citation(1, "b.txt", "T", None, 0, 14, "Irving is kind")
    out = ui._answer_text(span_answer(quote, "Irving", at, prefix=prefix), "u")
    assert strong(out) == ["Irving"]
    before = html.unescape(re.sub(r"<[^>]+>", "", out.split('<strong class="qa-span">')[0]))
    assert before == "Irving is kind [1] Irving met "


@pytest.mark.parametrize(
    "change",
    [
        {"span": None},
        {"span": AnswerSpan("Walken", "a.txt", 1004, 1010)},  # not the text at those offsets
        {"span": AnswerSpan("tag", "other.txt", 1004, 1007)},  # another file
        {"span": AnswerSpan("tag", "a.txt", 4, 7)},  # outside the citation
    ],
)
def test_no_bold_when_the_span_cannot_be_placed(change):
    import dataclasses

    answer = dataclasses.replace(span_answer("The tag was shown.", "tag", 4), **change)
    out = ui._answer_text(answer, "u")
    assert "<strong" not in out
    assert html.unescape(re.sub(r"<[^>]+>", "", out)) == answer.text


def test_render_answer_bolds_the_engine_span(trained_engine):
    engine, _ = trained_engine
    answer = engine.answer("Who plays Irving in Severance?")
    out = ui.render_answer(answer, "Who plays Irving in Severance?", engine, uid="t")
    assert strong(out) == [html.escape(answer.span.text)]
    p = re.search(r'<p class="qa-text">(.*?)</p>', out).group(1)
    before = html.unescape(re.sub(r"<[^>]+>", "", p.split('<strong class="qa-span">')[0]))
    c = answer.citations[0]
    assert before == answer.text[: answer.text.index(c.quote) + answer.span.start - c.start]
    picked = engine.answer("Who plays Irving in Severance?", reader="picker")
    assert "<strong" not in ui.render_answer(picked, "q", engine, uid="t")


# ---------------------------------------------------------------- SQuAD metrics with two readers


def test_squad_em_f1_official_normalization():
    assert evaluation.squad_em_f1("The Eiffel Tower!", ["eiffel tower"]) == (1.0, 1.0)
    assert evaluation.squad_em_f1("an  APPLE, a pear.", ["Apple pear"]) == (1.0, 1.0)
    em, f1 = evaluation.squad_em_f1("John Turturro actor", ["John Turturro"])
    assert em == 0.0 and f1 == pytest.approx(0.8)  # precision 2/3, recall 1
    em, f1 = evaluation.squad_em_f1("Turturro", ["nobody", "John Turturro"])
    assert em == 0.0 and f1 == pytest.approx(2 / 3)  # best over the golds
    assert evaluation.squad_em_f1("Walken", ["John Turturro"]) == (0.0, 0.0)
    assert evaluation.squad_em_f1("", ["Walken"]) == (0.0, 0.0)
    assert evaluation.normalize_squad_official("The  Apple, an Orange!") == "apple orange"


class FakeSquadEngine:
    """Answers SQuAD questions from a table: the trained reader with spans, the picker without."""

    def __init__(self, table: dict[str, tuple[str | None, str | None]]) -> None:
        self.settings = Settings(reader="trained")
        self.index = object()
        self.table = table  # question -> (trained span or None to refuse, picker sentence or None)
        self.calls: list[tuple[str, str]] = []

    def answer(self, question, history=None, k=5, *, reader=None):
        self.calls.append((question, reader))
        span, sentence = self.table.get(question, (None, None))
        passages = [Passage("ctx", 1.0, "a.txt", "A", None, 0, 100)]
        if reader == "trained" and span is not None:
            c = Citation(1, "a.txt", "A", None, 10, 10 + len(span) + 1, span + ".")
            return Answer(
                f"{span}. [1]",
                [c],
                0.9,
                False,
                passages,
                question,
                span=AnswerSpan(span, "a.txt", 10, 10 + len(span)),
                reader="trained",
            )
        if reader == "picker" and sentence is not None:
            c = Citation(1, "a.txt", "A", None, 10, 10 + len(sentence), sentence)
            return Answer(f"{sentence} [1]", [c], 0.9, False, passages, question, reader="picker")
        return Answer("", [], 0.1, True, passages, question, message="no", reader=reader)


def squad_questions():
    q = evaluation.SquadQuestion
    return [
        q("1", "Who directed it?", "a.txt", ("Ben Stiller",), (12,), True, 0),
        q("2", "Who stars?", "a.txt", ("Adam Scott",), (12,), True, 0),
        q("3", "What is tungsten?", "b.txt", ("a metal",), (5,), False, 1),
    ]


TABLE = {
    "Who directed it?": ("Ben Stiller", "It was directed by Ben Stiller."),
    "Who stars?": ("Adam Scott Mark", "Adam Scott stars."),
}


def test_run_squad_scores_two_readers_side_by_side():
    engine = FakeSquadEngine(TABLE)
    m = evaluation.run_squad(engine, squad_questions(), baselines=False, progress=False, readers=["trained", "picker"])
    assert set(m["readers"]) == {"trained", "picker"}
    t, p = m["readers"]["trained"], m["readers"]["picker"]
    assert t["EM"] == pytest.approx(0.5) and t["F1"] == pytest.approx((1.0 + 0.8) / 2)
    assert p["EM"] is None and p["F1"] is None, "the picker gives no spans"
    assert t["abstention_out_of_corpus"] == 1.0 and p["abstention_out_of_corpus"] == 1.0
    assert t["answered_rate"] == 1.0 and p["answer_accuracy"] == 1.0
    assert m["ours"] == {k: v for k, v in t.items() if k != "latency_ms"}
    assert m["latency_ms"] == t["latency_ms"]
    asked = {(q, r) for q, r in engine.calls}
    assert {(q.question, r) for q in squad_questions() for r in ("trained", "picker")} <= asked
    table = evaluation.format_squad_table(m)
    header = table.splitlines()[0]
    assert "trained" in header and "picker" in header
    em_row = next(line for line in table.splitlines() if line.startswith("EM "))
    assert "0.500" in em_row and "—" in em_row
    assert "latency p50 / p95 (trained)" in table and "latency p50 / p95 (picker)" in table


def test_run_squad_ours_is_the_first_reader():
    m = evaluation.run_squad(
        FakeSquadEngine(TABLE), squad_questions(), baselines=False, progress=False, readers=["picker", "trained"]
    )
    assert m["ours"]["EM"] is None and m["readers"]["trained"]["EM"] == pytest.approx(0.5)
    assert list(m["readers"]) == ["picker", "trained"]
    # default: the settings' reader only
    m = evaluation.run_squad(FakeSquadEngine(TABLE), squad_questions(), baselines=False, progress=False)
    assert list(m["readers"]) == ["trained"]


def test_trained_reader_refusing_everything_scores_zero_not_none():
    m = evaluation.run_squad(
        FakeSquadEngine({}), squad_questions(), baselines=False, progress=False, readers=["trained", "picker"]
    )
    assert m["readers"]["trained"]["EM"] == 0.0 and m["readers"]["trained"]["F1"] == 0.0


@pytest.mark.parametrize("value", ["nope", "trained,nope", ","])
def test_eval_unknown_reader_exits_2(tmp_path, monkeypatch, capsys, value):
    from qa import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("qa.engine.get_engine", lambda *a, **k: pytest.fail("the engine must not be made"))
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", "--readers", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--readers" in err and value in err


def test_eval_readers_are_parsed_in_order_without_repeats():
    assert evaluation._readers("picker, trained,picker") == ["picker", "trained"]


# ---------------------------------------------------------------- training data


def make_questions(n_articles: int = 12) -> list[train.Question]:
    return [
        train.Question(f"{a}-{i}", f"Article {a}", "Who?", "Ctx.", ("x",), 0, 1, i)
        for a in range(n_articles)
        for i in range(3)
    ]


def test_calibration_follow_ups_skip_the_bench_fold_and_keep_out_of_corpus_ones():
    """calibrate-reader's follow-ups: in and out of corpus, never of an article of the fold that
    tests/followupbench.py measures on, at most the number asked for, each part one corpus."""
    from qa.evaluation import SquadQuestion
    from qa.reading.calibrate import BENCH_FOLD, FOLLOW_UPS, _fold, _follow_up_parts

    questions = [
        SquadQuestion(f"{a}-{i}", f"What did T{a} do in year {i}?", f"{a:02d}_T{a}.txt", ("x",), (0,), a % 6 != 0, a)
        for a in range(30)
        for i in range(3)
    ]
    engine = object()
    parts = _follow_up_parts("all", [(engine, questions)], 1000, seed=3)
    assert [(name, e) for name, e, _ in parts] == [("all" + FOLLOW_UPS, engine)]
    asked = parts[0][2]
    folds = {_fold(f.question) for f in asked}
    assert BENCH_FOLD not in folds and len(folds) >= 2
    assert {f.question.in_corpus for f in asked} == {True, False}
    assert all(f.asked.startswith("What did it do") and f.first.source == f.question.source for f in asked)
    assert len(_follow_up_parts("all", [(engine, questions)], 5, seed=3)[0][2]) == 5
    assert _follow_up_parts("all", [(engine, questions)], 0, seed=3) == []


def test_calibration_reads_a_follow_up_with_its_rewrite_after_a_first_turn(make_engine, seed_corpus, monkeypatch):
    """A follow-up is read as the chat reads it: the first turn answered, then the pronoun form
    retrieved and read with its rewrite (which names the first turn's question)."""
    from qa.evaluation import FollowUp, SquadQuestion
    from qa.reading import calibrate, trained

    engine = make_engine(seed_corpus, reader="trained", reader_abstain_model=SURE)
    fake = FakeSpanReader()
    calls = []

    def read(question, passages, top=5):
        calls.append(question)
        return FakeSpanReader.read(fake, question, passages, top)

    fake.read = read
    monkeypatch.setattr(trained, "SpanReader", lambda *a, **k: fake)
    source = sorted(p.name for p in seed_corpus.iterdir())[0]
    full = SquadQuestion("a", "Who plays Mark in Severance?", source, ("Adam Scott",), (0,), True, 0)
    first = SquadQuestion("b", "Who created Severance?", source, ("Dan Erickson",), (0,), True, 0)
    follow = FollowUp(first, full, "Who plays Mark in it?")
    items, latencies = calibrate._read_all([("all", engine, [full]), ("all" + calibrate.FOLLOW_UPS, engine, [follow])])
    assert len(items) == 2 and len(latencies) == 2
    assert items[0].asked == items[0].query == full.question
    assert items[1].question is full and items[1].asked == "Who plays Mark in it?"
    assert items[1].query.startswith("Who plays Mark in it? (Who created Severance?")
    assert calls == [full.question, first.question, items[1].query]


def test_small_calibration_corpora_keep_the_protocols_split():
    from qa.reading.calibrate import small_corpora

    def article(n):
        return {
            "title": f"T{n}",
            "paragraphs": [
                {
                    "context": f"Text {n}.",
                    "qas": [{"id": f"q{n}", "question": "?", "answers": [{"text": "Text", "answer_start": 0}]}],
                }
            ],
        }

    held = {"data": [article(n) for n in range(40)]}
    out_titles = {f"T{n}" for n in range(40) if not evaluation.in_corpus(n)}
    corpora = small_corpora(held, 3)
    kept = [a["title"] for c in corpora for a in c["data"][1:]]
    assert sorted(kept) == sorted(f"T{n}" for n in range(40) if evaluation.in_corpus(n)), "each kept article once"
    for c in corpora:
        assert 2 <= len(c["data"]) <= 4 and c["data"][0]["title"] in out_titles
        files, questions = evaluation.squad_articles(c)
        assert len(files) == len(c["data"]) - 1
        assert [q.in_corpus for q in questions] == [False] + [True] * (len(c["data"]) - 1)
    for bad in (0, 6, -1):
        with pytest.raises(InputError, match="--small-corpora"):
            small_corpora(held, bad)


def test_suggested_threshold_is_the_lowest_refusing_enough_in_every_corpus():
    from qa.reading.calibrate import REFUSE_AT_LEAST, THRESHOLDS, suggest_threshold

    def rows(refused):
        return [{"threshold": t, "refused_out_of_corpus": r} for t, r in zip(THRESHOLDS, refused, strict=True)]

    n = len(THRESHOLDS)
    rising = [0.5 + 0.5 * i / (n - 1) for i in range(n)]  # 0.5 .. 1.0
    first = next(t for t, r in zip(THRESHOLDS, rising, strict=True) if r >= REFUSE_AT_LEAST)
    assert suggest_threshold({"all": rows(rising)}) == first
    # a second kind of corpus that needs a higher threshold decides
    later = [0.0] * (n - 1) + [1.0]
    assert suggest_threshold({"all": rows(rising), "small3": rows(later)}) == THRESHOLDS[-1]
    assert suggest_threshold({"all": rows([0.5] * n)}) is None
    assert suggest_threshold({"all": rows(rising), "small3": rows([None] * n)}) is None


def test_out_of_fold_confidence_is_judged_without_its_fold():
    from qa.reading.calibrate import _out_of_fold

    rng = np.random.default_rng(0)
    # in folds 0-3 the feature separates the two kinds; fold 4 alone has it the other way round
    folds = np.repeat(np.arange(5), 40)
    y = np.tile([1.0, 0.0], 100)
    x = np.where(y == 1, 1.0, -1.0) + 0.1 * rng.standard_normal(200)
    x[folds == 4] *= -1
    prob = _out_of_fold(x[:, None], y, folds)
    held = folds == 4
    # judged by the model of the other four folds, fold 4 is all wrong; the others are right
    assert ((prob[held] >= 0.5) != (y[held] == 1)).all()
    assert ((prob[~held] >= 0.5) == (y[~held] == 1)).mean() > 0.9


def test_the_threshold_rule_leaves_out_follow_ups_and_on_topic_corpora():
    """No threshold refuses 92 % of the on-topic corpora's out-of-corpus questions: the rule weighs
    the other kinds of corpus, so it still suggests one."""
    from qa.reading.calibrate import FOLLOW_UPS, ON_TOPIC, THRESHOLDS, _in_rule, suggest_threshold

    def rows(refused):
        return [{"threshold": t, "refused_out_of_corpus": refused} for t in THRESHOLDS]

    parts = {"all": rows(1.0), "small3": rows(1.0), "all" + FOLLOW_UPS: rows(0.5), f"{ON_TOPIC} 3": rows(0.6)}
    assert list(_in_rule(parts)) == ["all", "small3"]
    assert suggest_threshold(_in_rule(parts)) == THRESHOLDS[0]
    assert suggest_threshold(parts) is None


def test_on_topic_corpora_hold_back_half_of_one_article():
    """Each on-topic corpus: one kept article cut in two (odd paragraphs left out by the protocol,
    even ones kept, one title so one fold), then the next kept articles whole."""
    from qa.reading.calibrate import _fold, on_topic_corpora

    def article(n, paragraphs=4):
        return {
            "title": f"T{n}",
            "paragraphs": [
                {
                    "context": f"Text {n} {k}.",
                    "qas": [{"id": f"q{n}-{k}", "question": "?", "answers": [{"text": "Text", "answer_start": 0}]}],
                }
                for k in range(paragraphs)
            ],
        }

    held = {"data": [article(n) for n in range(40)]}
    corpora = on_topic_corpora(held, 3)
    kept = [n for n in range(40) if evaluation.in_corpus(n)]
    assert [c["data"][1]["title"] for c in corpora] == [f"T{n}" for n in kept[::3]]
    for c in corpora:
        back, shown, *rest = c["data"]
        assert back["title"] == shown["title"] and len(rest) <= 2
        assert [p["context"].split()[-1] for p in back["paragraphs"]] == ["1.", "3."]
        assert [p["context"].split()[-1] for p in shown["paragraphs"]] == ["0.", "2."]
        files, questions = evaluation.squad_articles(c)
        assert len(files) == len(c["data"]) - 1
        out = [q for q in questions if not q.in_corpus]
        assert [q.id for q in out] == [p["qas"][0]["id"] for p in back["paragraphs"]]
        assert {_fold(q) for q in questions if q.source.endswith(back["title"] + ".txt")} == {_fold(out[0])}
    with pytest.raises(InputError, match="on-topic"):
        on_topic_corpora(held, 0)


def test_split_articles_is_deterministic_and_disjoint():
    questions = make_questions()
    tr, held = train.split_articles(questions, held_out=4, seed=13)
    assert len(held) == 4 and not tr & held
    assert tr | held == {q.article for q in questions}
    shuffled = questions[:]
    random.Random(0).shuffle(shuffled)
    assert train.split_articles(shuffled, 4, 13) == (tr, held), "the split depends on the titles, not their order"
    splits = {frozenset(train.split_articles(questions, 4, seed)[1]) for seed in range(10)}
    assert len(splits) > 1, "the seed changes the split"


def test_shuffle_seed_changes_the_batches_and_negatives_but_not_the_held_out_split():
    import argparse

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    questions = [
        train.Question(f"{a}-{i}", f"Article {a}", f"Who {a} {i}?", f"Ctx {a} {i}.", ("x",), 0, 1, i)
        for a in range(12)
        for i in range(3)
    ]
    ambiguous = {"5-1"}

    def plan(*argv):
        return train.make_plan(questions, ambiguous, parser.parse_args(["--held-out-articles", "4", *argv]))

    base, again, further = plan(), plan(), plan("--shuffle-seed", "14")
    assert base == again, "a plan is decided by its seeds alone"
    assert base.order_seed == 13 and further.order_seed == 14
    assert further.held_out_articles == base.held_out_articles and further.held_out == base.held_out
    assert further.validation == base.validation and further.final == base.final
    assert further.train == base.train, "the same questions, in the same order"
    assert "5-1" not in {q.id for q in base.train}
    with_negatives = [plan("--negatives", "1", *s).pairs for s in ((), ("--shuffle-seed", "14"))]
    assert len(with_negatives[0]) > len(base.train), "negative pairs were drawn"
    assert with_negatives[0] != with_negatives[1], "another shuffle seed draws other negatives"
    assert plan("--seed", "7").held_out_articles != base.held_out_articles


def test_learning_rate_warms_up_then_decays_to_zero_at_the_last_step():
    total, warm = 100, 10
    lr = [train.lr_factor(s, total, warm, 0.0, 0.0) for s in range(total)]
    assert lr[0] == pytest.approx(0.1) and lr[warm - 1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lr[warm - 1 : -1], lr[warm:], strict=True)), "decays after the warm-up"
    assert lr[50] == pytest.approx((total - 50) / (total - warm)), "linear, as without a time budget"
    assert train.lr_factor(total, total, warm, 0.0, 0.0) == 0.0


def test_a_time_budget_decays_the_learning_rate_by_whichever_is_further_along():
    total, warm = 1000, 10
    by_steps = train.lr_factor(100, total, warm, 1.0, 600.0)
    assert by_steps == pytest.approx(train.lr_factor(100, total, warm, 0.0, 0.0)), "time behind steps: steps rule"
    half = train.lr_factor(100, total, warm, 300.0, 600.0)
    assert half == pytest.approx(0.5 / 0.99), "half the budget spent at a tenth of the steps: half-way decayed"
    assert train.lr_factor(100, total, warm, 600.0, 600.0) == 0.0, "the budget spent: nothing more to learn"
    slow_start = train.lr_factor(0, total, warm, 60.0, 600.0)
    assert slow_start == pytest.approx(0.9 / 0.99), "a tenth of the budget spent: warmed up, a tenth decayed"


def test_a_negative_time_budget_is_refused_naming_it():
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    with pytest.raises(InputError, match="--minutes must be 0 or more, not -1.0"):
        train.main(parser.parse_args(["--minutes", "-1"]))


def test_batches_cover_every_index_exactly_once():
    rng = random.Random(3)
    n = 1037
    lengths = [rng.randint(10, 192) for _ in range(n)]
    out = train.batches(n, lengths, batch_size=8, seed=7)
    flat = [i for b in out for i in b]
    assert sorted(flat) == list(range(n))
    assert all(1 <= len(b) <= 8 for b in out)
    assert out == train.batches(n, lengths, batch_size=8, seed=7)
    assert out != train.batches(n, lengths, batch_size=8, seed=8)


CONTEXT_LONG = (
    "The series was filmed in many places over two years. " * 6
    + "The farewell scene was filmed at a station in Utica, New York. "
    + "Many other scenes were shot on sets built for the show. " * 4
)
PAIRS = [
    ("Who plays Irving?", "In the series, John Turturro plays Irving, a Lumon employee.", 15, 28),
    ("Where was the farewell filmed?", CONTEXT_LONG, CONTEXT_LONG.index("Utica"), CONTEXT_LONG.index("Utica") + 5),
    ("Which film did he promote?", "He promoted Mr. & Mrs. Smith at its premiere.", 12, 28),
    ("Who plays Mark?", "Christopher Walken returns as Burt Goodman.", -1, -1),
]


def test_featurize_labels_point_at_the_answer(tokenizer, hf_tokenizer):
    config = rm.WindowConfig(max_length=40, stride=10)
    assert PAIRS[0][1][15:28] == "John Turturro" and PAIRS[2][1][12:28] == "Mr. & Mrs. Smith"
    feats = train.featurize(tokenizer, PAIRS, config)
    enc = rm.encode_windows(tokenizer, [p[0] for p in PAIRS], [p[1] for p in PAIRS], config)
    assert len(feats) == len(enc["input_ids"])
    windows = {j: 0 for j in range(len(PAIRS))}
    positives = {j: 0 for j in range(len(PAIRS))}
    for i, (ids, types, s, e) in enumerate(feats):
        j = enc["overflow_to_sample_mapping"][i]
        q, ctx, a, b = PAIRS[j]
        windows[j] += 1
        assert ids == enc["input_ids"][i] and types == enc["token_type_ids"][i] and len(ids) <= config.max_length
        offsets, seq = enc["offset_mapping"][i], enc.sequence_ids(i)
        passage = [k for k, x in enumerate(seq) if x == 1]
        holds = a >= 0 and offsets[passage[0]][0] <= a and b <= offsets[passage[-1]][1]
        if not holds:
            assert (s, e) == (0, 0), f"window {i} lacks the answer but is labelled {s}-{e}"
            continue
        positives[j] += 1
        assert seq[s] == 1 and seq[e] == 1 and s <= e
        assert ctx[offsets[s][0] : offsets[e][1]] == ctx[a:b]
    assert windows[1] > 2, "the long context is cut into several windows"
    assert positives[0] == positives[2] == 1
    assert 1 <= positives[1] < windows[1], "windows without the answer are labelled no-answer"
    assert positives[3] == 0
    assert train.featurize(tokenizer, PAIRS, config, batch=1) == feats, "batching does not change features"
    assert train.featurize(hf_tokenizer, PAIRS, config) == feats, "transformers' windows are the same"


def test_featurize_negative_pair_is_no_answer_everywhere(tokenizer):
    ctx = "John Turturro plays Irving. " * 20
    feats = train.featurize(tokenizer, [("Who plays Irving?", ctx, -1, -1)], rm.WindowConfig(max_length=32, stride=8))
    assert len(feats) > 1 and all((s, e) == (0, 0) for _, _, s, e in feats)


def test_training_runs_on_a_machine_without_the_engines_dependencies():
    """A lent GPU machine lacked orjson: the training command must not import the engine (the index,
    orjson) on the way, while ``qa.get_engine`` still works where they are installed."""
    code = (
        "import sys; sys.modules['orjson'] = None\n"  # any import of orjson now fails
        "import runpy; sys.argv = ['train', '--help']\n"
        "try:\n    runpy.run_module('qa.reading.train', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'qa.engine' not in sys.modules and 'qa.index' not in sys.modules, sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--minutes" in done.stdout, "train-reader's help was printed"
    assert qa.get_engine is qa.engine.get_engine and qa.Engine.__name__ == "Engine"
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = qa.no_such_thing


# Three questions' top 2 passages, a passage shared between two of them (stored once in a file).
SEARCHED = [
    [PAIRS[0], ("Who plays Irving?", PAIRS[2][1], -1, -1)],
    [PAIRS[1], ("Where was the farewell filmed?", PAIRS[0][1], -1, -1)],
    [PAIRS[2], ("Which film did he promote?", PAIRS[0][1], -1, -1)],
]
HELD = {"Ardel0", "Ardel1"}


def _retrieved_args(tmp_path, **kw):
    base = dict(retrieved=2, seed=13, held_out_articles=2, shuffle_seed=7, offset=0, questions=0)
    return SimpleNamespace(**{**base, "dump_retrieved": tmp_path / "retrieved.json.gz", **kw})


def test_dumped_retrieved_passages_give_the_windows_searching_gives(tmp_path, monkeypatch, tokenizer):
    """--dump-retrieved writes what --retrieved would search; --retrieved-from reads it back as the
    same questions in the same shuffled order, so training sees the same windows."""
    monkeypatch.setattr(train, "_searched", lambda args, held: (len(SEARCHED), lambda i: SEARCHED[i]))
    args = _retrieved_args(tmp_path)
    assert train.dump_retrieved(args, HELD) == 0
    assert not list(tmp_path.glob("*.tmp")), "written whole, then renamed"
    k, n, pairs_of = train.read_retrieved(args.dump_retrieved, 0, HELD)
    assert (k, n) == (2, 3) and [pairs_of(i) for i in range(n)] == SEARCHED
    import gzip

    with gzip.open(args.dump_retrieved, "rt", encoding="utf-8") as f:
        stored = json.load(f)
    assert len(stored["passages"]) == 3, "each passage text once"
    config = rm.WindowConfig(max_length=40, stride=10)
    for kw in ({}, {"offset": 1}, {"questions": 2}, {"shuffle_seed": None}):
        a = _retrieved_args(tmp_path, **kw)
        searched = train.retrieved_groups(a, tokenizer, config, HELD)
        from_file = train.retrieved_groups(a, tokenizer, config, HELD, (n, pairs_of))
        assert from_file == searched, kw
    everything = train.retrieved_groups(_retrieved_args(tmp_path), tokenizer, config, HELD)
    assert (
        len(everything) == 3
        and len(train.retrieved_groups(_retrieved_args(tmp_path, offset=1), tokenizer, config, HELD)) == 2
    )
    order = list(range(3))
    random.Random(7).shuffle(order)
    assert everything == [train.featurize(tokenizer, SEARCHED[i], config) for i in order], "shuffled by --shuffle-seed"


def test_a_retrieved_file_that_does_not_fit_the_run_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "_searched", lambda args, held: (len(SEARCHED), lambda i: SEARCHED[i]))
    args = _retrieved_args(tmp_path)
    train.dump_retrieved(args, HELD)
    with pytest.raises(InputError, match=r"another held-out split .*13 / 2"):
        train.read_retrieved(args.dump_retrieved, 2, {"Ardel0", "Ardel5"})
    with pytest.raises(
        InputError, match=r"--retrieved must match --retrieved-from's 2 passages a question\. Currently, it is 5\."
    ):
        train.read_retrieved(args.dump_retrieved, 5, HELD)
    plain = tmp_path / "plain.json.gz"
    plain.write_text("not gzip")
    with pytest.raises(InputError, match="plain.json.gz' cannot be read: Not a gzipped file"):
        train.read_retrieved(plain, 2, HELD)
    import gzip

    other = tmp_path / "other.json.gz"
    with gzip.open(other, "wt") as f:
        json.dump({"questions": []}, f)
    with pytest.raises(InputError, match="other.json.gz' is not one"):
        train.read_retrieved(other, 2, HELD)


def test_each_epoch_of_a_retrieved_run_takes_its_steps_in_another_order():
    steps = [[0, 1], [2], [3, 4, 5], [6], [7, 8]]
    first, second, third = (train.question_epoch(steps, e, 14) for e in range(3))
    assert first == steps, "the first epoch keeps the order (a one-epoch run is as before)"
    assert sorted(second) == sorted(third) == sorted(steps) and second != steps and second != third
    assert train.question_epoch(steps, 1, 14) == second, "seeded"


def test_collate_pads_to_a_multiple_of_16():
    feats = [
        (list(range(1, 18)), [0] * 5 + [1] * 12, 7, 9),
        ([5, 6, 7, 8, 9], [0, 0, 1, 1, 1], 0, 0),
        (list(range(1, 17)), [1] * 16, 2, 3),
    ]
    ids, types, mask, starts, ends = train.collate(feats, [0, 1], pad_id=0)
    assert ids.shape == types.shape == mask.shape == (2, 32)
    assert mask.sum(1).tolist() == [17, 5]
    assert ids[0, :17].tolist() == feats[0][0] and ids[1, 5:].eq(0).all()
    assert types[0, :17].tolist() == feats[0][1] and types[:, 17:].eq(0).all()
    assert starts.tolist() == [7, 0] and ends.tolist() == [9, 0]
    ids, *_ = train.collate(feats, [2, 1], pad_id=99)
    assert ids.shape == (2, 16) and ids[1, 5:].eq(99).all()


# ---------------------------------------------------------------- weights and model card


class TinyNetwork(torch.nn.Module):
    """The shape of the real one in miniature: encoder (with word embeddings) plus a span head."""

    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.encoder = torch.nn.Module()
        self.encoder.embeddings = torch.nn.Module()
        self.encoder.embeddings.word_embeddings = torch.nn.Embedding(10, 4)
        self.encoder.layer = torch.nn.Linear(4, 4)
        self.span = torch.nn.Linear(4, 2)
        if extra:
            self.extra = torch.nn.Linear(2, 2)


def test_read_card_in_an_empty_folder_says_how_to_train(tmp_path):
    with pytest.raises(ModelError, match="train-reader"):
        rm.read_card(tmp_path)
    (tmp_path / rm.CARD_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        rm.read_card(tmp_path)


def test_weights_not_matching_the_card_are_refused_before_the_network_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr(rm, "build_network", lambda *a, **k: pytest.fail("the network must not be built"))
    (tmp_path / rm.WEIGHTS_FILE).write_bytes(b"not the weights the card describes")
    (tmp_path / rm.CARD_FILE).write_text(json.dumps({"weights_file": rm.WEIGHTS_FILE, "sha256": "0" * 64}))
    with pytest.raises(ModelError, match="do not match"):
        rm.load_network(tmp_path)
    (tmp_path / rm.WEIGHTS_FILE).unlink()
    with pytest.raises(ModelError, match="missing"):
        rm.load_network(tmp_path)


def test_saved_weights_load_back_without_the_frozen_embeddings(tmp_path, monkeypatch):
    net = TinyNetwork()
    path = rm.save_weights(net, tmp_path / "w", {"name": "tiny"}, onnx=False)  # no ONNX twin of a toy
    card = rm.read_card(tmp_path / "w")
    assert card["name"] == "tiny" and card["sha256"] == rm.sha256_file(path) and card["bytes"] == path.stat().st_size
    from safetensors.torch import load_file

    stored = load_file(str(path))
    assert "encoder.embeddings.word_embeddings.weight" not in stored
    assert set(stored) == {"encoder.layer.weight", "encoder.layer.bias", "span.weight", "span.bias"}
    assert all(v.dtype == torch.float16 for v in stored.values())
    monkeypatch.setattr(rm, "build_network", lambda *a, **k: TinyNetwork())
    loaded, card2 = rm.load_network(tmp_path / "w")
    assert card2 == card and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert torch.allclose(loaded.span.weight, net.span.weight.half().float())
    # a network the weights do not fit
    monkeypatch.setattr(rm, "build_network", lambda *a, **k: TinyNetwork(extra=True))
    with pytest.raises(ModelError, match="do not fit"):
        rm.load_network(tmp_path / "w")


def test_span_reader_wraps_load_failures_in_model_error(tmp_path):
    reader = SpanReader(folder=tmp_path)
    with pytest.raises(ModelError, match="train-reader"):
        reader.load()
    with pytest.raises(ModelError):
        reader.read("Who?", [PASSAGE])


def test_onnx_backend_without_a_graph_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.setattr(rm, "build_network", lambda *a, **k: pytest.fail("the torch network must not be built"))
    (tmp_path / rm.CARD_FILE).write_text(json.dumps({"weights_file": rm.WEIGHTS_FILE, "sha256": "0" * 64}))
    assert rm.load_onnx(tmp_path) is None, "a card naming no graph"
    with pytest.raises(ModelError, match="onnx"):
        SpanReader(folder=tmp_path, backend="onnx").load()


def test_onnx_graph_not_matching_the_card_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    card = {"weights_file": rm.WEIGHTS_FILE, "sha256": "0" * 64, "onnx_file": rm.ONNX_FILE, "onnx_sha256": "1" * 64}
    (tmp_path / rm.CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="missing"):
        rm.load_onnx(tmp_path)
    (tmp_path / rm.ONNX_FILE).write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="does not match"):
        rm.load_onnx(tmp_path)


def test_trained_reader_passes_the_settings_on():
    settings = Settings(reader_backend="torch", reader_weights="/nowhere/weights")
    spans = TrainedReader(settings).spans
    assert (spans.backend, spans.folder) == ("torch", Path("/nowhere/weights"))


def test_weights_folder_is_the_package_one():
    assert rm.WEIGHTS_DIR == Path(rm.__file__).resolve().parent / "weights"
    assert SpanReader().folder == rm.WEIGHTS_DIR


def test_changing_the_reader_invalidates_nothing_in_the_index(make_engine, seed_corpus, tmp_path):
    """The index depends on chunking and the embedder only: another reader, window or confidence
    model reuses it as it is (nothing embedded, nothing rebuilt)."""
    index_dir = tmp_path / "shared-index"
    first = make_engine(seed_corpus, index_dir, reader="picker")
    assert first.build_index().embedded_chunks > 0
    other = make_engine(
        seed_corpus,
        index_dir,
        reader="trained",
        reader_window_tokens=256,
        reader_abstain_threshold=0.9,
        reader_backend="torch",
        reader_abstain_model=",".join(["1"] * (READER_ABSTAIN_FEATURES + 1)),
    )
    report = other.build_index()
    assert report.embedded_chunks == 0 and not report.rebuilt and not report.changed


def test_rank_model_is_fitted_to_choose_the_guess_whose_quote_answers(make_engine, seed_corpus):
    """calibrate-reader's rank model, on readings where the network always scores a long decoy
    (a sentence without the answer) above the answer: the span score and the passage weight choose
    the decoy every time; the fitted model, judged on articles it was not fitted on, does better."""
    from qa.evaluation import SquadQuestion
    from qa.reading.calibrate import _Read, fit_rank_model
    from qa.retrieval import search

    engine = make_engine(seed_corpus, reader="trained")
    index = engine.index
    items = []
    for chunk in index.chunks:
        text = corpus_text(engine, chunk.source)
        for s in chunk.sentences:
            sent = text[s.start : s.end]
            names = [m for m in _NAME.finditer(sent) if m.start() > 0 and len(m.group()) > 3]
            if not names or len(sent.split()) < 8:
                continue
            name = names[0].group()
            q = SquadQuestion(f"q{len(items)}", sent.replace(name, "who"), chunk.source, (name,), (), True, 0)
            hits = search(index, engine.embedder, engine.settings, q.question, 5)
            guesses = []
            for rank, p in enumerate(hits.passages):
                at, ptext = p.text.find(name), corpus_text(engine, p.source)
                decoy = next((x for x in _sentences(index, p) if name not in ptext[x.start : x.end]), None)
                words = list(re.finditer(r"\S+", ptext[decoy.start : decoy.end])) if decoy else []
                if at < 0 or len(words) < 8:
                    continue
                d_at, d_end = decoy.start, decoy.start + words[7].end()
                long = ptext[d_at:d_end]
                guesses += [
                    SpanGuess(rank, d_at, d_end, long, 9.0 - rank, 0.0),
                    SpanGuess(rank, p.start + at, p.start + at + len(name), name, 4.0 - rank, 0.0),
                ]
            if guesses:
                items.append(_Read("all", engine, q, hits, Reading(guesses, [0.0] * 5), None, q.question, q.question))
    assert len({it.question.source for it in items}) == 3 and len(items) >= 20
    model, ranking = fit_rank_model(items, folds=3, ablate=True)
    assert Settings(reader_rank_model=model).reader_rank_model == model  # a valid setting
    assert ranking["questions"] == len(items)
    scores = ranking["folds_by_article"]
    # (a decoy's quote can hold the name when it takes the sentence before, for a pronoun)
    assert scores["span score + reader_w_passage"]["EM"] == 0.0
    assert scores["span score + reader_w_passage"]["accuracy"] < 0.1
    assert scores["rank model"]["accuracy"] > 0.8 and scores["rank model"]["EM"] > 0.8
    # --ablate: one more model per feature, each fitted and judged the same way
    ablated = [scores[f"rank model without feature {i}"] for i in range(1, RANK_FEATURES + 1)]
    assert len(scores) == 2 + RANK_FEATURES and all(0.0 <= a["EM"] <= 1.0 for a in ablated)
    # the span score alone tells the decoy (always 5 above) from the name: left out, the span's
    # length still does
    assert ablated[0]["accuracy"] > 0.8


def test_rank_model_is_fitted_listwise_then_put_on_the_logistic_scale():
    """fit_rank orders each question's guesses by a listwise fit (a per-question offset that says
    nothing about which guess is right does not sway it), scaled onto the logistic model of the
    same labels; questions without a quotable guess are left out, and all-wrong labels refused."""
    from qa.calibration import fit_listwise, fit_logistic
    from qa.reading.calibrate import fit_rank

    def lists(n, seed):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            X = rng.normal(size=(12, 3))
            y = np.zeros(12)
            g = rng.integers(12)
            y[g] = 1.0
            X[g, 0] += 1.5
            X[:, 1] += 3.0 * rng.normal()  # the same for every guess of the question
            out.append((X, y))
        return out

    train_lists = lists(300, 0) + [(np.zeros((0, 3)), np.zeros(0))]
    theta = fit_rank(train_lists)
    assert theta.shape == (4,)
    w = fit_listwise([(X, y > 0.5) for X, y in train_lists if len(X)])
    ratio = theta[1:] / w
    assert ratio[0] > 0 and ratio == pytest.approx([ratio[0]] * 3)  # the listwise order, rescaled
    X = np.concatenate([X for X, _ in train_lists if len(X)])
    y = np.concatenate([y for _, y in train_lists])
    logit = fit_logistic(X, y)
    # least squares onto the logistic scores: the same mean score
    assert np.mean(theta[0] + X @ theta[1:]) == pytest.approx(np.mean(logit[0] + X @ logit[1:]), abs=1e-6)
    test = lists(200, 1)
    first = np.mean([y[np.argmax(X @ theta[1:])] for X, y in test])
    assert first > 0.3 > np.mean([y[np.argmax(X[:, 1])] for X, y in test])
    with pytest.raises(InputError, match="too few answerable"):
        fit_rank([(np.ones((3, 3)), np.zeros(3))])


def test_followupbench_turns_the_title_into_a_pronoun_after_a_first_turn_on_the_same_article():
    from followupbench import follow_ups

    from qa.evaluation import SquadQuestion

    def q(i, text, source="03_Dell.txt", in_corpus=True):
        return SquadQuestion(f"q{i}", text, source, ("x",), (0,), in_corpus, 3)

    questions = [
        q(0, "Where is Dell's Tennessee facility?"),
        q(1, "When was the Dell founded?"),
        q(2, "Who founded it?"),  # names no title: never asked
        q(3, "What does Dell sell?", "06_Dell.txt", in_corpus=False),  # out of corpus: never asked
        q(4, "Where is Kyoto?", "07_Kyoto.txt"),  # the only question of its article: no first turn
    ]
    asked = follow_ups(questions, 10, seed=1)
    assert sorted((first.id, x.id, pronoun) for first, x, pronoun in asked) == [
        ("q0", "q1", "When was it founded?"),
        ("q1", "q0", "Where is its Tennessee facility?"),
    ]
    assert len(follow_ups(questions, 1, seed=1)) == 1
    from qa.reading.calibrate import FOLDS, _fold

    dell = _fold(questions[0])  # only the articles of one calibration fold
    assert follow_ups(questions, 10, seed=1, fold=dell) == asked
    assert follow_ups(questions, 10, seed=1, fold=(dell + 1) % FOLDS) == []


def test_question_batches_keep_each_questions_windows_together():
    groups = [[("a",)] * 3, [("b",)] * 1, [("c",)] * 2, [("d",)] * 4]
    order, group_of = train.question_batches(groups, per_step=2)
    assert order == [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]]
    assert group_of == [0, 0, 0, 1, 2, 2, 3, 3, 3, 3]


def test_shared_loss_is_normalized_over_all_of_a_questions_windows():
    """Two windows of one question, the answer in the second: the loss is -log of the softmax mass
    on the gold tokens over the passage tokens of both windows, not of the second alone; a question
    whose windows all say no-answer adds nothing."""
    types = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1]])
    mask = torch.ones_like(types)
    s = torch.tensor([[9.0, 0.0, 2.0, 1.0], [9.0, 0.0, 0.0, 3.0], [0.0, 5.0, 5.0, 5.0]])
    e = s.clone()
    starts = torch.tensor([rm.NO_ANSWER, 3, rm.NO_ANSWER])
    ends = torch.tensor([rm.NO_ANSWER, 3, rm.NO_ANSWER])
    loss = train.shared_loss(s, e, types, mask, starts, ends, [0, 0, 1])
    passage = torch.tensor([2.0, 1.0, 0.0, 3.0])  # the [CLS] and question tokens (9, 0) take no part
    expected = torch.logsumexp(passage, 0) - 3.0
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    per_window = torch.logsumexp(torch.tensor([0.0, 3.0]), 0) - 3.0
    assert float(loss) > float(per_window)  # the first window's tokens compete too
    assert train.shared_loss(s[2:], e[2:], types[2:], mask[2:], starts[2:], ends[2:], [1]) is None


def test_model_card_says_what_a_step_held():
    """A gold-paragraph run's step is a batch of windows; a --retrieved run's is whole questions."""
    plain = rm.model_card_markdown({"training": {"steps": 10, "batch_size": 32}})
    assert "10 steps of 32," in plain
    retrieved = rm.model_card_markdown({"training": {"steps": 7, "retrieved": 5, "question_batch": 4}})
    assert "7 steps of 4 questions (the windows of their top 5 retrieved passages)," in retrieved
    assert "steps of ?" not in retrieved
