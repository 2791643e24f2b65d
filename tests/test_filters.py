"""since=/until=/sources= and periods named in questions restrict the articles searched. The seed
articles are dated 2025-06-10 (000), 2024-02-01 (001) and 2024-01-31 (002)."""

from __future__ import annotations

import datetime as dt

import pytest

from qa.errors import InputError
from qa.filters import Filter, check, from_question

SEED_DATES = {"000_6db7c8a60c1e6205.txt": "2025-06-10", "001_6f09f507c09e51e5.txt": "2024-02-01",
              "002_e1a1f62939dbe07c.txt": "2024-01-31"}  # fmt: skip


@pytest.fixture
def engine(seed_corpus, make_engine):
    e = make_engine(seed_corpus)
    e.build_index()
    assert {s: m["date"] for s, m in e.index.documents.items()} == SEED_DATES
    return e


def _sources(passages) -> set[str]:
    return {p.source for p in passages}


@pytest.mark.parametrize(
    "since, until, want",
    [
        ("2025", None, {"000_6db7c8a60c1e6205.txt"}),
        (None, "2024-01-31", {"002_e1a1f62939dbe07c.txt"}),
        ("2024-02", "2024-02", {"001_6f09f507c09e51e5.txt"}),
        (dt.date(2024, 1, 1), 2024, {"001_6f09f507c09e51e5.txt", "002_e1a1f62939dbe07c.txt"}),
    ],
)
def test_since_and_until_restrict_passages(engine, since, until, want):
    got = engine.retrieve("Who plays Irving in Severance?", k=20, since=since, until=until)
    assert got and _sources(got) == want


def test_answers_come_only_from_the_period_and_say_so(engine):
    a = engine.answer("Who plays Irving?", since="2025-01-01")
    assert a.filter == "articles dated 2025-01-01 or later"
    assert all(SEED_DATES[c.source] >= "2025-01-01" for c in a.citations)
    assert all(SEED_DATES[p.source] >= "2025-01-01" for p in a.passages)
    nothing = engine.answer("Who plays Irving?", since="2030")
    assert nothing.abstained and nothing.passages == [] and "2030-01-01" in nothing.filter


def test_a_period_named_in_the_question_restricts_the_search(engine):
    a = engine.answer("What did Turturro say about Severance in 2025?")
    assert a.filter == "articles dated 2025-01-01 to 2025-12-31"
    assert _sources(a.passages) == {"000_6db7c8a60c1e6205.txt"}
    b = engine.answer("What did Turturro tease before February 2024?")
    assert _sources(b.passages) == {"002_e1a1f62939dbe07c.txt"}


def test_a_period_no_article_is_dated_in_searches_everything(engine):
    """ "Nominated for an Emmy in 2022" is told by an article of 2024: a period no article is
    dated in is the event's time, not the article's."""
    a = engine.answer("Which award was Turturro nominated for in 2022?")
    assert a.filter == "" and len(_sources(a.passages)) > 1


def test_sources_by_file_name_or_outlet(engine):
    got = engine.retrieve("Who plays Irving?", k=20, sources=["002_e1a1f62939dbe07c.txt"])
    assert _sources(got) == {"002_e1a1f62939dbe07c.txt"}
    assert Filter(sources=("Example News",)).allows("x.txt", {"outlet": "example news"})
    assert Filter(sources=("news.example",)).allows("x.txt", {"url": "https://www.news.example/a"})
    assert not Filter(sources=("Other",)).allows("x.txt", {"outlet": "Example News"})


@pytest.mark.parametrize(
    "kw, named",
    [({"since": "31/01/2024"}, "since"), ({"until": "2024-13"}, "until"), ({"since": True}, "since"),
     ({"sources": [""]}, "sources"), ({"sources": 5}, "sources")],
)  # fmt: skip
def test_bad_filters_are_input_errors_naming_them(engine, fake_embedder, kw, named):
    calls = fake_embedder.calls
    with pytest.raises(InputError, match=named):
        engine.answer("Who plays Irving?", **kw)
    assert fake_embedder.calls == calls


@pytest.mark.parametrize(
    "question, since, until",
    [
        ("What happened in 2025?", "2025-01-01", "2025-12-31"),
        ("Who spoke in June 2025?", "2025-06-01", "2025-06-30"),
        ("What was said in Feb. 2024?", "2024-02-01", "2024-02-29"),
        ("What was said before March 2024?", None, "2024-02-29"),
        ("Anything after 2024?", "2025-01-01", None),
        ("What changed since 2023?", "2023-01-01", None),
        ("Who won between 2023 and 2024?", "2023-01-01", "2024-12-31"),
        ("Who plays Irving?", None, None),
        ("Is 2025 the year of Severance?", None, None),
    ],
)
def test_periods_in_questions(question, since, until):
    assert from_question(question) == Filter(since, until)


def test_check_and_merge():
    assert check("2024", "2024-06") == Filter("2024-01-01", "2024-06-30")
    assert Filter("2024-01-01", None).merged(Filter("2023-01-01", "2024-12-31")) == Filter("2024-01-01", "2024-12-31")
    assert not Filter() and Filter(sources=("a",))
