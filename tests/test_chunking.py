"""qa.chunking: sentence spans on real news text, and the chunk invariants (offsets, coverage,
order, size, word windows, overlap) on the seed articles and on random texts."""

from __future__ import annotations

import random
import re
from itertools import pairwise

import pytest

from qa.chunking import chunk_document, paragraph_of, split_sentences
from qa.corpus import load_corpus, parse_document
from qa.types import Chunk, Document, Span


def count_tokens(texts):
    """The fake embedder's counter: words and punctuation marks."""
    return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]


@pytest.fixture(scope="module")
def seed_docs() -> list[Document]:
    from conftest import SEED_CORPUS

    docs, skipped = load_corpus(SEED_CORPUS)
    assert not skipped and len(docs) == 3
    return docs


def doc_of(text: str, source: str = "t.txt") -> Document:
    return parse_document(source, text.encode("utf-8"))


def sentence_texts(doc: Document) -> list[str]:
    return [doc.text[s.start : s.end] for s in split_sentences(doc.text, doc.body_start)]


def check_chunks(doc: Document, chunks: list[Chunk], max_tokens: int, max_chars: int | None = None) -> None:
    """Every invariant a document's chunks must hold."""
    text = doc.text
    assert chunks, "a document with text has chunks"
    for c in chunks:
        if max_chars is not None:
            assert len(c.text) <= max_chars, (len(c.text), max_chars)
        assert c.source == doc.source
        assert text[c.start : c.end] == c.text
        assert c.text == c.text.strip() and c.text
        assert c.sentences, "a chunk holds at least one sentence"
        assert c.sentences[0].start == c.start and c.sentences[-1].end == c.end
        for s, t in pairwise(c.sentences):
            assert s.end <= t.start
        for s in c.sentences:
            assert c.start <= s.start < s.end <= c.end
        assert count_tokens([c.text])[0] <= max_tokens
    # in order, and nothing between chunks but whitespace
    for a, b in pairwise(chunks):
        assert a.start <= b.start and a.end <= b.end
        assert b.start < a.end or not text[a.end : b.start].strip(), text[a.end : b.start]
        assert not (a.start <= b.start and b.end <= a.end), f"chunk {b} adds nothing to {a}"
    # covered: every non-space character of the body is in some sentence of some chunk
    covered = bytearray(len(text))
    for c in chunks:
        for s in c.sentences:
            covered[s.start : s.end] = b"\x01" * (s.end - s.start)
    missing = [i for i in range(doc.body_start, len(text)) if not text[i].isspace() and not covered[i]]
    assert not missing, f"not in any chunk: {text[missing[0] : missing[0] + 40]!r}"
    assert chunks[0].start >= doc.body_start
    assert not text[doc.body_start : chunks[0].start].strip()
    assert not text[chunks[-1].end :].strip()


# ---------------------------------------------------------------- sentences


def test_abbreviations_and_ampersand_stay_in_one_sentence(seed_docs):
    sents = sentence_texts(seed_docs[2])
    assert "Mr. & Mrs. Smith premieres on Prime Video on Feb. 2." in sents
    talking = [s for s in sents if s.startswith("Talking with ET's Rachel Smith")]
    assert len(talking) == 1 and talking[0].endswith("second season of the Apple TV+ drama.")
    assert "Mr. & Mrs. Smith on Wednesday" in talking[0]


def test_quotation_with_date_abbreviation_is_one_sentence(seed_docs):
    sents = sentence_texts(seed_docs[2])
    lovely = [s for s in sents if "Lovely being back at the office" in s]
    assert lovely == [
        '"Lovely being back at the office," he captioned the dramatic post on Jan. 29, '
        "15 months after Severance initially began shooting season 2."
    ]


def test_quotes_and_dashes(seed_docs):
    sents = sentence_texts(seed_docs[2])
    assert '"My lips are sealed, I can\'t talk about anything," he tells ET.' in sents
    assert '"All I know is that, you know, Chris Walken is still there."' in sents
    assert (
        "In a photo posted to Instagram, Scott -- who plays Mark -- is seen running through the hallways of Lumon Industries."
        in sents
    )
    outie = [s for s in sents if s.startswith('The season ends with Irving\'s "outie" --')]
    assert len(outie) == 1 and outie[0].endswith("before time runs out.")


def test_headings_and_captions_are_their_own_sentences(seed_docs):
    assert "Apple TV+" in sentence_texts(seed_docs[2])
    sents = sentence_texts(seed_docs[1])
    assert "Production Progress and Expected Premiere" in sents
    i = sents.index("Production Progress and Expected Premiere")
    assert sents[i + 1].startswith("Although a substantial part")


def test_sentence_spans_are_trimmed_offsets(seed_docs):
    for d in seed_docs:
        spans = split_sentences(d.text, d.body_start)
        assert spans[0].start == d.body_start
        for s, t in pairwise(spans):
            assert s.end <= t.start and not d.text[s.end : t.start].strip()
        for s in spans:
            piece = d.text[s.start : s.end]
            assert piece == piece.strip() and piece


def test_blank_line_always_ends_a_sentence():
    text = "A line without an end\n\nand a new paragraph that goes on."
    assert [text[s.start : s.end] for s in split_sentences(text)] == [
        "A line without an end",
        "and a new paragraph that goes on.",
    ]


def test_markdown_heading_and_list_items():
    text = "# Title here\nIntro sentence one. Intro two.\n- first item of the list\n- second item\n"
    got = [text[s.start : s.end] for s in split_sentences(text)]
    assert got == ["# Title here", "Intro sentence one.", "Intro two.", "- first item of the list", "- second item"]


def test_a_markdown_image_does_not_end_a_sentence():
    text = "The tide mill ![the mill](http://x/mill.png) was restored in 2024. Wow! It [reopened] in May."
    got = [text[s.start : s.end] for s in split_sentences(text)]
    assert got == [
        "The tide mill ![the mill](http://x/mill.png) was restored in 2024.",
        "Wow!",
        "It [reopened] in May.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        'said Feb. & the "quoted" ! ! ! ; on Mrs. another and Feb. end.',  # pysbd spans that overlap
        '; Lumon "quoted" Turturro a ? of ? \t?!',  # pysbd drops the trailing "?!"
        "Dr. ( a ) Walken says of Mr.!\n\n! !?\n",  # and a paragraph of "! !?"
    ],
)
def test_sentences_never_overlap_or_leave_text_out(text):
    spans = split_sentences(text)
    for s, t in pairwise(spans):
        assert s.end <= t.start
    covered = {i for s in spans for i in range(s.start, s.end)}
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


def test_paragraph_of_counts_blank_lines():
    text = "One. Two.\n\nThree.\n \nFour."
    spans = split_sentences(text)
    assert paragraph_of(text, spans) == [0, 0, 1, 2]


# ---------------------------------------------------------------- chunk invariants


@pytest.mark.parametrize("max_tokens", [12, 30, 60, 200])
def test_seed_chunks_hold_every_invariant(seed_docs, max_tokens):
    for d in seed_docs:
        check_chunks(d, chunk_document(d, count_tokens, max_tokens, 1), max_tokens)


def test_seed_chunks_without_overlap_do_not_overlap(seed_docs):
    for d in seed_docs:
        chunks = chunk_document(d, count_tokens, 40, 0)
        check_chunks(d, chunks, 40)
        for a, b in pairwise(chunks):
            assert a.end < b.start


def test_chunk_max_tokens_below_eight_is_refused(seed_docs):
    with pytest.raises(ValueError, match="at least 8"):
        chunk_document(seed_docs[0], count_tokens, 7)


def test_long_sentence_is_split_into_word_windows_never_truncated():
    words = [f"word{i}" for i in range(300)]
    text = "Intro sentence here.\n\n" + " ".join(words) + ".\n\nOutro sentence here."
    doc = doc_of(text)
    chunks = chunk_document(doc, count_tokens, 50, 1)
    check_chunks(doc, chunks, 50)
    sentence = " ".join(words) + "."
    lo = text.index(sentence)
    windows = sorted(
        {s for c in chunks for s in c.sentences if lo <= s.start < lo + len(sentence)}, key=lambda s: s.start
    )
    assert len(windows) >= 6
    assert " ".join(text[w.start : w.end] for w in windows) == sentence
    assert all(count_tokens([text[w.start : w.end]])[0] <= 48 for w in windows)


def test_short_paragraphs_are_packed_and_cut_at_paragraph_breaks():
    paras = [f"Paragraph {i} has a few words in it." for i in range(6)]  # 9 tokens each
    doc = doc_of("\n\n".join(paras))
    chunks = chunk_document(doc, count_tokens, 40, 1)
    check_chunks(doc, chunks, 40)
    assert [c.text.count("Paragraph") for c in chunks] == [4, 2]
    assert chunks[0].text.endswith("Paragraph 3 has a few words in it.")
    assert chunks[1].text.startswith("Paragraph 4")


def test_overlap_repeats_last_sentence_when_a_long_paragraph_is_split():
    sentences = [f"Sentence number {i} talks about Lumon and its severed floor." for i in range(12)]  # 12 tokens
    doc = doc_of(" ".join(sentences))
    chunks = chunk_document(doc, count_tokens, 40, 1)
    check_chunks(doc, chunks, 40)
    assert len(chunks) > 3
    for a, b in pairwise(chunks):
        assert b.sentences[0] == a.sentences[-1]
        assert len(b.sentences) > 1


def test_overlap_does_not_cross_a_paragraph_break():
    p1 = " ".join(f"First paragraph sentence {i} is here." for i in range(6))  # 7 tokens each
    p2 = " ".join(f"Second paragraph sentence {i} is here." for i in range(6))
    doc = doc_of(p1 + "\n\n" + p2)
    chunks = chunk_document(doc, count_tokens, 40, 1)
    check_chunks(doc, chunks, 40)
    assert not any("First" in c.text and "Second" in c.text for c in chunks)
    first_of_p2 = next(c for c in chunks if "Second" in c.text)
    assert first_of_p2.text.startswith("Second paragraph sentence 0")


def test_no_chunk_is_only_the_repeated_sentence():
    """The overlap sentence alone is not a chunk: when it does not fit with the next sentence,
    the next chunk starts fresh."""
    a = "Alpha " + "a " * 88 + "end."  # 91 tokens
    b = "Bravo " + "b " * 88 + "end."  # 91 tokens
    c = "Charlie " + "c " * 148 + "end."  # 151 tokens
    doc = doc_of(f"{a} {b} {c}")
    chunks = chunk_document(doc, count_tokens, 200, 1)
    check_chunks(doc, chunks, 200)
    assert [ch.text[:5] for ch in chunks] == ["Alpha", "Charl"]


def test_overlap_of_two_sentences():
    sentences = [f"Sentence {i} is about Irving." for i in range(10)]  # 6 tokens
    doc = doc_of(" ".join(sentences))
    chunks = chunk_document(doc, count_tokens, 26, 2)
    check_chunks(doc, chunks, 26)
    for a, b in pairwise(chunks):
        assert b.sentences[:2] == a.sentences[-2:]


# ---------------------------------------------------------------- random texts

VOCAB = (
    "Irving Burt Lumon Mr. Mrs. Dr. Jan. Feb. U.S. season episode Turturro Walken said says "
    "the a of and in on at to -- — ( ) 66, 2024 3.5 e.g. i.e. café naïve résumé Apple TV+ & "
    "Smith's \"quoted\" 'single' “curly” ... ; : ! ? word another longer-hyphenated"
).split()


def random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        if kind < 0.1:
            parts.append(" ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 4))))  # heading-like
        elif kind < 0.2:
            parts.append("\n".join(f"- {rng.choice(VOCAB)} {rng.choice(VOCAB)}" for _ in range(rng.randint(1, 3))))
        else:
            sents = []
            for _ in range(rng.randint(1, 6)):
                n = rng.choice([rng.randint(1, 12), rng.randint(1, 12), rng.randint(40, 90)])
                sents.append(" ".join(rng.choice(VOCAB) for _ in range(n)) + rng.choice([".", "!", "?", '."', ""]))
            parts.append(rng.choice([" ", "  ", "\n", " \t"]).join(sents))
    sep = rng.choice(["\n\n", "\n\n\n", "\n \n", "\r\n\r\n"])
    head = rng.choice(["", " date 2024-01-31 ", "date 2023-02-03\n", "\n\n"])
    return head + sep.join(parts) + rng.choice(["", "\n", "\n\n  "])


@pytest.mark.parametrize("seed", range(60))
def test_random_texts_hold_every_invariant(seed):
    rng = random.Random(seed)
    doc = doc_of(random_text(rng))
    max_tokens = rng.choice([8, 10, 16, 24, 50, 120])
    overlap = rng.choice([0, 1, 1, 2])
    check_chunks(doc, chunk_document(doc, count_tokens, max_tokens, overlap), max_tokens)


def test_document_with_only_whitespace_body_has_no_chunks():
    doc = Document("x.txt", "x", None, "date 2024-01-01 \n\n  ", 17, "0")
    assert chunk_document(doc, count_tokens, 50) == []


def test_chunk_sentences_are_spans():
    doc = doc_of("One sentence here. Two sentences here.")
    (c,) = chunk_document(doc, count_tokens, 50)
    assert c.sentences == (Span(0, 18), Span(19, 38))


def test_a_word_longer_than_the_window_is_cut_never_truncated(fake_embedder):
    from qa.chunking import chunk_document
    from qa.corpus import parse_document

    blob = "https://example.org/" + "-".join(f"seg{i}" for i in range(400))
    doc = parse_document("blob.txt", f"See {blob} for details. The end is near.".encode())
    chunks = chunk_document(doc, fake_embedder.count_tokens, max_tokens=50, overlap_sentences=0)
    assert all(fake_embedder.count_tokens([c.text])[0] <= 50 for c in chunks)
    assert all(doc.text[c.start : c.end] == c.text for c in chunks)
    covered = "".join(c.text for c in chunks)
    assert blob.replace("-", "") in covered.replace("-", "").replace(" ", "")


# ---------------------------------------------------------------- chunks are bounded in characters too


def wordpiece_like(texts):
    """Like the model's tokenizer on long words: any word over 100 characters is one [UNK]."""
    return [sum(1 if len(w) > 100 else max(1, len(w) // 4) for w in t.split()) for t in texts]


def test_a_megabyte_word_is_cut_into_bounded_chunks():
    from qa import chunking

    doc = doc_of("A short first sentence. " + "a" * 1_000_000 + " The last sentence.")
    chunks = chunk_document(doc, wordpiece_like, 200, 1)
    limit = chunking.max_chunk_chars(200)
    assert limit < 10_000
    check_chunks(doc, chunks, 10**9, max_chars=limit)
    assert len(chunks) >= 1_000_000 // limit
    assert "".join(c.text for c in chunks).count("a") >= 1_000_000


def test_few_token_words_are_split_at_whitespace_by_characters():
    from qa import chunking

    words = [f"{i:03d}" + "x" * 147 for i in range(100)]  # 150 characters, one [UNK] each
    doc = doc_of(" ".join(words) + ".")
    limit = chunking.max_chunk_chars(200)
    chunks = chunk_document(doc, wordpiece_like, 200, 0)
    check_chunks(doc, chunks, 200, max_chars=limit)
    assert len(chunks) > 1
    for c in chunks:  # cut between words, never inside one
        assert c.start == 0 or doc.text[c.start - 1] == " "
        assert c.end == len(doc.text) or doc.text[c.end] == " "


def test_character_bound_never_changes_seed_chunks(seed_docs):
    for doc in seed_docs:
        for max_tokens in (30, 200):
            bounded = chunk_document(doc, count_tokens, max_tokens)
            assert bounded == chunk_document(doc, count_tokens, max_tokens, max_chars=10**9)


def test_long_paragraph_reaches_pysbd_in_bounded_pieces(monkeypatch):
    """pysbd is quadratic on one long text (100 KB: 3.6 s, 1 MB: 300 s); it gets bounded pieces."""
    from qa import chunking

    seen: list[int] = []
    real = chunking._segmenter()

    class Recording:
        def segment(self, text):
            seen.append(len(text))
            return real.segment(text)

    monkeypatch.setattr(chunking, "_segmenter", lambda: Recording())
    sentence = "Mr. Smith met Dr. Jones on Jan. 29 at the U.S. embassy, and they talked. "
    paragraph = sentence * 800  # about 58,000 characters in one paragraph, one line
    doc = doc_of(paragraph)
    spans = split_sentences(doc.text)
    assert seen and max(seen) <= 10_000
    assert len(spans) >= 800
    check_chunks(doc, chunk_document(doc, count_tokens, 200), 200)


@pytest.mark.parametrize("seed", range(40))
def test_random_texts_with_long_words_hold_every_invariant_and_the_character_bound(seed):
    rng = random.Random(1000 + seed)
    text = random_text(rng)
    words = text.split(" ")
    for _ in range(rng.randint(1, 4)):
        words.insert(rng.randrange(len(words) + 1), rng.choice("xyz-/") * rng.randint(30, 700))
    doc = doc_of(" ".join(words))
    max_tokens = rng.choice([8, 16, 50, 200])
    max_chars = rng.choice([20, 45, 100, 400])
    chunks = chunk_document(doc, count_tokens, max_tokens, rng.choice([0, 1, 2]), max_chars=max_chars)
    check_chunks(doc, chunks, max_tokens, max_chars=max_chars)
