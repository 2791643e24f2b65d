"""PDF ingestion (qa/ingest/pdf.py): the seed article laid out as a PDF comes back verbatim, with
its page map, title and date; encrypted, scanned, truncated, damaged, oversized and non-PDF
inputs are refused with a clear InputError. Fixtures: tests/fixtures/ingest/*.pdf, written by
make_pdf_fixtures.py there."""

from __future__ import annotations

import importlib.util
import io
import logging
import random
import re
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from qa.corpus import page_of as corpus_page_of
from qa.corpus import parse_document
from qa.errors import InputError
from qa.ingest import pdf
from qa.ingest.article import page_starts, parse_front_matter, render
from qa.ingest.pdf import (
    MAX_PDF_BYTES,
    Vocabulary,
    article_from_pdf,
    join_lines,
    looks_like_pdf,
    page_of,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ingest"
PAGE_2_SENTENCE = "A release date for the second season of Severance has yet to be announced"


def _load_maker():
    spec = importlib.util.spec_from_file_location("make_pdf_fixtures", FIXTURES / "make_pdf_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_pdf_fixtures", module)
    spec.loader.exec_module(module)
    return module


maker = _load_maker()


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _norm(text: str) -> str:
    return " ".join(text.split())


def _difference(expected: str, got: str) -> str:
    """Where two texts first differ, with the characters either side (as repr)."""
    i = next((k for k, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), min(len(expected), len(got)))
    return f"first difference at {i}: expected {expected[i : i + 30]!r}, got {got[i : i + 30]!r}"


@pytest.fixture(scope="module")
def seed():
    date, paragraphs = maker.seed_article()
    return date, paragraphs


@pytest.fixture(scope="module")
def article():
    return article_from_pdf(_read("seed-2.pdf"), "seed-2.pdf")


# -- the seed article -------------------------------------------------------------------------


def test_fixture_is_what_it_claims():
    """seed-2.pdf really needs the rejoining: 3+ pages, wrapped lines of about 80 characters, a
    word hyphenated at a line end, a paragraph running over a page break, a running header and
    footer, the curly apostrophe in WinAnsiEncoding."""
    reader = PdfReader(io.BytesIO(_read("seed-2.pdf")))
    raw = [page.extract_text() for page in reader.pages]
    lines = [line for text in raw for line in text.split("\n")]
    assert len(reader.pages) >= 3
    assert max(len(line) for line in lines) <= 80 and len(lines) > 40
    assert any(line[-1] == "-" and line[-2].isalpha() for line in lines if len(line) > 2)
    assert raw[1].split("\n")[1][0].islower()  # page 2's body starts mid-sentence
    assert all(f"Page {n} of {len(raw)}" in text for n, text in enumerate(raw, 1))
    assert "’" in "".join(raw)
    assert b"/F1" in _read("seed-2.pdf") and b"/Helvetica" in _read("seed-2.pdf")


def test_every_seed_paragraph_comes_back(article, seed):
    _, paragraphs = seed
    text = _norm(article.text)
    missing = [p for p in paragraphs if _norm(p) not in text]
    assert not missing, f"{len(missing)} paragraphs missing; {_difference(_norm(' '.join(paragraphs)), text)}"


def test_seed_text_is_exact(article, seed):
    """Not only the words: the same paragraphs, one per blank-line-separated block."""
    _, paragraphs = seed
    expected = "\n\n".join(paragraphs)
    assert article.text == expected, _difference(expected, article.text)


def test_running_header_and_footer_are_dropped(article):
    assert "Page 1 of" not in article.text and "Page 4 of 4" not in article.text
    assert article.text.count("Severance season 2 may be months away") == 1  # the header, once: the first sentence


def test_metadata(article, seed):
    date, _ = seed
    assert article.title == maker.SEED_TITLE
    assert article.date == date == "2024-01-31"
    assert article.author is None
    assert article.kind == "pdf"


def test_pages_map_each_page(article):
    reader = PdfReader(io.BytesIO(_read("seed-2.pdf")))
    assert len(article.pages) == len(reader.pages)
    assert article.pages[0] == 0 and article.pages == sorted(set(article.pages))
    for n, start in enumerate(article.pages[1:], 2):
        first_body_line = reader.pages[n - 1].extract_text().split("\n")[1]
        assert article.text[start:].startswith(first_body_line.split(" ", 1)[0]), n


def test_page_of_finds_the_page(article):
    reader = PdfReader(io.BytesIO(_read("seed-2.pdf")))
    assert PAGE_2_SENTENCE[:40] in _norm(reader.pages[1].extract_text())  # the fixture's layout
    offset = article.text.index(PAGE_2_SENTENCE)
    assert page_of(article.pages, offset) == 2
    assert page_of(article.pages, 0) == 1
    assert page_of(article.pages, article.text.index("RELATED CONTENT")) == len(reader.pages)
    assert page_of(article.pages, article.pages[1] - 1) == 1 and page_of(article.pages, article.pages[1]) == 2


def test_render_round_trips_the_pages(article):
    rendered = render(article)
    values, body = parse_front_matter(rendered)
    assert page_starts(values) == article.pages
    assert rendered[body:].rstrip("\n") == article.text
    assert values["title"] == article.title and values["date"] == article.date and values["kind"] == "pdf"
    doc = parse_document("severance.txt", rendered.encode("utf-8"))
    offset = doc.text.index(PAGE_2_SENTENCE)
    assert corpus_page_of(doc.meta, offset) == 2


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("encrypted.pdf", "'encrypted.pdf' is encrypted; decrypt it first"),
        ("image-only.pdf", "'image-only.pdf' has no text layer (scanned?); OCR it first"),
        ("truncated.pdf", "'truncated.pdf' is truncated or damaged"),
    ],
)
def test_unreadable_fixtures(fixture, message):
    with pytest.raises(InputError) as e:
        article_from_pdf(_read(fixture), fixture)
    assert str(e.value).startswith(message)


def test_not_a_pdf():
    with pytest.raises(InputError, match=r"'page\.pdf' is not a PDF \(it does not start with %PDF-\)"):
        article_from_pdf(b"<!doctype html><title>x</title>", "page.pdf")
    assert not looks_like_pdf(b"<html>") and looks_like_pdf(b"\n%PDF-1.7\n") and not looks_like_pdf(b"")


def test_too_big():
    data = b"%PDF-1.4\n" + bytes(MAX_PDF_BYTES)
    with pytest.raises(InputError, match=r"'big\.pdf' is 50,000,009 bytes; PDFs over 50,000,000 bytes are not read"):
        article_from_pdf(data, "big.pdf")


def test_too_many_pages(monkeypatch):
    monkeypatch.setattr(pdf, "MAX_PDF_PAGES", 3)
    with pytest.raises(InputError, match=r"'seed-2\.pdf' has 4 pages; PDFs of more than 3 pages are not read"):
        article_from_pdf(_read("seed-2.pdf"), "seed-2.pdf")


def test_damaged_pdf_is_an_input_error_without_a_name():
    with pytest.raises(InputError, match=r"\Athe PDF is not a readable PDF \(PdfReadError: .+\)"):
        article_from_pdf(b"%PDF-1.4\n1 0 obj garbage\n%%EOF\n")


def test_damage_never_escapes_as_another_exception():
    """Bytes overwritten, cut out or inserted, the end kept: an Article or an InputError."""
    seed = _read("seed-2.pdf")
    rng = random.Random(7)
    outcomes = set()
    for i in range(60):
        data = bytearray(seed)
        at = rng.randrange(9, len(seed) - 40)
        if i % 3 == 0:
            data[at : at + rng.randint(1, 8)] = bytes(rng.randrange(256) for _ in range(8))
        elif i % 3 == 1:
            del data[at : at + rng.randint(1, 600)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60)))
        try:
            article_from_pdf(bytes(data), "damaged.pdf")
            outcomes.add("article")
        except InputError as e:
            assert str(e).startswith("'damaged.pdf' "), e
            outcomes.add("refused")
    assert outcomes  # both happen with this seed, but either is fine


def test_empty_user_password_opens():
    """Encrypted with only an owner password (printing or copying restricted): read as usual."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_read("seed-2.pdf"))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    article = article_from_pdf(buffer.getvalue(), "restricted.pdf")
    assert article.text == article_from_pdf(_read("seed-2.pdf")).text


def test_aes_without_a_crypto_library(monkeypatch):
    from pypdf.errors import DependencyError

    def refuse(self, password):
        raise DependencyError("cryptography is required for AES")

    monkeypatch.setattr(PdfReader, "decrypt", refuse)
    with pytest.raises(InputError, match=r"'aes\.pdf' is encrypted \(AES, .+\); decrypt it first"):
        article_from_pdf(_read("encrypted.pdf"), "aes.pdf")


def test_pypdf_warnings_stay_out_of_the_terminal(capfd, caplog):
    """A wrong startxref offset: pypdf recovers, and logs a warning that must not show."""
    damaged = re.sub(rb"startxref\n\d+", b"startxref\n12", _read("seed-2.pdf"))
    assert damaged != _read("seed-2.pdf")
    with caplog.at_level(logging.WARNING):
        article = article_from_pdf(damaged, "moved.pdf")
    assert "Severance" in article.text
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]
    assert capfd.readouterr().err == ""
    assert logging.getLogger("pypdf").propagate  # restored
    assert pdf._TO_DEBUG not in logging.getLogger("pypdf").handlers


# -- other layouts --------------------------------------------------------------------------------


def test_title_falls_back_to_the_first_line():
    data = maker.text_pdf(["A short headline", "The story begins here and goes on."], footer=False)
    assert article_from_pdf(data).title == "A short headline"
    junk = maker.text_pdf(["Headline", "Body."], {"Title": "Microsoft Word - draft.docx"}, footer=False)
    assert article_from_pdf(junk).title == "Headline"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("D:20240131093000+01'00'", "2024-01-31"), ("20231205", "2023-12-05"), ("D:2024", None), ("D:20241399", None)],
)
def test_creation_dates(value, expected):
    data = maker.text_pdf(["Body text."], {"CreationDate": value, "Author": "  Jane\n Doe "}, footer=False)
    article = article_from_pdf(data)
    assert article.date == expected
    assert article.author == "Jane Doe"


def test_paragraphs_without_gaps_come_from_short_lines(seed):
    """No extra space between paragraphs: a line that ends early ends its paragraph."""
    _, paragraphs = seed
    data = maker.text_pdf(paragraphs, footer=False, paragraph_gap=0)
    got = article_from_pdf(data).text
    assert _norm(got) == _norm("\n\n".join(paragraphs))
    found = got.split("\n\n")
    # a paragraph whose last line happens to be full merges with the next one; the rest survive
    assert len([p for p in paragraphs if p in found]) >= len(paragraphs) - 3


def test_empty_page_starts_where_the_next_one_does():
    streams = maker.layout(["First page."], footer=False) + [b""] + maker.layout(["Third page."], footer=False)
    article = article_from_pdf(maker.build_pdf(streams))
    assert article.text == "First page.\n\nThird page."
    assert article.pages == [0, 13, 13]
    assert page_of(article.pages, 13) == 3


def test_side_by_side_columns_are_read_one_after_the_other():
    left = ["Left column line one about the", "council budget vote which passed", "on Tuesday evening."]
    right = ["Right column line one about the", "harbour storm that closed the", "ferry for two days."]
    ops = [b"BT /F1 10 Tf"]
    for x, lines in ((54, left), (320, right)):
        ops += [b"1 0 0 1 %d %d Tm %s Tj" % (x, 300 - 12 * i, maker.pdf_string(line)) for i, line in enumerate(lines)]
    text = article_from_pdf(maker.build_pdf([b"\n".join([*ops, b"ET"])])).text
    assert _norm(" ".join(left)) in _norm(text) and _norm(" ".join(right)) in _norm(text)


# -- joining lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("the infor-", "mation age", "the information age"),
        ("the highly-", "anticipated season", "the highly-anticipated season"),  # spelled so elsewhere
        ("SAG-", "AFTRA strikes", "SAG-AFTRA strikes"),
        ("COVID-", "19 cases", "COVID-19 cases"),
        ("a state-of-the-", "art studio", "a state-of-the-art studio"),
        ("the outie --", "the term", "the outie -- the term"),
        ("he paused—", "then spoke", "he paused—then spoke"),
        ("he paused —", "then spoke", "he paused — then spoke"),
        ("a soft\xad", "ware bug", "a software bug"),
        ("plain", "words", "plain words"),
    ],
)
def test_join_lines(left, right, expected):
    vocab = Vocabulary(words={"information"}, compounds={"highly-anticipated"})
    assert join_lines(left, right, vocab) == expected


def test_page_of_edges():
    assert page_of([0, 10, 20], 0) == 1
    assert page_of([0, 10, 20], 9) == 1
    assert page_of([0, 10, 20], 10) == 2
    assert page_of([0, 10, 20], 10_000) == 3
    assert page_of([0, 5, 5, 9], 5) == 3  # an empty page 2 holds no text
    assert page_of([], 3) == 1
