"""How well and how fast different graphs of the trained reader read: the shipped int8 graph, int8
graphs with some layers kept in float, and torch float. Not a test (it takes minutes); its figures
are in docs/reader.md.

    python tests/graphbench.py [N] [--seed S] [--variants DIR]

N held-out SQuAD *train* questions (never the benchmark; seed S) are retrieved first over the
closed corpus ``python -m qa calibrate-reader`` builds (run that once before). Every graph then
reads the same passages, question by question and in turn (the first graph rotates), so a busy
moment falls on all of them alike; printed per graph: the top span's EM and F1 and reading p50 /
mean. ``--variants DIR`` first writes, from the shipped float weights, the int8 graphs compared:
only MatMuls quantized with the span head in float (``mm``), and that with the last (``mm-last``)
or first (``mm-first``) transformer layer in float too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

VARIANTS = {
    "mm": lambda names: [n for n in names if n.startswith("/span/")],
    "mm-last": lambda names: [n for n in names if n.startswith("/span/") or "layer.5/" in n],
    "mm-first": lambda names: [n for n in names if n.startswith("/span/") or "layer.0/" in n],
}


def write_variants(out: Path) -> list[str]:
    from qa.reading import model as rm

    network, card = rm.load_network()
    folders = []
    for name, exclude in VARIANTS.items():
        rm.save_weights(network, out / name, dict(card, graph=name), exclude=exclude)
        folders.append(str(out / name))
    return folders


def main() -> int:
    from readerbench import held_out_engine

    from qa.evaluation import percentile, sample_questions, squad_em_f1
    from qa.reading.trained import SpanReader
    from qa.retrieval import search

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("questions", type=int, nargs="?", default=1500)
    ap.add_argument("--seed", type=int, default=33)
    ap.add_argument("--variants", type=Path, help="write the compared int8 graphs here first")
    ap.add_argument("graphs", nargs="*", default=[], help="more weight folders to compare")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qa-eval")
    args = ap.parse_args()

    engine, questions = held_out_engine(args.cache)
    graphs = ["shipped", *(write_variants(args.variants) if args.variants else []), *args.graphs, "torch"]
    sample = [q for q in sample_questions(questions, args.questions, args.seed) if q.in_corpus]
    read = [(q, list(search(engine.index, engine.embedder, engine.settings, q.question, 5).passages)) for q in sample]
    readers = {}
    for g in graphs:
        folder = None if g in ("shipped", "torch") else g
        r = SpanReader(folder=folder, backend="torch" if g == "torch" else "onnx", threads=2)
        r.load()
        r.read("warm up", read[0][1], top=1)
        readers[g] = r
    tally = {g: {"em": 0.0, "f1": 0.0, "seconds": []} for g in graphs}
    for i, (q, passages) in enumerate(read):
        for g in graphs[i % len(graphs) :] + graphs[: i % len(graphs)]:
            t0 = time.perf_counter()
            spans = readers[g].read(q.question, passages, top=1).spans
            tally[g]["seconds"].append(time.perf_counter() - t0)
            if spans:
                em, f1 = squad_em_f1(spans[0].text, q.answers)
                tally[g]["em"] += em
                tally[g]["f1"] += f1
    n = len(read)
    print(f"{n} in-corpus held-out questions (seed {args.seed}), top span; reading time per question")
    for g in graphs:
        t = tally[g]
        print(
            f"{g}: EM {t['em'] / n:.3f}  F1 {t['f1'] / n:.3f}  p50 {1000 * percentile(t['seconds'], 50):.1f} ms"
            f"  mean {1000 * statistics.fmean(t['seconds']):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
