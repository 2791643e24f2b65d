"""qa/ui.py without a browser: answer rendering, refusals, the chat turn, uploads (fake embedder)."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import pytest

from qa import ui
from qa.corpus import parse_document
from qa.types import Answer, Citation, Passage

IRVING = '"We\'ve done a lot of it, but now they have to finish the rest," Turturro, who plays Lumon Industries employee Irving, says.'
NEXT_IN_PARAGRAPH = '"There will be a lot of twists and turns."'
NEXT_PARAGRAPH = "Apple TV+"
SOURCE = "002_e1a1f62939dbe07c.txt"
LIGHTHOUSE = (
    b"date 2025-03-02\n# The Gullwing lighthouse\n\n"
    b"The Gullwing lighthouse on Marrow Point is kept by Ottilie Brandvold, who repainted its lamp room cobalt blue.\n"
)


@pytest.fixture
def engine(make_engine, seed_corpus):
    e = make_engine(seed_corpus)
    e.build_index()
    return e


def cite(engine, source: str, quote: str, number: int = 1) -> Citation:
    text = (engine.settings.corpus_path / source).read_text(encoding="utf-8")
    start = text.index(quote)
    meta = engine.index.manifest["documents"][source]
    return Citation(number, source, meta["title"], meta["date"], start, start + len(quote), quote)


def passage(source: str = SOURCE, text: str = "Some passage text.", score: float = 0.5) -> Passage:
    return Passage(text=text, score=score, source=source, title="A title", date="2024-01-31", start=0, end=len(text))


def answer_for(citations: list[Citation], **kw) -> Answer:
    text = " ".join(f"{c.quote} [{c.number}]" for c in citations)
    return Answer(text=text, citations=citations, confidence=kw.pop("confidence", 0.87), abstained=False, **kw)


def element(page: str, cls: str) -> str:
    """Inner HTML of the first element with this class (elements of these tests never nest their own tag)."""
    m = re.search(rf'<(\w+) class="{cls}"[^>]*>(.*?)</\1>', page, re.S)
    assert m, f"no element of class {cls}"
    return m.group(2)


def corpus_state(engine) -> tuple[list[str], str]:
    folder = engine.settings.corpus_path
    return sorted(p.name for p in folder.iterdir()), (engine.settings.index_path / "CURRENT").read_text()


# ---------------------------------------------------------------- rendering answers


def test_markers_link_to_their_source_cards(engine):
    c1 = cite(engine, SOURCE, IRVING, 1)
    c2 = cite(engine, "000_6db7c8a60c1e6205.txt", "Burt couldn’t bring himself to harm Irving", 2)
    out = ui.render_answer(answer_for([c1, c2], passages=[passage()]), "Who plays Irving?", engine, uid="t")
    for n, c in ((1, c1), (2, c2)):
        assert f'<a class="qa-marker" href="#qa-t-{n}" title="source {n}">[{n}]</a>' in out
        card = out[out.index(f'id="qa-t-{n}"') :]
        assert html.escape(c.title) in card[:600] and c.source in card[:600] and c.date in card[:600]
    assert "confidence 0.87 (high)" in out and 'style="width:87%"' in out
    assert '<details class="qa-passages"><summary>Retrieved passages (1)</summary>' in out
    assert "searched for" not in out and "qa-refusal" not in out


def test_quote_is_marked_inside_its_paragraph(engine):
    out = ui.render_answer(answer_for([cite(engine, SOURCE, IRVING)]), "q", engine, uid="t")
    context = element(out, "qa-context")
    assert f"<mark>{html.escape(IRVING)}</mark>" in context
    assert html.escape(NEXT_IN_PARAGRAPH) in context  # the rest of its paragraph
    assert NEXT_PARAGRAPH not in context and "Rachel Smith" not in context  # not the neighbouring paragraphs


def test_whole_article_opens_with_the_quote_marked(engine):
    out = ui.render_answer(answer_for([cite(engine, SOURCE, IRVING)]), "q", engine, uid="t")
    article = out[out.index('<details class="qa-article">') :]
    article = article[: article.index("</details>")]
    assert "<summary>Open the whole article</summary>" in article
    assert f"<mark>{html.escape(IRVING)}</mark>" in article
    assert "Rachel Smith" in article and "date 2024-01-31" not in article  # the body, without the header
    assert article.count("<p>") >= 5  # paragraphs kept


def test_paragraph_bounds_clip_long_paragraphs_but_never_the_quote():
    text = "word " * 400 + "THE QUOTE." + " word" * 400
    start = text.index("THE QUOTE.")
    ps, pe = ui.paragraph_bounds(text, start, start + 10)
    assert ps <= start and pe >= start + 10
    assert pe - ps <= ui.CONTEXT_MAX_CHARS + 20


def test_corpus_text_is_html_escaped(make_engine, seed_corpus):
    (seed_corpus / "evil.txt").write_text(
        'date 2025-01-01\n# <b>Bold</b> & co\n\nThe <script>alert(1)</script> tag & "quotes" stay text here.\n',
        encoding="utf-8",
    )
    engine = make_engine(seed_corpus)
    engine.build_index()
    c = cite(engine, "evil.txt", 'The <script>alert(1)</script> tag & "quotes" stay text here.')
    p = passage("evil.txt", "<img src=x onerror=alert(1)>")
    out = ui.render_answer(answer_for([c], passages=[p], query="<i>q</i>"), "q", engine, uid="t")
    assert "<script>" not in out and "<img" not in out and "<i>" not in out and "<b>Bold" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt; tag &amp; &quot;quotes&quot;" in out
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in out
    refusal = ui.render_answer(Answer(text="", passages=[p], message="<u>no</u>"), "q", engine, uid="t")
    assert "<img" not in refusal and "<u>" not in refusal and "&lt;img" in refusal


def test_rendered_turn_is_one_html_block_without_newlines(engine):
    p = passage(text="First paragraph.\n\nSecond paragraph\nwith a line break.")
    for a in (answer_for([cite(engine, SOURCE, IRVING)], passages=[p]), Answer(text="", passages=[p])):
        out = ui.render_answer(a, "q", engine)
        assert "\n" not in out and "First paragraph.<br><br>Second paragraph<br>with a line break." in out


def test_changed_file_shows_only_the_quote_with_a_note(engine):
    c = cite(engine, SOURCE, IRVING)
    path = engine.settings.corpus_path / SOURCE
    path.write_text(path.read_text(encoding="utf-8") + "\nA new line.\n", encoding="utf-8")
    out = ui.render_answer(answer_for([c]), "q", engine, uid="t")
    assert f"<mark>{html.escape(IRVING)}</mark>" in out
    assert "changed since it was indexed" in out and "qa-article" not in out


def test_refusal_has_its_own_style_and_lists_related_passages(engine):
    ps = [passage(text=f"Related passage number {i}.") for i in range(5)]
    msg = "The articles do not answer this question."
    out = ui.render_answer(Answer(text="", passages=ps, message=msg, confidence=0.1), "capital of France?", engine)
    refusal = out[out.index('<div class="qa-refusal">') :]
    assert "Not in the articles" in refusal and msg in refusal
    assert "Related, not an answer" in refusal
    assert [f"Related passage number {i}." in refusal for i in range(5)] == [True] * ui.RELATED_MAX + [False] * (
        5 - ui.RELATED_MAX
    )
    assert "qa-marker" not in out and "qa-source" not in out and "confidence" not in out


def test_searched_for_is_shown_when_the_query_was_rewritten(engine):
    c = cite(engine, SOURCE, IRVING)
    rewritten = ui.render_answer(
        answer_for([c], query="What did he say? (Who plays Irving?)"), "What did he say?", engine
    )
    assert "searched for: <q>What did he say? (Who plays Irving?)</q>" in rewritten
    same = ui.render_answer(answer_for([c], query="Who plays Irving?"), "Who plays Irving?", engine)
    assert "searched for" not in same


@pytest.mark.parametrize(("confidence", "label"), [(0.95, "high"), (0.6, "medium"), (0.2, "low")])
def test_confidence_labels(confidence, label):
    assert ui.confidence_label(confidence, 0.5) == label
    assert f"({label})" in ui.render_confidence(confidence, 0.5)


# ---------------------------------------------------------------- the chat turn


def test_empty_question_is_answered_politely_without_calling_qa(engine, monkeypatch):
    monkeypatch.setattr(engine, "answer", lambda *a, **k: pytest.fail("qa was called"))
    for q in ("", "   \n", None):
        reply = ui.respond(engine, q, [])
        assert reply.warning.startswith("Please type a question") and reply.html == "" and reply.history == []


def test_qa_errors_become_polite_warnings(engine):
    reply = ui.respond(engine, "x" * 100_000, [])
    assert reply.warning.startswith("Sorry, I can't answer that:") and "characters long" in reply.warning
    assert "Traceback" not in reply.warning and reply.answer is None


def test_unexpected_errors_become_polite_warnings(engine, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("internal detail")

    monkeypatch.setattr(engine, "answer", boom)
    reply = ui.respond(engine, "Who plays Irving?", [])
    assert "something went wrong" in reply.warning and "internal detail" not in reply.warning


@pytest.mark.parametrize(
    ("question", "history", "needle"),
    [
        (1, None, "question must be text. Currently, it is int 1"),
        (True, None, "question must be text. Currently, it is bool True"),
        (1.5, None, "question must be text. Currently, it is float 1.5"),
        (["Who plays Irving?"], None, "question must be text. Currently, it is list ['Who plays Irving?']"),
        ({"q": "Who?"}, None, "question must be text. Currently, it is dict {'q': 'Who?'}"),
        ("Who plays Irving?", 5, "history must be a list of {'role', 'content'} messages. Currently, it is int 5"),
        (
            "Who plays Irving?",
            1.5,
            "history must be a list of {'role', 'content'} messages. Currently, it is float 1.5",
        ),
        (
            "Who plays Irving?",
            True,
            "history must be a list of {'role', 'content'} messages. Currently, it is bool True",
        ),
        (
            "Who plays Irving?",
            "Who plays Mark?",
            "history must be a list of {'role', 'content'} messages. Currently, it is str",
        ),
        ("Who plays Irving?", {"role": "user", "content": "x"}, "Currently, it is dict"),
        ("Who plays Irving?", [5], "history[0] must be a {'role', 'content'} message. Currently, it is int 5"),
        ("Who plays Irving?", [{"role": "user"}], "history[0] must be a {'role', 'content'} message"),
        ("Who plays Irving?", [{"role": "user", "content": 5}], "history[0]['content'] must be text"),
        ("Who plays Irving?", [{"role": "robot", "content": "hi"}], "history[0]['role'] must be one of"),
    ],
)
def test_inputs_it_cannot_use_get_a_message_naming_the_value(engine, monkeypatch, question, history, needle):
    monkeypatch.setattr(engine, "answer", lambda *a, **k: pytest.fail("qa was called"))
    reply = ui.respond(engine, question, history)
    assert reply.warning.startswith("Sorry, I can't answer that: ") and needle in reply.warning
    assert reply.answer is None and reply.html == "" and reply.history == []


@pytest.mark.parametrize(
    "history",
    [
        [{"role": "user", "content": "x" * 10_000_000}],
        [{"role": "user", "content": "Who plays Mark?"}] * 1_000_000,
    ],
    ids=["10MB-message", "a-million-messages"],
)
def test_huge_history_is_refused_quickly_and_not_echoed(engine, monkeypatch, history):
    monkeypatch.setattr(engine, "answer", lambda *a, **k: pytest.fail("qa was called"))
    t0 = time.perf_counter()
    reply = ui.respond(engine, "Who plays Irving?", history)
    assert time.perf_counter() - t0 < 0.5
    assert "history" in reply.warning and "the limit is" in reply.warning
    assert len(reply.warning) < 300 and reply.history == []


def test_huge_question_is_not_echoed(engine):
    reply = ui.respond(engine, "y" * 10_000_000, [])
    assert "characters long" in reply.warning and len(reply.warning) < 300


def test_chat_keeps_only_the_recent_history(engine):
    history: list[dict] = []
    for _ in range(ui.CHAT_HISTORY_KEEP):
        history = ui.respond(engine, "Who plays Irving in Severance?", history).history
    assert len(history) == ui.CHAT_HISTORY_KEEP  # older turns are dropped, so the chat never hits a limit
    assert ui.respond(engine, "What did he say?", history).answer is not None


MARKDOWN_TRAPS = [
    "![p](http://host.example/q.png) Who plays Irving?",
    "[click](http://host.example/) and <img src=http://host.example/x.png> and www.host.example",
    "**bold** _it_ `code` # head\n> quote\n- item\n1. one | a | b |\n$x$ ~~s~~ \\ <https://host.example>",
]


@pytest.mark.parametrize("question", MARKDOWN_TRAPS)
def test_question_is_shown_as_text_not_markdown(question):
    out = ui.render_question(question)
    assert out.startswith('<div class="qa-question">') and out.endswith("</div>") and "\n" not in out
    inner = out[len('<div class="qa-question">') : -len("</div>")]
    bare = re.sub(r"&#\d+;", "", inner.replace("<br>", ""))
    assert not re.search(r"[!-/:-@\[-`{-~]", bare), "no ASCII punctuation left: no Markdown or HTML syntax"
    assert html.unescape(inner.replace("<br>", "\n")) == question


def test_chat_turn_shows_the_question_as_text(engine):
    question = MARKDOWN_TRAPS[0]
    reply = ui.respond(engine, question, [])
    user, assistant = ui.chat_messages(question, reply)
    assert user == {"role": "user", "content": ui.render_question(question)}
    assert assistant == {"role": "assistant", "content": reply.html}
    assert reply.history[0] == {"role": "user", "content": question}  # the plain text goes to the engine


def test_history_passed_to_qa_is_plain_questions_and_answer_texts(engine, monkeypatch):
    seen = []
    real = engine.answer

    def spy(question, history=None, k=5):
        seen.append(list(history))
        return real(question, history, k)

    monkeypatch.setattr(engine, "answer", spy)
    first = ui.respond(engine, "Who plays Irving in Severance?", [])
    second = ui.respond(engine, "What did he say?", first.history)
    assert seen[0] == []
    assert seen[1] == [
        {"role": "user", "content": "Who plays Irving in Severance?"},
        {"role": "assistant", "content": first.answer.text},
    ]
    assert all("<" not in m["content"] for m in second.history)
    assert second.html.startswith('<div class="qa-turn"')


def test_example_questions_come_from_the_indexed_articles(make_engine, seed_corpus, tmp_path):
    engine = make_engine(seed_corpus, tmp_path / "ex-index", abstain_threshold=0.0)
    examples = ui.example_questions(engine)
    assert len(examples) == ui.EXAMPLES
    corpus_text = "".join(c.text for c in engine.index.chunks)
    prefix = "What do we know about "
    for q in examples:
        assert q.startswith(prefix) and q.endswith("?")
        assert q[len(prefix) : -1] in corpus_text, "the name comes from the articles"


def test_example_questions_fall_back_to_titles_when_nothing_is_answered(make_engine, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "lighthouse.txt").write_bytes(LIGHTHOUSE)
    e = make_engine(other, tmp_path / "other-index", abstain_threshold=1.01)
    assert ui.example_questions(e) == ["What happened in “The Gullwing lighthouse”?"]


def test_status_line_counts_articles_and_chunks(engine):
    counts = engine.index.manifest["counts"]
    line = ui.status_line(engine)
    assert f"<b>{counts['documents']}</b> articles" in line and f"<b>{counts['chunks']}</b> chunks" in line
    assert re.search(r"built \d{4}-\d\d-\d\d \d\d:\d\d UTC", line)


def test_build_ui_exposes_the_api_endpoints(engine):
    demo = ui.build_ui(engine)
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"ask", "answer_json"} <= names


# ---------------------------------------------------------------- uploads


@pytest.mark.parametrize(
    ("name", "saved"),
    [
        ("../x.txt", "x.txt"),
        ("..\\..\\windows\\x.md", "x.md"),
        ("/etc/cron.d/evil.txt", "evil.txt"),
        ("My article (2025).TXT", "My_article_2025.txt"),
        ("notes.md", "notes.md"),
    ],
)
def test_upload_names_are_reduced_to_a_safe_basename(name, saved):
    assert ui.safe_article_name(name) == saved


@pytest.mark.parametrize(
    "name", ["", "..", ".hidden.txt", "../.hidden.md", "a.exe", "x.txt.exe", "noext", "???.txt", "/etc/passwd"]
)
def test_bad_upload_names_are_refused(name):
    with pytest.raises(ui.InputError):
        ui.safe_article_name(name)


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("empty.txt", b"", "empty.txt was refused: file is empty"),
        ("blank.txt", b"  \n\n ", "blank.txt was refused: file is empty"),
        (
            "latin1.txt",
            "Caf\u00e9 cr\u00e8me is served at noon.".encode("latin-1"),
            "latin1.txt was refused: not UTF-8",
        ),
        ("binary.md", b"abc\x00def", "binary.md was refused: file looks binary"),
        ("header-only.txt", b"date 2025-01-01\n", "header-only.txt was refused: file has a header but no text"),
        ("big.txt", b"a " * (ui.UPLOAD_MAX_BYTES // 2 + 1), "big.txt is too large"),
        (SOURCE, b"A replacement article about nothing.", f"{SOURCE} is already in the corpus"),
        (".hidden.txt", b"Some text.", "hidden file name"),
        ("a.exe", b"Some text.", "not a .txt or .md file"),
    ],
)
def test_refused_upload_leaves_corpus_and_index_unchanged(engine, name, data, needle):
    before = corpus_state(engine)
    original = (engine.settings.corpus_path / SOURCE).read_bytes()
    with pytest.raises(ui.InputError, match=re.escape(needle)):
        ui.add_article(engine, name, data)
    assert corpus_state(engine) == before
    assert (engine.settings.corpus_path / SOURCE).read_bytes() == original
    assert any(p.source == SOURCE for p in engine.retrieve("Turturro plays Lumon employee Irving", k=5))


def test_upload_limit_follows_a_smaller_max_file_bytes(make_engine, seed_corpus):
    engine = make_engine(seed_corpus, max_file_bytes=100)
    with pytest.raises(ui.InputError, match="the limit is 100 bytes"):
        ui.add_article(engine, "long.txt", b"word " * 30)


def test_accepted_upload_is_answerable_at_once(engine):
    before = engine.index.manifest["counts"]["documents"]
    saved, report = ui.add_article(engine, "../lighthouse.txt", LIGHTHOUSE)
    assert saved == "lighthouse.txt" and report.added == ["lighthouse.txt"]
    assert (engine.settings.corpus_path / "lighthouse.txt").read_bytes() == LIGHTHOUSE
    assert not (engine.settings.corpus_path.parent / "lighthouse.txt").exists()
    assert not [p for p in engine.settings.corpus_path.iterdir() if p.name.startswith(".")]  # no temp file left
    assert engine.index.manifest["counts"]["documents"] == before + 1
    top = engine.retrieve("Who keeps the Gullwing lighthouse on Marrow Point?", k=3)[0]
    assert top.source == "lighthouse.txt" and "Ottilie Brandvold" in top.text
    assert f"<b>{before + 1}</b> articles" in ui.status_line(engine)
    assert parse_document(saved, LIGHTHOUSE).title == "The Gullwing lighthouse"


def test_upload_handler_messages_name_the_file(engine, tmp_path: Path):
    good = tmp_path / "good" / "lighthouse.md"
    good.parent.mkdir()
    good.write_bytes(LIGHTHOUSE)
    ok, message = ui.upload(engine, str(good))
    assert ok and "Added <b>lighthouse.md</b>" in message and "qa-upload-ok" in message
    bad = tmp_path / "bad" / "caf<e>.txt"
    bad.parent.mkdir()
    bad.write_bytes("caf\u00e9".encode("latin-1"))
    ok, message = ui.upload(engine, str(bad))
    assert not ok and "qa-upload-refused" in message and "caf_e.txt was refused: not UTF-8" in message
    assert "<e>" not in message
    assert ui.upload(engine, None) == (False, "")
