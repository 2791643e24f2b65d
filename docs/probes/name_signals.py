"""Would the confidence model refuse better with a sharper signal of names the corpus never
mentions? The shipped one weighs the *share* of the question's capitalised words (past the first)
the corpus never mentions ("Who plays Helly in Severance?": 0.5). Added here, one at a time: 1 when
any of them is unknown, and their number. On calibrate-reader's questions (the shipped weights and
models, ``--questions 4000``), each question judged out of fold (5 folds by article) by a logistic
model refitted with the signal: answered / refused / accuracy at the lowest threshold (grid 0.01)
refusing 92 % out of corpus in the big and the small corpora, and on-topic questions refused."""

import argparse

import numpy as np

from qa import lexical
from qa.calibration import fit_logistic
from qa.engine import Engine
from qa.evaluation import squad_correct
from qa.reading import calibrate as cal
from qa.reading import model as rm
from qa.reading.features import _CAPS
from qa.reading.trained import TrainedReader
from qa.settings import Settings

p = argparse.ArgumentParser()
cal.add_arguments(p)
args = p.parse_args(["--questions", "4000"])
engine = Engine(Settings.from_env())
card = rm.read_card(rm.WEIGHTS_DIR)
held = cal.held_out_squad(args.data, card)
work = args.cache / "reader-calibration"
parts = cal._engines(args, engine, work, held, card) + cal._on_topic_parts(args, engine, work, held, card)
items, _ = cal._read_all(parts)
rows, y, ok, part, fold = [], [], [], [], []
readers: dict = {}
for it in items:
    reader = readers.setdefault(
        id(it.engine), TrainedReader(it.engine.settings.replace(reader_abstain_threshold=-1.0), it.spans)
    )
    answer, feats = reader.answer_reading(it.asked, it.reading, it.hits, it.engine.index, it.query)
    if feats:
        q = it.question
        caps = lexical.tokenize(" ".join(x for x in _CAPS.findall(it.query)[1:] if x[0].isupper()))
        unknown = sum(1 for t in caps if it.engine.index.df.get(t, 0) == 0)
        rows.append([*feats, float(unknown > 0), float(unknown)])
        y.append(float(q.in_corpus))
        ok.append(bool(q.in_corpus and squad_correct(answer, q)))
        part.append(it.part)
        fold.append(cal._fold(q))
X, y, ok, part, fold = np.array(rows), np.array(y), np.array(ok), np.array(part), np.array(fold)
rule = np.array([not (p.endswith(cal.FOLLOW_UPS) or p.startswith(cal.ON_TOPIC)) for p in part])
n = X.shape[1] - 2


def logistic(Xtr, ytr, Xte):
    t = fit_logistic(Xtr, ytr)
    return 1 / (1 + np.exp(-(Xte @ t[1:] + t[0])))


for name, cols in (
    ("shipped signals", list(range(n))),
    ("+ any name unknown", [*range(n), n]),
    ("+ names unknown (count)", [*range(n), n + 1]),
):
    prob = np.zeros(len(y))
    for k in np.unique(fold):
        prob[fold == k] = logistic(X[fold != k][:, cols], y[fold != k], X[fold == k][:, cols])
    t = next(
        t
        for t in np.arange(0.2, 0.96, 0.01)
        if all((prob[(part == p) & (y == 0)] < t).mean() >= cal.REFUSE_AT_LEAST for p in set(part[rule]))
    )
    big_in, big_out = (part == "all") & (y == 1), (part == "all") & (y == 0)
    topic_out = np.array([p.startswith(cal.ON_TOPIC) for p in part]) & (y == 0)
    small_in = np.array([p.startswith("small") for p in part]) & (y == 1)
    print(
        f"{name:26s} threshold {t:.2f}  big corpus: answered {(prob[big_in] >= t).mean():.3f} "
        f"refused {(prob[big_out] < t).mean():.3f} accuracy {(ok[big_in] & (prob[big_in] >= t)).mean():.4f}  "
        f"small corpora answered {(prob[small_in] >= t).mean():.3f}  on topic refused {(prob[topic_out] < t).mean():.3f}"
    )
