"""The dev question set on the seed articles, and a small SQuAD closed-corpus slice, with the
real model (slow). Scored exactly as ../shared/eval/README.md says, by qa.evaluation."""

from __future__ import annotations

import json

import pytest
from conftest import DEV_BORDERLINE, DEV_KNOWN_MISSES, DEV_SET, SEED_CORPUS

from qa import evaluation as ev

pytestmark = pytest.mark.slow

_ROWS = ev.read_dev(DEV_SET) if DEV_SET.exists() else []


READERS = ("trained", "picker")  # the default first


@pytest.fixture(scope="module")
def dev_results(real_engine):
    """Per reader, the dev set's results (each reader asked through ``Settings.reader``, as a user
    who sets QA_READER would)."""
    if not _ROWS:
        pytest.skip(f"{DEV_SET} not found")
    from qa.engine import Engine

    out = {}
    for name in READERS:
        engine = real_engine
        if engine.settings.reader != name:
            engine = Engine(real_engine.settings.replace(reader=name), embedder=real_engine.embedder)
        out[name] = {r["id"]: r for r in ev.run_dev(engine, _ROWS, SEED_CORPUS)}
    return out


def _ids(kind: str) -> list:
    if kind == "answerable":
        ids = [r["id"] for r in _ROWS if "turns" not in r and r.get("answerable")]
    elif kind == "unanswerable":
        ids = [r["id"] for r in _ROWS if "turns" not in r and not r.get("answerable")]
    else:
        ids = [r["id"] for r in _ROWS if "turns" in r]
    known = DEV_KNOWN_MISSES
    return [
        pytest.param(
            reader, i, marks=pytest.mark.xfail(strict=(reader, i) not in DEV_BORDERLINE, reason=known[reader][i])
        )
        if i in known[reader]
        else (reader, i)
        for reader in READERS
        for i in ids
    ] or [("trained", "(none)")]


def test_the_default_reader_is_the_first_asked(real_engine):
    assert real_engine.settings.reader == READERS[0]


@pytest.mark.parametrize(("reader", "qid"), _ids("answerable"))
def test_answerable_question_is_answered_with_gold_string_and_source(dev_results, reader, qid):
    r = dev_results[reader][qid]
    turn = r["turns"][0]
    assert r["passed"], f"{qid} {turn['question']!r}: {turn['problems']} — answer {turn['text']!r}"


@pytest.mark.parametrize(("reader", "qid"), _ids("unanswerable"))
def test_unanswerable_question_abstains(dev_results, reader, qid):
    r = dev_results[reader][qid]
    turn = r["turns"][0]
    assert turn["abstained"], f"{qid} {turn['question']!r} was answered: {turn['text']!r}"
    assert r["passed"]


@pytest.mark.parametrize(("reader", "qid"), _ids("followup"))
def test_follow_up_turns_are_answered(dev_results, reader, qid):
    r = dev_results[reader][qid]
    assert r["passed"], json.dumps(r["turns"], indent=1, ensure_ascii=False)


def test_every_citation_verbatim_and_answer_only_quotes(real_engine):
    """All dev questions, plus a few more: quotes are file_text[start:end], text is only quotes."""
    questions = [t["question"] for r in _ROWS for t in (r.get("turns") or [r])] + [
        "Who is Christopher Walken?",
        "What did Turturro say about season 2?",
        "Where is Lumon?",
    ]
    for q in questions:
        a = real_engine.answer(q)
        assert ev.citation_problems(a, SEED_CORPUS) == [], q
        if a.abstained:
            assert a.text == "" and a.citations == []
        else:
            assert ev.only_quotes(a) and a.citations


# ---------------------------------------------------------------- SQuAD smoke slice

SMOKE_ARTICLES = 4  # the first four articles: 0 (left out), 1, 2, 3 (in corpus)
SMOKE_QUESTIONS = 100


@pytest.fixture(scope="module")
def squad_slice(tmp_path_factory, real_embedder):
    if not ev.DEFAULT_SQUAD.exists():
        pytest.skip(f"{ev.DEFAULT_SQUAD} not found")
    from qa.engine import Engine
    from qa.settings import Settings

    data = json.loads(ev.DEFAULT_SQUAD.read_text(encoding="utf-8"))
    data = {**data, "data": data["data"][:SMOKE_ARTICLES]}
    root = tmp_path_factory.mktemp("squad-slice")
    questions = ev.write_squad_corpus(data, root / "corpus")
    engine = Engine(Settings(corpus_dir=str(root / "corpus"), index_dir=str(root / "index")), embedder=real_embedder)
    engine.build_index()
    sample = ev.sample_questions(questions, SMOKE_QUESTIONS, seed=0)
    return ev.run_squad(engine, sample, baselines=False, progress=False)


def test_squad_slice_sane(squad_slice):
    m = squad_slice
    ours = m["ours"]
    assert m["in_corpus"] > 40 and m["out_of_corpus"] > 10
    # lower bounds well below the full-protocol targets: this slice catches breakage, not drift
    assert ours["R@5"] >= 0.85, ours
    assert ours["R@1"] >= 0.60, ours
    assert ours["answer_accuracy"] >= 0.50, ours
    assert ours["answered_rate"] >= 0.70, ours
    assert ours["abstention_out_of_corpus"] >= 0.50, ours
