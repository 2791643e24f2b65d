"""qa.lexical: the one tokenizer of BM25 and answer scoring."""

from __future__ import annotations

import pytest

from qa.lexical import STOPWORDS, tokenize, words


def test_stop_words_are_dropped():
    assert tokenize("Who plays Irving in the show?") == tokenize("plays Irving show")
    assert tokenize("the and of is what were") == []
    assert not {"who", "the", "in", "is", "what", "he", "they"} - STOPWORDS


def test_words_are_lower_cased_and_stemmed():
    assert tokenize("The actors were RUNNING and filming episodes") == ["actor", "run", "film", "episod"]
    assert tokenize("premieres") == tokenize("premiere") == tokenize("Premiered")


@pytest.mark.parametrize("text", ["Turturro's", "Turturro’s", "TURTURRO'S", "Turturro"])
def test_possessives_match_the_bare_name(text):
    assert words(text) == ["turturro"]
    assert tokenize(text) == tokenize("turturro")


def test_plural_possessive_and_contractions():
    assert words("the students' work") == ["the", "students", "work"]
    assert tokenize("it's") == []  # "it" is a stop word
    assert tokenize("Walken's character") == tokenize("Walken character")


def test_punctuation_underscores_and_numbers_split_words():
    assert words("Lumon_Industries, U.S. season-2 (2025)!") == ["lumon", "industries", "u", "s", "season", "2", "2025"]


def test_unicode_letters_are_words():
    assert words("CAFÉ naïve Ørsted") == ["café", "naïve", "ørsted"]


def test_empty_and_punctuation_only():
    assert tokenize("") == [] and tokenize("?!... --") == [] and words("") == []


def test_order_and_repeats_are_kept():
    assert tokenize("Burt met Irving; Irving met Burt") == ["burt", "met", "irv", "irv", "met", "burt"]


def test_query_and_text_share_tokens():
    text = "Turturro's character has a brief love connection with Christopher Walken's character, Burt."
    query = "What connection does Turturro have with Walken?"
    assert {"turturro", "connect", "walken"} <= set(tokenize(text)) & set(tokenize(query))
