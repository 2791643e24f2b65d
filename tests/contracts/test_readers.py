"""The Reader contract (qa/protocols.py), run by every implementation: the sentence picker
(fast, with the fake embedder) and the trained span reader (slow: its real network)."""

from __future__ import annotations

import pytest

from qa import retrieval
from qa.protocols import Reader
from qa.types import Answer

QUESTIONS = [
    "Who directed the second season of Severance?",
    "When did the second season premiere?",
    "What is the boiling point of tungsten?",
]


@pytest.fixture(params=["picker", pytest.param("trained", marks=pytest.mark.slow)])
def setup(request, seed_corpus, make_engine):
    engine = make_engine(seed_corpus, reader=request.param)
    engine.build_index()
    return engine, engine.reader(request.param)


def _read(engine, reader: Reader, question: str) -> Answer:
    hits = retrieval.search(engine.index, engine.embedder, engine.settings, question, 5)
    return reader.read(question, hits, engine.index, question)


def test_implements_the_protocol(setup):
    _, reader = setup
    assert isinstance(reader, Reader) and reader.name in ("picker", "trained")


@pytest.mark.parametrize("question", QUESTIONS)
def test_quotes_are_verbatim_and_cited(setup, seed_corpus, question):
    engine, reader = setup
    answer = _read(engine, reader, question)
    assert answer.reader == reader.name
    assert 0.0 <= answer.confidence <= 1.0
    if answer.abstained:
        assert answer.text == "" and answer.citations == [] and answer.message
        return
    assert answer.citations and answer.text
    for n, c in enumerate(answer.citations, start=1):
        assert c.number == n and f"[{n}]" in answer.text
        text = (seed_corpus / c.source).read_text(encoding="utf-8")
        assert text[c.start : c.end] == c.quote and c.quote in answer.text
    if answer.span is not None:
        text = (seed_corpus / answer.span.source).read_text(encoding="utf-8")
        assert text[answer.span.start : answer.span.end] == answer.span.text
        assert any(
            c.source == answer.span.source and c.start <= answer.span.start and answer.span.end <= c.end
            for c in answer.citations
        )


def test_no_passages_means_an_abstention(setup):
    engine, reader = setup
    hits = retrieval.search(engine.index, engine.embedder, engine.settings, "Lumon", 5)
    empty = retrieval.Hits([], hits.query_vector, hits.query_terms)
    answer = reader.read("Who works at Lumon?", empty, engine.index, "Who works at Lumon?")
    assert answer.abstained and answer.citations == [] and answer.reader == reader.name
