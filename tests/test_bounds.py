"""Work per request is bounded: long words, long or malformed histories and odd values cost
memory and time linear in the input (never its square), are refused naming the bound and the
value, and quotes are checked against the article file before they are shown."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from qa import answering, lexical
from qa import index as index_mod
from qa.answering import TermSet, quotable, rewrite_query
from qa.errors import IndexCorruptError, InputError
from qa.types import Chunk, Passage, Span

ROOT = Path(__file__).resolve().parent.parent
MAX = 100  # lexical.MAX_WORD_CHARS (checked below)


def _peak(fn) -> tuple[object, int]:
    """fn()'s result and the peak of Python memory it allocated (bytes)."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class _CountingStr(str):
    """A str that counts how often it is sliced (for bounds on loops over a term's length)."""

    slices = 0

    def __getitem__(self, key):
        type(self).slices += 1
        return str.__getitem__(self, key)


# ---------------------------------------------------------------- one long word


def test_long_word_is_not_a_token_and_shorter_ones_are_unchanged():
    assert lexical.MAX_WORD_CHARS == MAX
    at = "x" * MAX
    assert lexical.words(f"a {at} b") == ["a", at, "b"]
    assert lexical.words(f"a {at}'s b") == ["a", at, "b"]  # 100 letters once the possessive is dropped
    assert lexical.words(f"a {at}x b") == ["a", "b"]
    assert lexical.tokenize(f"Irving {'lumon' * 40_000} Burt") == lexical.tokenize("Irving Burt")
    long_run = "-".join(["season"] * 50_000)  # many short words joined: every one is still a word
    assert lexical.tokenize(long_run) == ["season"] * 50_000


def test_tokenizing_a_huge_word_is_linear():
    _, peak = _peak(lambda: lexical.tokenize("a" * 1_000_000))
    assert peak < 8 * 1_000_000  # the lower-cased copy and the match: a few times the text, not its square


def test_term_prefixes_are_bounded():
    """TermSet.of built every prefix of every term: a 20,000-letter term took 200 MB."""
    ts, peak = _peak(lambda: TermSet.of(["z" * 20_000, "irv"]))
    assert peak < 2_000_000, f"{peak:,} bytes for one long term"
    assert ts.has("z" * 20_000) and ts.has("zzzz") and ts.has("irv")
    assert max(len(p) for p in ts.prefixes) <= MAX


def test_term_lookup_is_bounded():
    ts = TermSet.of(["burt", "irv"])
    term = _CountingStr("burt" + "q" * 1_000_000)
    _CountingStr.slices = 0
    assert ts.has(term)  # "burt" starts it
    _CountingStr.slices = 0
    assert not TermSet.of(["walken"]).has(term)
    assert _CountingStr.slices <= MAX, f"{_CountingStr.slices:,} slices of a 1,000,004-letter term"


@pytest.mark.parametrize("terms", [["irv", "burt"], ["lumon", "lumonindustri"], ["season", "seasonal", "sea"]])
def test_term_matching_is_unchanged_for_normal_terms(terms):
    ts = TermSet.of(terms)
    probes = ["irv", "irving", "burt", "burton", "bur", "lumo", "lumon", "lumonx", "seas", "seasonally", "se", "x"]
    for probe in probes:
        old = probe in ts.terms or (
            len(probe) >= 4
            and (
                any(t.startswith(probe) and len(probe) >= 4 for t in ts.terms)
                or any(probe[:i] in ts.terms for i in range(4, len(probe)))
            )
        )
        assert ts.has(probe) == old, probe


@pytest.mark.parametrize("terms", [["irv", "burt"], ["lumon", "lumonindustri"], ["season", "seasonal", "sea"]])
def test_question_lookups_worked_out_once_match_term_matching(terms):
    """Reranking looks a question's terms up in many sentences with lookups worked out once per
    question (features._Weighted); each must say what TermSet.has says, and a sentence with the
    one before counts a term found in either, as their union did."""
    from qa.reading.features import TermSet as TS
    from qa.reading.features import _Weighted

    probes = ["irv", "irving", "burt", "burton", "bur", "lumo", "lumon", "lumonx", "seas", "seasonally", "se", "x"]
    probes.append("burt" + "q" * 100_000)
    ts, before = TS.of(terms), TS.of(["burton", "lum"])
    weighted = _Weighted.of(_FakeStats(), probes)
    assert weighted.found(ts) == tuple(ts.has(p) for p in probes)
    either = [a or b for a, b in zip(weighted.found(ts), weighted.found(before), strict=True)]
    assert weighted.share(either) == answering.coverage(_FakeStats(), probes, ts | before)
    assert max(len(c) for candidates, _ in weighted.probes for c in candidates[1:]) <= MAX


class _FakeStats:
    """Just what IDF weights need of an index."""

    n_stats = 10
    df = {"irv": 1, "burt": 3, "season": 2}


def test_a_sentence_holding_a_huge_run_is_never_quoted():
    sentence = "The refinement team studied the code {} before the storm ended."
    assert quotable(sentence.format("x" * MAX), 4)
    assert not quotable(sentence.format("x" * (MAX + 1)), 4)
    assert not quotable(sentence.format("https://example.com/" + "a/" * 60), 4)


def _old_fit(p, span, terms, max_chars):
    """answering._fit as it was (quadratic): the oracle for the new one on normal text."""
    if span.end - span.start <= max_chars:
        return span
    words = [
        (span.start + m.start(), span.start + m.end())
        for m in re.finditer(r"\S+", p.text[span.start - p.start : span.end - p.start])
    ]
    wanted = set(terms)
    best, best_hits = None, -1
    for i in range(len(words)):
        j = i
        while j + 1 < len(words) and words[j + 1][1] - words[i][0] <= max_chars:
            j += 1
        window = p.text[words[i][0] - p.start : words[j][1] - p.start]
        hits = sum(1 for t in lexical.tokenize(window) if t in wanted)
        if hits > best_hits:
            best, best_hits = Span(words[i][0], words[j][1]), hits
    return best


def _passage(text: str, start: int = 7) -> Passage:
    return Passage(text=text, score=1.0, source="a.txt", title="a", date=None, start=start, end=start + len(text))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("max_chars", [40, 120, 400])
def test_fit_windows_are_the_same_as_before(seed, max_chars):
    import random

    rng = random.Random(seed)
    vocab = ["Irving", "Burt", "Lumon's", "refinement", "the", "of", "season", "2022.", "—", "Walken,", "a", "x" * 30]
    text = " ".join(rng.choice(vocab) for _ in range(rng.randint(20, 200)))
    p = _passage(text)
    span = Span(p.start, p.end)
    terms = lexical.tokenize("Irving refinement season Walken")
    assert answering._fit(p, span, terms, max_chars) == _old_fit(p, span, terms, max_chars)


def test_fit_is_linear_and_never_cuts_a_word(monkeypatch):
    text = " ".join(f"word{i % 997} Irving" for i in range(20_000))  # ~250,000 characters
    p = _passage(text)
    tokenized = []
    real = lexical.tokenize
    monkeypatch.setattr(lexical, "tokenize", lambda s: tokenized.append(len(s)) or real(s))
    t0 = time.perf_counter()
    span = answering._fit(p, Span(p.start, p.end), ["irv"], 400)
    assert time.perf_counter() - t0 < 10
    assert sum(tokenized) <= 2 * len(text), f"tokenized {sum(tokenized):,} characters of a {len(text):,} one"
    quote = p.text[span.start - p.start : span.end - p.start]
    assert 300 < len(quote) <= 400
    before, after = p.text[: span.start - p.start], p.text[span.end - p.start :]
    assert (not before or before[-1] == " ") and (not after or after[0] == " ")


_LONG_WORD_SCRIPT = """
import resource, shutil, sys, time, tracemalloc
from pathlib import Path
sys.path.insert(0, {tests!r})
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # the old code needed 20 GB: fail, never swap
from conftest import FakeEmbedder
from qa.engine import Engine
from qa.settings import Settings

tmp = Path({tmp!r})
word = "lumon" * 40_000  # 200,000 letters
(tmp / "corpus" / "long.txt").write_text(
    f"The refinement team studied the word {{word}} before the storm ended.\\n\\n"
    f"Irving liked the word {{word}} very much, Burt said.\\n",
    encoding="utf-8",
)
engine = Engine(
    Settings(corpus_dir=str(tmp / "corpus"), index_dir=str(tmp / "index"), max_question_chars=300_000,
             max_history_chars=1_000_000, abstain_threshold=0.0, reader="picker"),
    embedder=FakeEmbedder(),
)
engine.build_index()
tracemalloc.start()
t0 = time.perf_counter()
a = engine.answer(f"What did the refinement team study, {{word}}?")
b = engine.answer("What did he like?", history=[{{"role": "user", "content": word}}, {{"role": "assistant", "content": word}}])
p = engine.retrieve(word)
seconds = time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1]
assert all(word not in c.quote for c in a.citations + b.citations), "a quote holds the huge word"
assert len(b.query) <= 300_000
print(seconds, peak)
"""


def test_a_200k_character_word_in_article_and_question_is_cheap(tmp_path, seed_corpus):
    """One 200,000-letter word (in an article, a question and the history): the old code was
    OOM-killed at 21 GB. Run in a child process with a 3 GB address-space limit."""
    script = _LONG_WORD_SCRIPT.format(tests=str(ROOT / "tests"), tmp=str(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        run = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("answering with a 200,000-letter word took over 120 s")
    assert run.returncode == 0, run.stderr[-3000:]
    seconds, peak = map(float, run.stdout.split()[-2:])
    assert seconds < 30, f"{seconds:.1f} s"
    assert peak < 64 * 1_000_000, f"peak {peak / 1e6:.0f} MB of Python memory for 3 requests"


# ---------------------------------------------------------------- history bounds


@pytest.fixture
def engine(make_engine, seed_corpus):
    return make_engine(seed_corpus)


def _refused(engine, fake_embedder, **kwargs) -> str:
    question = kwargs.pop("question", "What did he caption his post?")
    with pytest.raises(InputError) as info:
        engine.answer(question, **kwargs)
    assert fake_embedder.calls == 0, "refused before anything was embedded"
    assert not engine.settings.index_path.exists(), "refused before the index was built"
    msg = str(info.value)
    assert len(msg) < 400, msg
    return msg


def test_too_many_history_messages_is_refused_naming_the_bound(make_engine, seed_corpus, fake_embedder):
    engine = make_engine(seed_corpus, max_history_messages=4)
    turn = [{"role": "user", "content": "Who plays Mark?"}, {"role": "assistant", "content": "Adam Scott [1]"}]
    msg = _refused(engine, fake_embedder, history=turn * 3)
    assert "max_history_messages" in msg and "6" in msg and "4" in msg
    assert engine.answer("What did he caption his post?", history=turn * 2).query


def test_too_long_history_is_refused_naming_the_bound(make_engine, seed_corpus, fake_embedder):
    engine = make_engine(seed_corpus, max_history_chars=100)
    history = [{"role": "user", "content": "Who plays Mark?"}, {"role": "assistant", "content": "x " * 50}]
    msg = _refused(engine, fake_embedder, history=history)
    assert "max_history_chars" in msg and "115" in msg and "100" in msg


def test_a_10mb_history_is_refused_at_once(engine, fake_embedder):
    history = [{"role": "user", "content": "Who plays Mark? " * 1000} for _ in range(640)]
    t0 = time.perf_counter()
    msg = _refused(engine, fake_embedder, history=history)
    assert time.perf_counter() - t0 < 1.0
    assert "max_history" in msg


def test_default_history_bounds_fit_a_long_chat(engine):
    s = engine.settings
    assert s.max_history_messages >= 100 and s.max_history_chars >= 50 * (s.answer_max_chars + 200)


BAD_MESSAGES = [
    pytest.param("Who plays Mark?", "'Who plays Mark?'", id="str"),
    pytest.param(["user", "Who plays Mark?"], "['user',", id="list"),
    pytest.param({"role": "user"}, "content", id="no-content"),
    pytest.param({"content": "Who plays Mark?"}, "role", id="no-role"),
    pytest.param({"role": "robot", "content": "beep"}, "'robot'", id="role"),
    pytest.param({"role": None, "content": "hi"}, "None", id="role-None"),
    pytest.param({"role": "user", "content": 42}, "42", id="content-int"),
    pytest.param({"role": "user", "content": None}, "None", id="content-None"),
    pytest.param({"role": "user", "content": {"path": "x.png"}}, "'path'", id="content-dict"),
    pytest.param({"role": "user", "content": "x" * 10_000_000}, "max_history_chars", id="content-10MB"),
    pytest.param({"role": "user", "content": "Who\ud800?"}, "surrogate", id="surrogate"),
    pytest.param({"role": "user", "content": 10**5000}, "digits", id="huge-int"),
]


@pytest.mark.parametrize("message, named", BAD_MESSAGES)
def test_bad_history_message_is_refused_naming_it(engine, fake_embedder, message, named):
    history = [{"role": "user", "content": "Who plays Mark?"}, message]
    msg = _refused(engine, fake_embedder, history=history)
    assert "history" in msg and named in msg
    if named != "max_history_chars":
        assert "history[1]" in msg


def test_system_messages_and_extra_keys_are_accepted(engine):
    history = [
        {"role": "system", "content": "You answer from news articles."},
        {"role": "user", "content": "Who plays Mark?", "metadata": {"title": None}},
        {"role": "assistant", "content": "Adam Scott plays Mark. [1]", "options": []},
    ]
    assert "Mark" in engine.answer("What did he caption his post?", history=history).query


def test_history_may_be_a_tuple_or_empty(engine):
    assert engine.answer("Who plays Irving?", history=()).query == "Who plays Irving?"
    assert engine.answer("Who plays Irving?", history=[]).query == "Who plays Irving?"


def test_rewritten_query_is_cut_at_a_word_boundary():
    history = [{"role": "user", "content": "Who plays Mark in the Apple series " + "Severance " * 300 + "?"}]
    q = rewrite_query("What did he caption?", history, 2, max_chars=200)
    assert len(q) <= 200 and q.startswith("What did he caption? (Who plays Mark")
    assert q.split()[-1] in ("Severance", "series"), q
    assert rewrite_query("What did he caption?", history, 2) != q  # no bound: as before


def test_rewritten_query_never_exceeds_max_question_chars(make_engine, seed_corpus):
    engine = make_engine(seed_corpus, max_question_chars=120)
    history = [
        {"role": "user", "content": "Who plays Mark " + "and Irving " * 9 + "?"},
        {"role": "assistant", "content": "Adam Scott and John Turturro and Christopher Walken and Ben Stiller [1]"},
    ]
    a = engine.answer("What did he caption his post?", history=history)
    assert len(a.query) <= 120 and a.query.startswith("What did he caption his post? (")
    assert not a.query.endswith((" ", "(", ";"))


# ---------------------------------------------------------------- odd values


@pytest.mark.parametrize("method", ["retrieve", "answer"])
@pytest.mark.parametrize("question", ["Who\ud800?", "\udfffIrving", "Who plays \udc80Irving?"])
def test_lone_surrogates_are_refused_before_embedding(engine, fake_embedder, method, question):
    with pytest.raises(InputError) as info:
        getattr(engine, method)(question)
    msg = str(info.value)
    assert "question" in msg and "surrogate" in msg and "\\ud" in msg
    msg.encode("utf-8")  # the message itself is printable anywhere
    assert fake_embedder.calls == 0


ODD_KS = [
    pytest.param(10**5000, "5,001 digits", id="10**5000"),
    pytest.param(-(10**5000), "5,001 digits", id="-10**5000"),
    pytest.param(10**100, "101 digits", id="10**100"),
    pytest.param(float("nan"), "nan", id="nan"),
    pytest.param(float("inf"), "inf", id="inf"),
    pytest.param(5.0, "5.0", id="5.0"),
    pytest.param(False, "False", id="False"),
    pytest.param("5" * 10_000, "'555", id="long-str"),
    pytest.param([5], "[5]", id="list"),
    pytest.param(1 + 2j, "(1+2j)", id="complex"),
]


@pytest.mark.parametrize("method", ["retrieve", "answer"])
@pytest.mark.parametrize("k, named", ODD_KS)
def test_odd_k_is_refused_with_a_short_message(engine, fake_embedder, method, k, named):
    with pytest.raises(InputError) as info:
        getattr(engine, method)("Who plays Irving?", k=k)
    msg = str(info.value)
    assert "k must be" in msg and named in msg and len(msg) < 200, msg
    assert fake_embedder.calls == 0


@pytest.mark.parametrize(
    "question, named",
    [(True, "bool"), (7, "int"), ({"q": "Who?"}, "dict"), (["Who?"], "list"), (3.5, "float"), (object(), "object")],
)
def test_non_string_questions_are_refused_naming_their_type(engine, fake_embedder, question, named):
    with pytest.raises(InputError, match=f"question must be a string.*{named}"):
        engine.answer(question)
    assert fake_embedder.calls == 0


@pytest.mark.parametrize("call", ["answer", "retrieve", "build_index"])
@pytest.mark.parametrize(
    "folder, named",
    [("", "empty"), ("\x00", "NUL"), ("corpus\x00x", "NUL"), ("\ud800", "surrogate"), (5, "5"), (b"/tmp", "b'/tmp'")],
    ids=["empty", "nul", "nul-inside", "surrogate", "int", "bytes"],
)
@pytest.mark.parametrize("which", ["corpus_dir", "index_dir"])
def test_bad_folder_arguments_are_input_errors(monkeypatch, tmp_path, call, folder, named, which):
    import qa
    from qa import engine as engine_mod

    monkeypatch.setattr(engine_mod, "_ENGINES", {})
    monkeypatch.setattr(engine_mod, "_EMBEDDERS", {})
    folders = {"corpus_dir": tmp_path / "corpus", "index_dir": tmp_path / "index", which: folder}
    with pytest.raises(InputError) as info:
        if call == "build_index":
            qa.build_index(folders["corpus_dir"], folders["index_dir"])
        else:
            getattr(qa, call)("Who plays Irving?", corpus_dir=folders["corpus_dir"], index_dir=folders["index_dir"])
    msg = str(info.value)
    assert which in msg and named in msg and len(msg) < 200
    msg.encode("utf-8")
    assert engine_mod._EMBEDDERS == {}


class _BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    "value, expected",
    [
        (5, "5"),
        ("five", "'five'"),
        (None, "None"),
        (True, "True"),
        (10**5000, "an integer of 5,001 digits"),
        (-(10**4400), "a negative integer of 4,401 digits"),
        ("Who\ud800?", "'Who\\ud800?'"),
    ],
    ids=["int", "str", "None", "bool", "10**5000", "-10**4400", "surrogate"],
)
def test_show_renders_values_safely(value, expected):
    from qa.errors import show

    assert show(value) == expected


@pytest.mark.parametrize(
    "value", ["x" * 10_000_000, [10**5000], {"a": "b" * 10**6}, _BadRepr(), b"\xff" * 1000, list(range(10**5))]
)
def test_show_is_short_for_anything(value):
    from qa.errors import show

    s = show(value)
    assert isinstance(s, str) and 0 < len(s) <= 80
    s.encode("utf-8")


# ---------------------------------------------------------------- quotes checked against the file


def _tampering(monkeypatch, *, every_load: bool):
    """load_index returns an index whose chunk texts are not the article's (a stale or altered
    index that passed its checksums). Tampers only the first load unless ``every_load``."""
    real = index_mod.load_index
    loads = []  # every index loaded (build_index's own look for a previous one included)

    def load(*args, **kwargs):
        idx = real(*args, **kwargs)
        if idx is not None:
            loads.append(idx)
            if every_load or len(loads) == 1:
                idx.chunks = [
                    Chunk(
                        c.source,
                        c.start,
                        c.end,
                        c.text.replace("Turturro", "Tarantin").replace("Irving", "Ervin"),
                        c.sentences,
                    )
                    for c in idx.chunks
                ]
        return idx

    monkeypatch.setattr(index_mod, "load_index", load)
    return loads


def _verbatim(result, corpus_dir: Path) -> None:
    passages = result if isinstance(result, list) else result.passages
    for p in passages:
        assert (corpus_dir / p.source).read_text(encoding="utf-8")[p.start : p.end] == p.text
    for c in [] if isinstance(result, list) else result.citations:
        assert (corpus_dir / c.source).read_text(encoding="utf-8")[c.start : c.end] == c.quote


def test_a_tampered_index_is_rebuilt_and_never_quoted(make_engine, seed_corpus, monkeypatch, caplog):
    engine = make_engine(seed_corpus, abstain_threshold=0.0)
    loads = _tampering(monkeypatch, every_load=False)
    with caplog.at_level(logging.WARNING, logger="qa.engine"):
        a = engine.answer("Who plays Irving?")
    assert len(loads) >= 2, "the index was rebuilt"
    assert "Tarantin" not in a.text and "Ervin" not in a.text and "Irving" in a.text
    _verbatim(a, seed_corpus)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert ".txt" in warned and "rebuild" in warned


def test_retrieve_passages_are_checked_too(make_engine, seed_corpus, monkeypatch):
    engine = make_engine(seed_corpus)
    loads = _tampering(monkeypatch, every_load=False)
    passages = engine.retrieve("Who plays Irving?", k=5)
    assert len(loads) >= 2
    assert not any("Ervin" in p.text for p in passages)
    _verbatim(passages, seed_corpus)


@pytest.mark.parametrize("method", ["retrieve", "answer"])
def test_an_index_that_stays_wrong_is_an_error_naming_the_file(make_engine, seed_corpus, monkeypatch, method):
    engine = make_engine(seed_corpus, abstain_threshold=0.0)
    _tampering(monkeypatch, every_load=True)
    with pytest.raises(IndexCorruptError, match=r"\d+_[0-9a-f]+\.txt"):
        getattr(engine, method)("Who plays Irving?")


def test_an_article_edited_since_the_build_is_picked_up(make_engine, seed_corpus):
    engine = make_engine(seed_corpus, abstain_threshold=0.0)
    engine.build_index()
    for f in seed_corpus.glob("*.txt"):
        f.write_text(f.read_text(encoding="utf-8").replace("Irving", "Irving Bailiff"), encoding="utf-8")
    a = engine.answer("Who plays Irving?")
    _verbatim(a, seed_corpus)
    assert "Irving Bailiff" in a.text


def test_a_source_outside_the_corpus_is_never_read(make_engine, seed_corpus, tmp_path, monkeypatch):
    (tmp_path / "secret.txt").write_text("Irving is played by the secret.", encoding="utf-8")
    engine = make_engine(seed_corpus)
    real = index_mod.load_index

    def load(*args, **kwargs):
        idx = real(*args, **kwargs)
        if idx is not None:
            idx.chunks = [Chunk("../secret.txt", c.start, c.end, c.text, c.sentences) for c in idx.chunks]
        return idx

    monkeypatch.setattr(index_mod, "load_index", load)
    with pytest.raises(IndexCorruptError, match="secret"):
        engine.retrieve("Who plays Irving?")


def test_a_warm_answer_does_not_reread_the_articles(engine, monkeypatch):
    engine.answer("Who plays Irving?")
    engine.retrieve("Who directed Severance?")
    reads = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or real(self))
    engine.answer("Who plays Irving?")
    engine.retrieve("Who directed Severance?")
    assert reads == []


def test_answers_still_verify_on_the_seed_corpus(engine, seed_corpus):
    for q in ["Who plays Irving?", "Who directed and executive produced Severance?", "zebra quantum marmalade"]:
        _verbatim(engine.answer(q), seed_corpus)
    assert json.dumps(engine.answer("Who plays Irving?").to_dict())
