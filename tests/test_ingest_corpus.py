"""Articles written by `qa add` (a front-matter block, then the text) read by the corpus loader:
title, date, source metadata and page map; quotes and citations carry them."""

from __future__ import annotations

import pytest

from qa.corpus import page_of, parse_document
from qa.ingest.article import Article, file_name, parse_front_matter, render, text_hash

BODY = (
    "Lumon Industries opened its archive to visitors on Monday.\n\n"
    "The archive holds every handbook the company printed since 1866, a spokesperson said.\n\n"
    "Visitors queued for three hours on the first day of the opening."
)


def _article(**kw) -> Article:
    values = dict(
        text=BODY,
        title="Lumon opens its archive",
        date="2025-06-12",
        url="https://news.example/lumon-archive",
        outlet="Example News",
        author="Jane Doe",
        kind="html",
    )
    values.update(kw)
    return Article(**values)


def test_front_matter_gives_title_date_and_source():
    text = render(_article())
    doc = parse_document("lumon.txt", text.encode())
    assert doc.title == "Lumon opens its archive" and doc.date == "2025-06-12"
    assert doc.meta == {
        "url": "https://news.example/lumon-archive",
        "outlet": "Example News",
        "author": "Jane Doe",
        "kind": "html",
    }
    assert doc.text[doc.body_start :].startswith("Lumon Industries opened") and BODY in doc.text


def test_page_map_becomes_file_offsets():
    second = BODY.index("The archive")
    third = BODY.index("Visitors")
    doc = parse_document("a.txt", render(_article(kind="pdf", pages=[0, second, third])).encode())
    pages = doc.meta["pages"]
    assert doc.text[pages[1] :].startswith("The archive") and doc.text[pages[2] :].startswith("Visitors")
    assert page_of(doc.meta, doc.body_start) == 1
    assert page_of(doc.meta, doc.text.index("handbook")) == 2
    assert page_of(doc.meta, len(doc.text) - 1) == 3
    assert page_of({}, 10) is None


@pytest.mark.parametrize(
    "text",
    [
        "---\ntitle: no closing fence\n\nLumon opened an archive.\n",
        "---\n- a yaml list is not our block\n---\nLumon opened an archive.\n",
        "--- \nLumon opened an archive.\n",
    ],
)
def test_a_block_we_did_not_write_is_plain_text(text):
    assert parse_front_matter(text) is None
    doc = parse_document("plain.txt", text.encode())
    assert doc.body_start == 0 and doc.meta == {}


def test_the_date_header_keeps_working_and_a_bad_date_is_ignored(caplog):
    doc = parse_document("old.txt", b" date 2024-01-31 Severance returns.\n")
    assert doc.date == "2024-01-31" and doc.meta == {}
    bad = parse_document("bad.txt", render(_article(date=None, extra={"date": "31/01/2024"})).encode())
    assert bad.date is None and "not a valid date" in caplog.text


def test_file_names_are_readable_and_keyed_by_the_text():
    a, b = _article(), _article(title="Another title")
    assert file_name(a).startswith("lumon-opens-its-archive-") and file_name(a).endswith(".txt")
    assert file_name(a)[-16:] == file_name(b)[-16:]  # same text, same hash part
    assert text_hash(BODY) == text_hash(BODY.replace("\n\n", "\n \n"))  # whitespace does not count


def test_passages_and_citations_carry_outlet_url_and_page(tmp_path, make_engine):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    second = BODY.index("The archive")
    (corpus / "lumon.txt").write_text(render(_article(kind="pdf", pages=[0, second])), encoding="utf-8")
    engine = make_engine(corpus, min_answer_words=3)
    p = engine.retrieve("When did Lumon open its archive to visitors?", 1)[0]
    assert (p.url, p.outlet, p.page, p.title, p.date) == (
        "https://news.example/lumon-archive",
        "Example News",
        1,
        "Lumon opens its archive",
        "2025-06-12",
    )
    a = engine.answer("Since when has the company printed handbooks?")
    assert not a.abstained, a.message
    c = a.citations[0]
    text = (corpus / "lumon.txt").read_text(encoding="utf-8")
    assert text[c.start : c.end] == c.quote and "---" not in c.quote and "outlet" not in c.quote
    assert (c.url, c.outlet) == ("https://news.example/lumon-archive", "Example News")
    assert c.page == page_of(engine.index.documents["lumon.txt"], c.start)


def test_the_chat_and_the_command_line_show_outlet_page_link_and_filter(tmp_path, make_engine):
    from qa.cli import format_answer
    from qa.ui import render_answer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    second = BODY.index("The archive")
    (corpus / "lumon.txt").write_text(render(_article(kind="pdf", pages=[0, second])), encoding="utf-8")
    engine = make_engine(corpus, min_answer_words=3)
    a = engine.answer("Since when has the company printed handbooks?", since="2025")
    assert not a.abstained and a.filter == "articles dated 2025-01-01 or later"
    html = render_answer(a, "Since when has the company printed handbooks?", engine)
    assert "Example News" in html and f"p. {a.citations[0].page}" in html
    assert 'href="https://news.example/lumon-archive"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert "searched in: articles dated 2025-01-01 or later" in html
    assert "outlet:" not in html  # the front matter is not the article's text
    text = format_answer(a)
    assert "Example News" in text and "https://news.example/lumon-archive" in text and "searched in:" in text


def test_only_web_links_are_shown(tmp_path, make_engine):
    from qa.ui import _source_line

    assert "href" not in _source_line("T", None, "a.txt", url="javascript:alert(1)")
    assert "href" not in _source_line("T", None, "a.txt", url="file:///etc/passwd")
    assert "&quot;" in _source_line("T", None, "a.txt", url='https://x.example/"onmouseover=')
