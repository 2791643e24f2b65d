"""Would the confidence model refuse better with a sharper signal of names the corpus never
mentions? The shipped one weighs the *share* of the question's capitalised words (past the first)
the corpus never mentions ("Who plays Helly in Severance?": 0.5). Added here, one at a time: 1 when
any of them is unknown, and their number. On calibrate-reader's questions (the shipped weights and
models, ``--questions 4000``), each question judged out of fold (5 folds by article) by a logistic
model refitted with the signal: answered / refused / accuracy at the lowest threshold (grid 0.01)
refusing 92 % out of corpus in the big and the small corpora, and on-topic questions refused.

    PYTHONPATH=docs/probes .venv/bin/python docs/probes/name_signals.py
"""

from confidence_forms import logistic, out_of_fold, read_features, report

from qa import lexical
from qa.reading.features import _CAPS


def unknown_names(it) -> list[float]:
    """1 when any capitalised word of the question past the first is unknown to the corpus, and
    how many are."""
    caps = lexical.tokenize(" ".join(x for x in _CAPS.findall(it.query)[1:] if x[0].isupper()))
    unknown = sum(1 for t in caps if it.engine.index.df.get(t, 0) == 0)
    return [float(unknown > 0), float(unknown)]


X, y, ok, part, fold = read_features(unknown_names)
n = X.shape[1] - 2
for name, cols in (
    ("shipped signals", list(range(n))),
    ("+ any name unknown", [*range(n), n]),
    ("+ names unknown (count)", [*range(n), n + 1]),
):
    report(name, out_of_fold(logistic, X[:, cols], y, fold), y, ok, part)
