"""Fit the abstention model: a logistic regression (numpy) over the signals of
``answering.abstain_features``, on a seeded SQuAD sample labelled in-corpus / out-of-corpus.

    python -m qa eval --squad --calibrate 3000 --seed 1

prints the ``abstain_model`` string for Settings and, for a few thresholds, the share of
in-corpus questions answered and of out-of-corpus questions refused. Nothing is written:
a person reads the figures and puts the numbers in ``qa/settings.py``.

Also the fitting the other fitted models share: ``fit_logistic`` (the confidence models),
``fit_listwise`` and ``on_scale`` (retrieval's rerank, ``rerank_fit``; the trained reader's rank
model, ``reading.calibrate.fit_rank``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import answering, retrieval
from .errors import InputError


@dataclass(frozen=True)
class Calibration:
    model: str  # the Settings.abstain_model string: intercept, then one weight per feature
    rows: list[tuple[float, float, float]]  # (threshold, answered in-corpus, refused out-of-corpus)

    def table(self) -> str:
        lines = [f"abstain_model = {self.model!r}", "threshold  answered(in)  refused(out)"]
        lines += [f"{t:9.2f}  {a:12.3f}  {r:12.3f}" for t, a, r in self.rows]
        return "\n".join(lines)


def signals(engine, question: str, k: int = 5):
    """(hits, abstention features): ``question`` retrieved as ``engine.answer`` retrieves it, and
    what the picker's confidence model would weigh (None when no sentence is a candidate)."""
    index, settings = engine.index, engine.settings
    hits = retrieval.search(index, engine.embedder, settings, question, k)
    cands = answering.candidates(index, hits, question, hits.query_vector, settings)
    return hits, (answering.abstain_features(index, hits, question, cands[0]) if cands else None)


def features(engine, questions: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): the abstention features ``engine.answer`` would weigh for each question, and 1
    for an in-corpus question. Questions with no candidate sentence are left out."""
    X, y = [], []
    for q in questions:
        _, f = signals(engine, q.question)
        if f is not None:
            X.append(f)
            y.append(1.0 if q.in_corpus else 0.0)
    return np.array(X, dtype=np.float64), np.array(y, dtype=np.float64)


def fit_logistic(X: np.ndarray, y: np.ndarray, steps: int = 8000, lr: float = 0.2, l2: float = 1e-3) -> np.ndarray:
    """Intercept and weights (in the features' own units) of an L2-regularised logistic regression."""
    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = (X - mu) / sd
    w, b = np.zeros(Z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(Z @ w + b)))
        g = p - y
        w -= lr * (Z.T @ g / len(y) + l2 * w)
        b -= lr * g.mean()
    coef = w / sd
    return np.concatenate([[b - float((w * mu / sd).sum())], coef])


def fit_listwise(lists: list[tuple[np.ndarray, np.ndarray]], l2: float = 1e-2, steps: int = 3000) -> np.ndarray:
    """Weights (in the features' own units) of a linear score putting each list's gold rows first:
    gradient descent (Adam) on the mean over lists of -log(softmax mass on the gold rows) + l2·|w|²
    over standardised features. Lists without a gold row are left out."""
    lists = [(X, y) for X, y in lists if len(X) and y.any()]
    if not lists:
        raise InputError("no question has a gold result among its candidates: nothing to fit")
    width = max(len(X) for X, _ in lists)
    n_feat = lists[0][0].shape[1]
    Z = np.zeros((len(lists), width, n_feat))
    live = np.zeros((len(lists), width), dtype=bool)
    pos = np.zeros((len(lists), width), dtype=bool)
    for i, (X, y) in enumerate(lists):
        Z[i, : len(X)], live[i, : len(X)], pos[i, : len(X)] = X, True, y
    rows = Z[live]
    mu, sd = rows.mean(0), rows.std(0) + 1e-9
    Z = np.where(live[..., None], (Z - mu) / sd, 0.0)
    w = np.zeros(n_feat)
    m, v = np.zeros(n_feat), np.zeros(n_feat)
    for t in range(1, steps + 1):
        s = np.where(live, Z @ w, -np.inf)
        s -= s.max(1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(1, keepdims=True)
        q = np.where(pos, p, 0.0)
        q /= q.sum(1, keepdims=True)
        grad = -np.einsum("lw,lwf->f", q - p, Z) / len(lists) + 2 * l2 * w
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        w -= 0.05 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return w / sd


def on_scale(lists: list[tuple[np.ndarray, np.ndarray]], w: np.ndarray, reference) -> np.ndarray:
    """Intercept and weights: ``w`` times a positive factor, plus an intercept, fitted by least
    squares to the ``reference(X)`` scores (the order stays ``w``'s)."""
    X = np.concatenate([X for X, _ in lists if len(X)])
    raw, ref = X @ w, reference(X)
    a, b = np.polyfit(raw, ref, 1)
    if a <= 0:  # unrelated to the reference: keep the fitted scale
        a, b = 1.0, 0.0
    return np.concatenate([[b], a * w])


def calibrate(
    engine, questions: Sequence, thresholds: Sequence[float] = (0.4, 0.5, 0.55, 0.6, 0.65, 0.7)
) -> Calibration:
    X, y = features(engine, questions)
    if len(set(y.tolist())) < 2:
        raise InputError(
            f"calibration needs both in-corpus and out-of-corpus questions; the sample of {len(questions)} "
            f"has {int(y.sum())} in-corpus and {int(len(y) - y.sum())} out-of-corpus ones with a candidate "
            "sentence (use a larger --calibrate N)"
        )
    theta = fit_logistic(X, y)
    prob = 1.0 / (1.0 + np.exp(-(X @ theta[1:] + theta[0])))
    rows = [(t, float(np.mean(prob[y == 1] >= t)), float(np.mean(prob[y == 0] < t))) for t in thresholds]
    return Calibration(",".join(f"{v:.4g}" for v in theta), rows)
