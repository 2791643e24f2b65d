"""The one word tokenizer used by BM25 and by answer scoring: lower-case words, English stop
words removed, Snowball-stemmed (PyStemmer)."""

from __future__ import annotations

import re
from functools import lru_cache

from bm25s.stopwords import STOPWORDS_EN

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
STOPWORDS = frozenset(STOPWORDS_EN) | frozenset(
    "a an about also am any been being but can could did do does doing from had has have how i if "
    "into is its me more most my no nor not of off only or other our ours out over own same she so "
    "some such than too very was we were what when where which while who whom why with would you your "
    "he him his her hers them they their theirs us".split()
)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-cased words, possessive endings dropped ("Turturro's" -> "turturro")."""
    out = []
    for w in _WORD.findall(text.lower()):
        w = w.replace("’", "'")
        if w.endswith("'s"):
            w = w[:-2]
        out.append(w)
    return out


def tokenize(text: str) -> list[str]:
    """Stemmed content words of ``text``, in order (stop words removed)."""
    ws = [w for w in words(text) if w not in STOPWORDS]
    return _stemmer().stemWords(ws) if ws else []
