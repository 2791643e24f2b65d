"""Answer invariants with the fake embedder: quotes verbatim at their offsets, text made only
of quotes and markers, abstentions cite nothing, follow-up rewriting."""

from __future__ import annotations

import re

import pytest

from qa.answering import quotable, rewrite_query


def _check_answer(answer, corpus_dir):
    if answer.abstained:
        assert answer.text == "" and answer.citations == []
        return
    remaining = answer.text
    for c in answer.citations:
        raw = (corpus_dir / c.source).read_text(encoding="utf-8")
        assert raw[c.start : c.end] == c.quote
        assert f"[{c.number}]" in answer.text
        remaining = remaining.replace(f"{c.quote} [{c.number}]", "", 1)
    assert remaining.strip() == "", f"answer text has words that are not cited quotes: {remaining!r}"
    assert len("".join(c.quote for c in answer.citations)) <= 400
    assert [c.number for c in answer.citations] == list(range(1, len(answer.citations) + 1))


QUESTIONS = [
    "Who directed and executive produced Severance?",
    "Where was the train station farewell scene filmed?",
    "Which strikes delayed production?",
    "What did Adam Scott caption his Instagram post?",
    "Who plays Irving?",
    "zebra quantum marmalade",
]


@pytest.mark.parametrize("question", QUESTIONS)
def test_answers_are_verbatim_quotes_with_markers(make_engine, seed_corpus, question):
    engine = make_engine(seed_corpus, abstain_threshold=0.0)
    answer = engine.answer(question)
    _check_answer(answer, seed_corpus)
    assert 0.0 <= answer.confidence <= 1.0
    assert 1 <= len(answer.passages) <= 5
    scores = [p.score for p in answer.passages]
    assert scores == sorted(scores, reverse=True)


def test_abstention_cites_nothing_and_offers_passages(make_engine, seed_corpus):
    engine = make_engine(seed_corpus, abstain_threshold=1.01)  # nothing clears the bar
    answer = engine.answer("Who directed and executive produced Severance?")
    assert answer.abstained and answer.text == "" and answer.citations == []
    assert answer.passages, "an abstention still offers the closest passages"
    assert "not" in answer.message.lower()


def test_long_sentences_are_cut_to_the_limit(make_engine, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    words = " ".join(f"word{i}" for i in range(150))
    (corpus / "long.txt").write_text(
        f"The lighthouse keeper counted {words} before the storm ended.\n", encoding="utf-8"
    )
    engine = make_engine(corpus, abstain_threshold=0.0, answer_max_chars=120)
    answer = engine.answer("What did the lighthouse keeper count before the storm?")
    _check_answer(answer, corpus)
    assert all(len(c.quote) <= 120 for c in answer.citations)


def test_captions_and_headings_are_never_quoted():
    assert not quotable("Apple TV+", 4)
    assert not quotable("RELATED CONTENT:", 4)
    assert not quotable("Production Progress and Expected Premiere", 4)
    assert not quotable("Severance, Season 1-2, Streaming now, Apple TV+", 4)
    assert quotable("Mr. & Mrs. Smith premieres on Prime Video on Feb. 2.", 4)


def test_boilerplate_never_becomes_an_answer(make_engine, seed_corpus):
    engine = make_engine(seed_corpus, abstain_threshold=0.0)
    for q in ["Apple TV+", "RELATED CONTENT", "Behind the Scenes"]:
        answer = engine.answer(q)
        for c in answer.citations:
            assert not re.fullmatch(r"\s*(Apple TV\+|RELATED CONTENT:|Behind the Scenes)\s*", c.quote)


def test_follow_up_rewrite_uses_history():
    history = [
        {"role": "user", "content": "Who plays Mark?"},
        {"role": "assistant", "content": "In a photo posted to Instagram, Scott -- who plays Mark -- is seen [1]"},
    ]
    q = rewrite_query("What did he caption his post?", history)
    assert q.startswith("What did he caption his post?")
    assert "Who plays Mark?" in q


def test_standalone_question_is_not_rewritten():
    history = [{"role": "user", "content": "Who plays Mark?"}, {"role": "assistant", "content": "x [1]"}]
    assert rewrite_query("Who directed Severance?", history) == "Who directed Severance?"
    assert rewrite_query("Who plays Mark?", None) == "Who plays Mark?"


def test_answer_to_dict_is_json_ready(make_engine, seed_corpus):
    import json

    answer = make_engine(seed_corpus, abstain_threshold=0.0).answer("Who directed Severance?")
    d = json.loads(json.dumps(answer.to_dict()))
    assert set(d) >= {"text", "citations", "confidence", "abstained", "passages", "query"}
    for c in d["citations"]:
        assert set(c) >= {"number", "source", "title", "date", "start", "end", "quote"}
