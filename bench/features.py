"""Dump features for calibration on a seeded SQuAD sample (index and question vectors cached by
bench/tune.py). Two files: passage rows (reranking) and question rows (abstention).

    .venv/bin/python bench/features.py --sample 3000 --seed 1 --depth 20 --out bench/feats-s1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tune import CachedEmbedder  # noqa: E402

from qa import answering, lexical, retrieval  # noqa: E402
from qa import evaluation as ev  # noqa: E402
from qa.engine import Engine, default_embedder  # noqa: E402
from qa.settings import Settings  # noqa: E402


def _caps(question: str) -> list[str]:
    """Stemmed capitalised words of the question past its first word (names, mostly)."""
    import re

    words = re.findall(r"[A-Za-z][\w'-]*", question)[1:]
    return lexical.tokenize(" ".join(w for w in words if w[0].isupper()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--out", default="bench/feats")
    a = ap.parse_args()
    base = Settings.from_env()
    work = ev.squad_workdir(ev.DEFAULT_SQUAD, ev.DEFAULT_CACHE, base)
    questions = ev.write_squad_corpus(json.loads(ev.DEFAULT_SQUAD.read_text()), work / "corpus")
    s = base.replace(corpus_dir=str(work / "corpus"), index_dir=str(work / "index"))
    emb = CachedEmbedder(default_embedder(s), work / "qvecs.npz")
    eng = Engine(s, embedder=emb)
    eng.build_index()
    idx = eng.index
    sample = ev.sample_questions(questions, a.sample, a.seed)
    emb.embed([q.question for q in sample])
    emb.save()
    prow, qrow = [], []
    for qi, q in enumerate(sample):
        hits = retrieval.search(idx, emb, s, q.question, a.depth)
        terms = lexical.tokenize(q.question)
        top_bm25 = max((p.bm25_score or 0.0) for p in hits.passages) if hits.passages else 0.0
        uniq = list(dict.fromkeys(terms))
        w = [answering._idf(idx, t) for t in uniq]
        known = sum(wi for t, wi in zip(uniq, w) if idx.df.get(t, 0) > 0) / sum(w) if w else 0.0
        best_overall = None
        for rank, p in enumerate(hits.passages):
            fs = [f for f in answering.sentence_features(idx, p.chunk_id, q.question, terms, hits.query_vector, s) if f.quotable]
            if not fs:
                fs = [answering.SentenceFeatures(p, "", 0.0, 0.0, 0.0, 0.0, False)]
            scores = [answering.sentence_score(f, s) for f in fs]
            b = int(np.argmax(scores))
            f = fs[b]
            label = ev.covers(p.start, p.end, p.source, q.source, q.offsets) if q.in_corpus else False
            gold_sent = bool(q.in_corpus and f.quotable and p.source == q.source and any(f.span.start <= o < f.span.end for o in q.offsets))
            row = [qi, rank, p.score, p.dense_score or 0.0, (p.bm25_score or 0.0) / (top_bm25 or 1.0), p.bm25_score or 0.0,
                   max(x.dense for x in fs), max(x.coverage for x in fs), f.context, scores[b], f.dense, f.coverage, f.typed, int(label), int(gold_sent)]
            prow.append(row)
            if best_overall is None or scores[b] > best_overall[0]:
                best_overall = (scores[b], f)
        top_dense = max((p.dense_score or 0.0) for p in hits.passages[:5]) if hits.passages else 0.0
        bf = best_overall[1] if best_overall else None
        caps = [t for t in _caps(q.question)]
        cap_unknown = sum(1 for t in caps if idx.df.get(t, 0) == 0) / len(caps) if caps else 0.0
        top = hits.passages[0] if hits.passages else None
        rare = sorted(uniq, key=lambda t: -answering._idf(idx, t))[:2]
        rare_cov = answering.coverage(idx, rare, answering.chunk_terms(idx, top.chunk_id)) if top and rare else 0.0
        dense_top = max(hits.passages, key=lambda p: p.dense_score or 0.0) if top else None
        bm_top = max(hits.passages, key=lambda p: p.bm25_score or 0.0) if top else None
        agree = (top is dense_top) + (top is bm_top) if top else 0
        qrow.append([qi, int(q.in_corpus), known, top_dense, top_bm25, sum(w), len(uniq),
                     bf.coverage if bf else 0.0, bf.dense if bf else 0.0, best_overall[0] if best_overall else 0.0,
                     cap_unknown, rare_cov, agree, top.score if top else 0.0, len(caps)])
    np.save(a.out + "-passages.npy", np.array(prow, dtype=np.float64))
    np.save(a.out + "-questions.npy", np.array(qrow, dtype=np.float64))
    print(len(prow), len(qrow))


if __name__ == "__main__":
    main()
