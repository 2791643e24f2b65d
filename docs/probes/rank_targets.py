"""The trained reader's rank model fitted in other ways, on ``calibrate-reader --questions 4000``'s
held-out questions read once: per variant, ``calibrate-reader``'s whole fit (rank model, then the
confidence model on the answers it chooses, the threshold by the rule), and, always answering in
corpus with second quotes, each question answered by a rank model fitted without its article's
fold: accuracy, the share of answers with two quotes and their mean length (the second-quote
margin is on the rank model's scale). Variants: a logistic model over all guesses (the fit to
2026-12-07) of the shipped label (the guess's quote holds a gold answer and its span overlaps
one by F1 > 0.5), of "the quote holds a gold answer" alone, of that times the span's F1 (a soft
label); a listwise fit (softmax over each question's guesses, ``calibration.fit_listwise``) of the
shipped label and of the quote alone, on its own scale; and the listwise fit of the shipped label
put on the logistic model's scale (``calibrate.fit_rank``, shipped since). ``python
docs/probes/rank_targets.py [N ...]`` runs the variants numbered N (from 0; all when none);
report in artifacts/rank-targets.json."""

import json
import sys
from pathlib import Path

import numpy as np

import qa.reading.calibrate as calibrate
import qa.reading.trained as trained
from qa.calibration import fit_listwise, fit_logistic
from qa.cli import main


def shipped(lab):
    return 1.0 if lab["accuracy"] and lab["F1"] > 0.5 else 0.0


def quote(lab):
    return float(lab["accuracy"])


def soft(lab):
    return float(lab["accuracy"]) * lab["F1"]


def listwise(lists):
    return np.concatenate([[0.0], fit_listwise([(X, y > 0.5) for X, y in lists])])


def logistic(lists):
    """The rank model as fitted to 2026-12-07: one logistic model over every question's guesses."""
    kept = [(X, y) for X, y in lists if len(X)]
    return fit_logistic(np.concatenate([X for X, _ in kept]), np.concatenate([y for _, y in kept]))


ALL = {
    "logistic, shipped label": (shipped, logistic),
    "logistic, quote holds the answer": (quote, logistic),
    "logistic, quote x span F1 (soft)": (soft, logistic),
    "listwise, shipped label": (shipped, listwise),
    "listwise, quote holds the answer": (quote, listwise),
    # what calibrate-reader fits since 2026-12-07 (calibrate.fit_rank)
    "listwise, shipped label, on the logistic's scale": (shipped, calibrate.fit_rank),
}
VARIANTS = dict(ALL)
real_fit_and_report = calibrate.fit_and_report


def out_of_fold(items, label, fit):
    """Always answering in corpus, second quotes and all, each question answered with a rank model
    fitted without its article's fold: accuracy, share with two quotes, mean characters."""
    from qa.evaluation import squad_correct
    from qa.reading.trained import TrainedReader

    data = []
    for it in items:
        if it.question.in_corpus:
            rows, labels = calibrate._guess_rows(it)
            X = np.array(rows, dtype=np.float64) if rows else np.zeros((0, trained.RANK_FEATURES))
            data.append((calibrate._fold(it.question), (X, np.array([label(lab) for lab in labels])), it))
    ok, two, chars = [], [], []
    for k in range(calibrate.FOLDS):
        theta = fit([lst for f, lst, _ in data if f != k])
        model = ",".join(repr(float(v)) for v in theta)
        readers = {}
        for f, _, it in data:
            if f != k:
                continue
            s = it.engine.settings.replace(reader_abstain_threshold=-1.0, reader_rank_model=model)
            reader = readers.setdefault(id(it.engine), TrainedReader(s, it.spans))
            answer, _ = reader.answer_reading(it.asked, it.reading, it.hits, it.engine.index, it.query)
            ok.append(squad_correct(answer, it.question))
            two.append(len(answer.citations) > 1)
            chars.append(len(answer.text))
    return {
        "accuracy": round(float(np.mean(ok)), 4),
        "two_quotes": round(float(np.mean(two)), 4),
        "mean_chars": round(float(np.mean(chars)), 1),
        "questions": len(ok),
    }


def variants(items, latencies, parts, engine, out, t0, ablate=False):
    report = {}
    for i, (name, (label, fit)) in enumerate(VARIANTS.items()):
        calibrate.rank_label, calibrate.fit_rank = label, fit
        path = Path(f"artifacts/rank-target-{i}.json")
        print(f"\n=== {name}", flush=True)
        real_fit_and_report(items, latencies, parts, engine, path, t0)
        r = json.loads(path.read_text())
        t = r["suggested_threshold"]
        at = {
            part: next((row for row in rows if row["threshold"] == t), None)
            for part, rows in r["rows_by_corpus_out_of_fold"].items()
        }
        report[name] = {
            "chosen_guess_out_of_fold": r["ranking"]["folds_by_article"]["rank model"],
            "always_answering_out_of_fold": out_of_fold(items, label, fit),
            "always_answering_in_sample": r["always_answering"],
            "threshold": t,
            "confidence_out_of_fold_at_threshold": at,
            "reader_rank_model": r["reader_rank_model"],
        }
        print(json.dumps(report[name], indent=1), flush=True)
    Path("artifacts/rank-targets.json").write_text(json.dumps(report, indent=1))
    return 0


def run(names: list[str]) -> int:
    """``calibrate-reader --questions 4000`` with its fit replaced by the variants numbered ``names``
    (their places in ``ALL``, from 0; all when none)."""
    chosen = {k: v for i, (k, v) in enumerate(ALL.items()) if not names or str(i) in names}
    VARIANTS.clear()
    VARIANTS.update(chosen)
    calibrate.fit_and_report = variants
    return main(["calibrate-reader", "--questions", "4000", "--out", "artifacts/rank-targets-calibration.json"])


if __name__ == "__main__":  # python docs/probes/rank_targets.py [N ...]
    sys.exit(run(sys.argv[1:]))
