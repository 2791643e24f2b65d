"""The trained reader's confidence features on calibrate-reader's questions (the shipped weights and
rank model, ``--questions 4000``), then three confidence models fitted on them, each question judged
out of fold (5 folds by article): answered / refused / accuracy at the lowest threshold (grid 0.01)
refusing 92 % out of corpus in the big and the small corpora."""

import argparse

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from qa.calibration import fit_logistic
from qa.engine import Engine
from qa.evaluation import squad_correct
from qa.reading import calibrate as cal
from qa.reading import model as rm
from qa.reading.trained import TrainedReader
from qa.settings import Settings


def read_features(extra=None):
    """(X, y, ok, part, fold) over calibrate-reader's questions: each question's confidence
    features (and ``extra(item)``'s after them), whether it is in corpus, answered right, its part
    and its fold by article."""
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
            rows.append([*feats, *(extra(it) if extra else [])])
            y.append(float(q.in_corpus))
            ok.append(bool(q.in_corpus and squad_correct(answer, q)))
            part.append(it.part)
            fold.append(cal._fold(q))
    return np.array(rows), np.array(y), np.array(ok), np.array(part), np.array(fold)


def threshold_by_rule(prob, y, part):
    """The lowest threshold (grid 0.01) refusing 92 % out of corpus in every part the rule reads."""
    rule = {p for p in part if not (p.endswith(cal.FOLLOW_UPS) or p.startswith(cal.ON_TOPIC))}
    return next(
        t
        for t in np.arange(0.2, 0.96, 0.01)
        if all((prob[(part == p) & (y == 0)] < t).mean() >= cal.REFUSE_AT_LEAST for p in rule)
    )


def logistic(Xtr, ytr, Xte):
    t = fit_logistic(Xtr, ytr)
    return 1 / (1 + np.exp(-(Xte @ t[1:] + t[0])))


def pairwise(X):
    sd = X.std(0)
    Z = (X - X.mean(0)) / (sd + 1e-9)
    live = [i for i in range(X.shape[1]) if sd[i] > 1e-6]
    return np.hstack([X] + [Z[:, [i]] * Z[:, [j]] for i in live for j in live if j >= i])


def trees(Xtr, ytr, Xte):
    m = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0, random_state=0
    )
    return m.fit(Xtr, ytr).predict_proba(Xte)[:, 1]


def out_of_fold(fit, X, y, fold):
    prob = np.zeros(len(y))
    for k in np.unique(fold):
        prob[fold == k] = fit(X[fold != k], y[fold != k], X[fold == k])
    return prob


def report(name, prob, y, ok, part) -> None:
    """One line: the rule's threshold, and at it the big corpus's answered / refused / accuracy, the
    small corpora's answered and the on-topic questions refused."""
    t = threshold_by_rule(prob, y, part)
    big_in, big_out = (part == "all") & (y == 1), (part == "all") & (y == 0)
    small_in = np.array([p.startswith("small") for p in part]) & (y == 1)
    topic_out = np.array([p.startswith(cal.ON_TOPIC) for p in part]) & (y == 0)
    print(
        f"{name:30s} threshold {t:.2f}  big corpus: answered {(prob[big_in] >= t).mean():.3f} "
        f"refused {(prob[big_out] < t).mean():.3f} accuracy {(ok[big_in] & (prob[big_in] >= t)).mean():.4f}  "
        f"small corpora answered {(prob[small_in] >= t).mean():.3f}  "
        f"on topic refused {(prob[topic_out] < t).mean():.3f}"
    )


if __name__ == "__main__":
    X, y, ok, part, fold = read_features()
    for name, fit, feats in (
        ("logistic (shipped form)", logistic, X),
        ("logistic + pairwise products", logistic, pairwise(X)),
        ("gradient-boosted trees", trees, X),
    ):
        report(name, out_of_fold(fit, feats, y, fold), y, ok, part)
