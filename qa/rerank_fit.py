"""``python -m qa fit-rerank``: learn the rerank of the fused results (``Settings.rerank_model``)
on SQuAD *train* articles, never on the benchmark or the dev set.

Seeded samples of training articles (none of the trained reader's held-out articles) become closed
corpora by the benchmark's protocol; each in-corpus question is searched as ``answer`` searches
(dense + BM25 fused, the best ``rerank_depth`` kept), and every kept result becomes a row of
``retrieval.rerank_features`` labelled by whether it holds a gold answer. A linear score is fitted
to put the gold results first (a listwise softmax loss: minus the log of the share of the
softmax over a question's results that falls on its gold ones, L2-regularised), then mapped onto
the hand-weighted score's scale by least squares (the order is the fitted one; the scale keeps
``Passage.score`` comparable for the confidence models that weigh it). R@1/3/5/10 of the hand
weights and of the fitted model are reported on the trained reader's held-out articles, which
the fit never sees. A person puts the printed model in ``qa/settings.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

KS = (1, 3, 5, 10)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .reading.train import DEFAULT_DATA, FIT_ARTICLES, FIT_CORPORA, FIT_SEED

    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding train-v1.1.json.gz")
    p.add_argument(
        "--corpora", type=int, default=FIT_CORPORA, help=f"training corpora to fit on (default {FIT_CORPORA})"
    )
    p.add_argument(
        "--articles", type=int, default=FIT_ARTICLES, help=f"SQuAD train articles per corpus (default {FIT_ARTICLES})"
    )
    p.add_argument("--seed", type=int, default=FIT_SEED, help="seed of the article sample")
    p.add_argument("--l2", type=float, default=1e-2, help="L2 penalty on the standardised weights")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qa-eval", help="corpus and index folder")
    p.add_argument("--out", type=Path, default=Path("artifacts") / "rerank-fit.json", help="JSON report")


def candidates(engine, question: str, offsets, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``rerank_features``, gold labels) of the fused results ``answer`` would rerank."""
    from .evaluation import covers
    from .reading.features import question_terms, sentence_features
    from .retrieval import rerank_features, search

    s = engine.settings
    depth = max(1, s.rerank_depth)
    hits = search(engine.index, engine.embedder, s.replace(rerank_depth=0, cross_rerank_weight=0.0), question, depth)
    passages = hits.passages
    if not passages:
        return np.zeros((0, 0)), np.zeros(0, dtype=bool)
    rs = s.replace(w_type=s.w_rerank_type)
    terms = question_terms(question)
    top_bm25 = max((p.bm25_score or 0.0) for p in passages) or 1.0
    top_fused = max(p.score for p in passages)
    rows, gold = [], []
    for rank, p in enumerate(passages):
        feats = sentence_features(engine.index, p.chunk_id, question, terms, hits.query_vector, rs)
        rows.append(rerank_features(feats, p, rank, depth, top_fused, top_bm25, rs))
        gold.append(covers(p.start, p.end, p.source, source, offsets))
    return np.asarray(rows, dtype=np.float64), np.asarray(gold, dtype=bool)


def hand_score(X: np.ndarray, settings) -> np.ndarray:
    """The hand-weighted rerank score from the feature rows (best sentence, cosine, BM25 share)."""
    return X[:, 0] + settings.w_rerank_dense * X[:, 10] + settings.w_rerank_bm25 * X[:, 11]


def recall(lists: list[tuple[np.ndarray, np.ndarray]], score, ks=KS) -> dict[str, float]:
    """R@k over the lists (a list without a gold row counts as a miss), ties kept in fused order."""
    hits = dict.fromkeys(ks, 0)
    for X, y in lists:
        if not len(X):
            continue
        order = np.argsort(-score(X), kind="stable")
        for k in ks:
            hits[k] += bool(y[order[:k]].any())
    return {f"R@{k}": round(hits[k] / max(1, len(lists)), 4) for k in ks}


def _lists(engine, questions, desc: str) -> list[tuple[np.ndarray, np.ndarray]]:
    from tqdm.auto import tqdm

    return [
        candidates(engine, q.question, q.offsets, q.source)
        for q in tqdm([q for q in questions if q.in_corpus], desc=desc, unit="q", mininterval=2)
    ]


def main(args: argparse.Namespace, engine) -> int:
    from .calibration import fit_listwise, on_scale
    from .evaluation import squad_engine
    from .reading import model as rm
    from .reading.calibrate import held_out_squad
    from .reading.train import load_squad_train, split_articles, training_engines

    t0 = time.perf_counter()
    card = rm.read_card(Path(engine.settings.reader_weights) if engine.settings.reader_weights else rm.WEIGHTS_DIR)
    _, held_titles = split_articles(
        load_squad_train(args.data), int(card.get("held_out", {}).get("articles", 40)), int(card.get("seed", 13))
    )
    train: list = []
    for name, sq, questions in training_engines(
        args.data, set(held_titles), args.cache, engine, args.corpora, args.articles, args.seed
    ):
        train += _lists(sq, questions, name)
    held_path = args.cache / "reader-calibration" / f"heldout-seed{card.get('seed')}.json"
    held_path.parent.mkdir(parents=True, exist_ok=True)
    held_path.write_text(json.dumps(held_out_squad(args.data, card)), encoding="utf-8")
    sq, questions, _ = squad_engine(held_path, held_path.parent, engine)
    held = _lists(sq, questions, "held-out articles")
    settings = engine.settings
    w = fit_listwise(train, args.l2)
    coef = on_scale(train, w, lambda X: hand_score(X, settings))
    model = ",".join(f"{v:.4g}" for v in coef)
    fitted = np.array([float(x) for x in model.split(",")])

    def learned(X):
        return X @ fitted[1:] + fitted[0]

    report = {
        "rerank_model": model,
        "questions": {"fit": len(train), "held_out": len(held)},
        "fit": {"hand weights": recall(train, lambda X: hand_score(X, settings)), "learned": recall(train, learned)},
        "held_out": {"hand weights": recall(held, lambda X: hand_score(X, settings)), "learned": recall(held, learned)},
        "seconds": round(time.perf_counter() - t0, 1),
        "settings": {"rerank_depth": settings.rerank_depth, "seed": args.seed, "l2": args.l2},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"rerank_model = {model!r}")
    for part in ("fit", "held_out"):
        for name, r in report[part].items():
            print(f"{part:9s} {name:13s} " + "  ".join(f"{k} {v:.4f}" for k, v in r.items()))
    print(f"{len(train)} fit and {len(held)} held-out questions; report {args.out}", file=sys.stderr)
    return 0
