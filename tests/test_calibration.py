"""The abstention calibration: the logistic fit recovers a separating direction, and calibrate()
weighs exactly what answering.abstain_features computes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from qa import answering
from qa.calibration import calibrate, fit_logistic


def test_fit_logistic_separates_and_reports_weights_in_feature_units():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(2.0, 0.5, 200), rng.normal(-2.0, 0.5, 200)])
    noise = rng.normal(0, 1, 400)
    X = np.column_stack([x * 10.0, noise])  # the signal on a large scale, the noise on a small one
    y = np.concatenate([np.ones(200), np.zeros(200)])
    theta = fit_logistic(X, y)
    assert theta.shape == (3,)
    assert theta[1] > 0 and abs(theta[2]) < abs(theta[1]) * 10
    prob = 1 / (1 + np.exp(-(X @ theta[1:] + theta[0])))
    assert np.mean((prob >= 0.5) == (y == 1)) > 0.97


@dataclass
class Q:
    question: str
    in_corpus: bool


def test_calibrate_uses_the_answer_path_features(make_engine, seed_corpus):
    engine = make_engine(seed_corpus)
    questions = [
        Q("Who directed and executive produced Severance?", True),
        Q("Where was the train station farewell scene filmed?", True),
        Q("Which strikes delayed production?", True),
        Q("What is the boiling point of liquid nitrogen in kelvin?", False),
        Q("Which river flows through the capital of Mongolia?", False),
    ]
    cal = calibrate(engine, questions, thresholds=(0.5,))
    coef = [float(v) for v in cal.model.split(",")]
    from qa import retrieval

    # the model has one weight per abstention feature, plus the intercept

    h = retrieval.search(engine.index, engine.embedder, engine.settings, questions[0].question, 5)
    best = answering.candidates(engine.index, h, questions[0].question, h.query_vector, engine.settings)[0]
    assert len(coef) == len(answering.abstain_features(engine.index, h, questions[0].question, best)) + 1
    ((t, answered, refused),) = cal.rows
    assert t == 0.5 and 0.0 <= answered <= 1.0 and 0.0 <= refused <= 1.0
    # the fitted model drops straight into Settings and answers with it
    answer = make_engine(seed_corpus, abstain_model=cal.model).answer(questions[0].question)
    assert 0.0 <= answer.confidence <= 1.0


def test_calibrate_needs_both_kinds_of_question(make_engine, seed_corpus):
    with pytest.raises(ValueError, match="both"):
        calibrate(make_engine(seed_corpus), [Q("Who directed Severance?", True)])
