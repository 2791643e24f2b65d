"""Follow-up questions with the real model (slow): the pronoun is resolved from the history."""

from __future__ import annotations

import pytest

from qa.evaluation import normalize_dev

pytestmark = pytest.mark.slow


def _history(*turns):
    out = []
    for q, a in turns:
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": a.text}]
    return out


def test_who_plays_mark_then_what_did_he_caption(real_engine):
    first = real_engine.answer("Who plays Mark?")
    assert not first.abstained and "scott" in normalize_dev(first.text)
    second = real_engine.answer("What did he caption his post?", history=_history(("Who plays Mark?", first)))
    assert not second.abstained
    assert "lovely being back at the office" in normalize_dev(second.text)
    assert second.query != "What did he caption his post?" and "Mark" in second.query
    assert "." not in second.query.split("(", 1)[1], f"names in the rewrite cross a sentence end: {second.query!r}"


def test_a_standalone_question_after_a_chat_is_not_rewritten(real_engine):
    first = real_engine.answer("Who plays Mark?")
    a = real_engine.answer(
        "Who directed and executive produced Severance?", history=_history(("Who plays Mark?", first))
    )
    assert a.query == "Who directed and executive produced Severance?"
    assert "ben stiller" in normalize_dev(a.text)
