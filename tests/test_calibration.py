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


def test_picker_calibration_reports_out_of_fold_rows_and_the_rules_threshold(make_engine, seed_corpus, tmp_path):
    """calibrate-reader --reader picker: the fitted model drops into Settings, every part is judged
    out of fold too, and the threshold comes from the rule over the parts it weighs."""
    import json

    from qa.evaluation import SquadQuestion
    from qa.reading.calibrate import ON_TOPIC, THRESHOLDS, _picker
    from qa.settings import ABSTAIN_FEATURES, Settings

    engine = make_engine(seed_corpus)
    files = sorted(p.name for p in seed_corpus.glob("*.txt"))
    asked = [
        ("Who directed and executive produced Severance?", files[0], True),
        ("Where was the train station farewell scene filmed?", files[1], True),
        ("Which strikes delayed production?", files[2], True),
        ("What is the boiling point of liquid nitrogen in kelvin?", "99_Nitrogen.txt", False),
        ("Which river flows through the capital of Mongolia?", "98_Mongolia.txt", False),
        ("Who won the 1966 World Cup final?", "97_Football.txt", False),
    ]
    qs = [SquadQuestion(f"q{i}", q, src, ("x",), (0,), inside, i) for i, (q, src, inside) in enumerate(asked)]
    out = tmp_path / "picker.json"
    parts = [("all", engine, qs[:4] + qs[5:]), (f"{ON_TOPIC} 3", engine, qs[4:5])]
    assert _picker(parts, out) == 0
    report = json.loads(out.read_text())
    model = report["abstain_model"]
    assert len(model.split(",")) == ABSTAIN_FEATURES + 1 and Settings(abstain_model=model).abstain_model == model
    assert set(report["rows_by_corpus_out_of_fold"]) == {"all", f"{ON_TOPIC} 3"}
    assert [r["threshold"] for r in report["rows_out_of_fold"]] == list(THRESHOLDS)
    assert report["suggested_threshold"] in (*THRESHOLDS, None)
    assert report["questions"] == len(qs) and report["in_corpus"] == 3
    # the in-sample rows are what answer() does with the printed model: each question asked anew
    fitted = make_engine(seed_corpus, abstain_model=model)
    conf = {q.id: fitted.answer(q.question, reader="picker").confidence for q in qs}
    for row in report["rows"]:
        t = row["threshold"]
        assert row["answered_in_corpus"] == sum(conf[q.id] >= t for q in qs if q.in_corpus) / 3
        assert row["refused_out_of_corpus"] == sum(conf[q.id] < t for q in qs if not q.in_corpus) / 3
