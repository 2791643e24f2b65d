"""``python -m qa calibrate-reader [--reader trained|picker]``: fit a reader's confidence model on
held-out SQuAD *train* articles, never on the benchmark.

The articles the reader never trained on (the seeded split recorded in its model card) become a
closed corpus by the benchmark's own protocol (article ``i`` left out when ``i % 6 == 0``), so
their questions are in-corpus or out-of-corpus exactly as the benchmark's are. Each sampled
question is answered with ``answer(question, k=5)``'s retrieval and the trained reader; the
reader's signals and the retrieval signals (``trained.abstain_features``) are fitted by logistic
regression to "the question is in the corpus". Printed: the ``reader_abstain_model`` string and,
per threshold, answered (in corpus), refused (out of corpus) and answer accuracy (in corpus).
A person puts the chosen numbers in ``qa/settings.py``. With ``--reader picker`` the sentence
picker's nine signals (``answering.abstain_features``) are fitted the same way, for
``abstain_model``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import InputError
from . import model as rm
from .train import DEFAULT_DATA, load_squad_train, split_articles

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding train-v1.1.json.gz")
    p.add_argument("--questions", type=int, default=2000, help="held-out questions sampled (default 2000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the question sample")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qa-eval", help="corpus and index folder")
    p.add_argument("--out", type=Path, default=None, help="JSON report (default artifacts/<reader>-calibration.json)")
    p.add_argument(
        "--reader", choices=("trained", "picker"), default="trained", help="whose confidence model (default trained)"
    )


def held_out_squad(data_folder: Path, card: dict) -> dict:
    """The held-out articles of the reader's training split, in SQuAD's JSON shape."""
    import gzip

    seed = int(card.get("seed", 13))
    held = int(card.get("held_out", {}).get("articles", 40))
    questions = load_squad_train(data_folder)
    _, held_titles = split_articles(questions, held, seed)
    with gzip.open(data_folder / "train-v1.1.json.gz", "rt", encoding="utf-8") as f:
        data = json.load(f)
    return {"version": "heldout-train", "data": [a for a in data["data"] if a["title"] in held_titles]}


def main(args: argparse.Namespace, engine) -> int:
    import numpy as np

    from ..calibration import fit_logistic
    from ..evaluation import percentile, sample_questions, squad_correct, squad_em_f1, squad_engine
    from ..retrieval import search
    from .trained import TrainedReader

    if args.questions < 10:
        raise InputError(f"--questions must be at least 10. Currently, it is {args.questions}.")
    card = rm.read_card(Path(engine.settings.reader_weights) if engine.settings.reader_weights else rm.WEIGHTS_DIR)
    work = args.cache / "reader-calibration"
    work.mkdir(parents=True, exist_ok=True)
    squad_path = work / f"heldout-seed{card.get('seed')}.json"
    squad_path.write_text(json.dumps(held_out_squad(args.data, card)), encoding="utf-8")
    sq_engine, questions, build = squad_engine(squad_path, work, engine)
    sample = sample_questions(questions, args.questions, args.seed)
    out = args.out or Path("artifacts") / f"{args.reader}-calibration.json"
    if args.reader == "picker":
        return _picker(sq_engine, sample, build, out)
    reader = TrainedReader(sq_engine.settings.replace(reader_abstain_threshold=-1.0))  # always answers
    index = sq_engine.index
    X, y, ok = [], [], []
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    ems, f1s, latencies = [], [], []
    for q in tqdm(sample, desc="calibration questions", unit="q", mininterval=2):
        t = time.perf_counter()
        hits = search(index, sq_engine.embedder, sq_engine.settings, q.question, 5)
        answer, feats = reader.read_with_features(q.question, hits, index, q.question)
        latencies.append(time.perf_counter() - t)
        if q.in_corpus:
            em, f1 = squad_em_f1(answer.span.text, q.answers) if answer.span else (0.0, 0.0)
            ems.append(em)
            f1s.append(f1)
        if not feats:
            continue
        X.append(feats)
        y.append(1.0 if q.in_corpus else 0.0)
        ok.append(bool(q.in_corpus and not answer.abstained and squad_correct(answer, q)))
    X_, y_, ok_ = np.array(X, dtype=np.float64), np.array(y), np.array(ok)
    if len(set(y)) < 2:
        raise InputError("the sample holds only in-corpus or only out-of-corpus questions; raise --questions")
    theta = fit_logistic(X_, y_)
    prob = 1.0 / (1.0 + np.exp(-(X_ @ theta[1:] + theta[0])))
    model = ",".join(f"{v:.4g}" for v in theta)
    rows = []
    for t in THRESHOLDS:
        answered = prob >= t
        rows.append(
            {
                "threshold": t,
                "answered_in_corpus": float(answered[y_ == 1].mean()),
                "refused_out_of_corpus": float((~answered[y_ == 0]).mean()),
                "accuracy_in_corpus": float((answered & ok_)[y_ == 1].mean()),
            }
        )
    report = {
        "reader_abstain_model": model,
        "rows": rows,
        "questions": len(X),
        "in_corpus": int(y_.sum()),
        "out_of_corpus": int(len(y_) - y_.sum()),
        "articles": build.get("documents"),
        "seconds": round(time.perf_counter() - t0, 1),
        "always_answering": {
            "accuracy_in_corpus": round(float(ok_[y_ == 1].mean()), 4),
            "EM": round(sum(ems) / max(1, len(ems)), 4),
            "F1": round(sum(f1s) / max(1, len(f1s)), 4),
        },
        "latency_ms": {
            "p50": round(1000 * percentile(latencies, 50), 1),
            "p95": round(1000 * percentile(latencies, 95), 1),
        },
        "settings": {
            "reader_window_tokens": sq_engine.settings.reader_window_tokens,
            "reader_backend": reader.spans.loaded_backend,
        },
        "note": "answered/refused use the model fitted on these same questions (in-sample)",
    }
    _write_and_print(out, report, "reader_abstain_model", model, rows)
    aa = report["always_answering"]
    print(
        f"always answering: accuracy {aa['accuracy_in_corpus']:.3f}, EM {aa['EM']:.3f}, F1 {aa['F1']:.3f} (in corpus); "
        f"retrieval + reading p50 {report['latency_ms']['p50']} ms, p95 {report['latency_ms']['p95']} ms"
    )
    print(f"{len(X)} held-out training questions ({report['in_corpus']} in corpus); report {out}", file=sys.stderr)
    return 0


def _write_and_print(out: Path, report: dict, setting: str, model: str, rows: list[dict]) -> None:
    """The JSON report, then the model string and the table per threshold on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{setting} = {model!r}")
    print("threshold  answered(in)  refused(out)  accuracy(in)")
    for r in rows:
        print(
            f"{r['threshold']:9.2f}  {r['answered_in_corpus']:12.3f}  {r['refused_out_of_corpus']:12.3f}"
            f"  {r['accuracy_in_corpus']:12.3f}"
        )


def _picker(sq_engine, sample, build, out: Path) -> int:
    """The sentence picker's ``abstain_model``, fitted on the held-out questions, with answered /
    refused / accuracy per threshold (in-sample, like the trained reader's)."""
    import numpy as np

    from ..calibration import features, fit_logistic
    from ..evaluation import squad_correct

    t0 = time.perf_counter()
    X, y = features(sq_engine, sample)
    if len(set(y.tolist())) < 2:
        raise InputError("the sample holds only in-corpus or only out-of-corpus questions; raise --questions")
    theta = fit_logistic(X, y)
    model = ",".join(f"{v:.4g}" for v in theta)
    always = sq_engine.settings.replace(abstain_model=model, abstain_threshold=-1.0)
    from ..engine import Engine

    answering_engine = Engine(always, embedder=sq_engine.embedder)
    answering_engine._index = sq_engine.index
    rows = []
    probs, ok, inside = [], [], []
    for q in sample:
        a = answering_engine.answer(q.question, None, 5, reader="picker")
        probs.append(a.confidence)
        inside.append(q.in_corpus)
        ok.append(bool(q.in_corpus and squad_correct(a, q)))
    probs_, ok_, in_ = np.array(probs), np.array(ok), np.array(inside)
    for t in THRESHOLDS:
        answered = probs_ >= t
        rows.append(
            {
                "threshold": t,
                "answered_in_corpus": float(answered[in_].mean()),
                "refused_out_of_corpus": float((~answered[~in_]).mean()),
                "accuracy_in_corpus": float((answered & ok_)[in_].mean()),
            }
        )
    report = {
        "abstain_model": model,
        "rows": rows,
        "questions": len(sample),
        "in_corpus": int(in_.sum()),
        "articles": build.get("documents"),
        "embedder": sq_engine.embedder.model_id,
        "seconds": round(time.perf_counter() - t0, 1),
        "note": "answered/refused use the model fitted on these same questions (in-sample)",
    }
    _write_and_print(out, report, "abstain_model", model, rows)
    print(f"{len(sample)} held-out training questions ({report['in_corpus']} in corpus); report {out}", file=sys.stderr)
    return 0
