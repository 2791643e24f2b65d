"""Three more signals for the trained reader's rank model, measured with ``rank_targets.py``'s
variants: per guess, the log share of the reader's weight (softmax over the guesses) on guesses in
the same sentence, and in the same passage, and the guess's place among the guesses (share of
them). ``python docs/probes/rank_signals.py N ...`` runs ``rank_targets.py``'s variants N with
the 16 signals instead of 13 (report in artifacts/rank-targets.json)."""

import math
import sys

from rank_targets import run

import qa.reading.trained as trained
import qa.settings as settings

base = trained.rank_features


def rank_features(reading, passages, features):
    rows = base(reading, passages, features)
    guesses = reading.spans
    if not guesses:
        return rows
    best = max(g.score for g in guesses)
    sentence, passage = {}, {}
    keys = []
    for g in guesses:
        f = trained.sentence_of(g, features[g.rank])
        key = (g.rank, f.span.start) if f is not None else (g.rank, g.start)
        w = math.exp(g.score - best)
        sentence[key] = sentence.get(key, 0.0) + w
        passage[g.rank] = passage.get(g.rank, 0.0) + w
        keys.append(key)
    total = sum(passage.values())
    return [
        row + [math.log(sentence[key] / total), math.log(passage[g.rank] / total), i / len(guesses)]
        for i, (row, key, g) in enumerate(zip(rows, keys, guesses, strict=True))
    ]


trained.rank_features = rank_features
trained.RANK_FEATURES = settings.READER_RANK_FEATURES = 16
check = settings._check_model


def _check_model(name, value, features, may=""):
    """The shipped 13-signal model stays a valid default (the probe fits its own)."""
    if not (name == "reader_rank_model" and len(value.split(",")) == 14):
        check(name, value, features, may)


settings._check_model = _check_model

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
