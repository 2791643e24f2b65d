"""The one word tokenizer used by BM25 and by answer scoring: lower-case words, English stop
words removed, Snowball-stemmed (PyStemmer).

A "word" longer than ``MAX_WORD_CHARS`` (a URL, a base64 blob, a hostile 300,000-letter run) is
not a word: it is left out, as BERT's WordPiece turns such words into [UNK]. Skipping rather than
splitting it keeps the cost of a text linear and the BM25 vocabulary free of arbitrary pieces that
no query would share. The bound is part of the index format (BM25 and document frequencies
depend on it), so it is a constant, not a setting.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_WORD_CHARS = 100  # longer words are left out (BERT's WordPiece bound, max_input_chars_per_word)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
_EXTRA_STOPWORDS = (
    "a an about also am any been being but can could did do does doing from had has have how i if "
    "into is its me more most my no nor not of off only or other our ours out over own same she so "
    "some such than too very was we were what when where which while who whom why with would you your "
    "he him his her hers them they their theirs us"
)


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """bm25s's English stop words plus question words (loaded on first use: bm25s imports scipy)."""
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | frozenset(_EXTRA_STOPWORDS.split())


def __getattr__(name: str):
    if name == "STOPWORDS":
        return stopwords()
    raise AttributeError(name)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-cased words, possessive endings dropped ("Turturro's" -> "turturro"); words longer
    than ``MAX_WORD_CHARS`` are left out."""
    out = []
    for w in _WORD.findall(text.lower()):
        w = w.replace("’", "'")
        if w.endswith("'s"):
            w = w[:-2]
        if len(w) <= MAX_WORD_CHARS:
            out.append(w)
    return out


def tokenize(text: str) -> list[str]:
    """Stemmed content words of ``text``, in order (stop words removed)."""
    stop = stopwords()
    ws = [w for w in words(text) if w not in stop]
    return _stemmer().stemWords(ws) if ws else []
