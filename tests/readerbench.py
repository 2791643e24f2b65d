"""How fast the trained reader reads, by how its windows run: one padded batch on one thread (as it
was), one window at a time on one thread, one window at a time shared out over two threads (the
default). Not a test (it takes minutes); its figures are in docs/reader.md.

    python tests/readerbench.py [N] [--busy]

N held-out SQuAD *train* questions (never the benchmark) are retrieved first, over the closed
corpus ``python -m qa calibrate-reader`` builds (run that once before); then each way of running
reads the same retrieved passages and its p50/p95 is printed, the first way again at the end to
show drift. ``--busy`` keeps one core busy with a spinning process meanwhile.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _spin() -> None:  # pragma: no cover - a busy core
    while True:
        pass


def held_out_engine(cache: Path):
    """(engine, questions) over the closed corpus of held-out SQuAD *train* articles that
    ``python -m qa calibrate-reader`` builds under ``cache``; exits with status 2 and a message when
    it is not there."""
    from qa.engine import Engine
    from qa.evaluation import squad_engine
    from qa.reading import model as rm
    from qa.settings import Settings

    work = cache / "reader-calibration"
    squad = work / f"heldout-seed{rm.read_card().get('seed')}.json"
    if not squad.is_file():
        print(f"no held-out corpus at {squad}: run python -m qa calibrate-reader first", file=sys.stderr)
        raise SystemExit(2)
    engine, questions, _ = squad_engine(squad, work, Engine(Settings()))
    return engine, questions


def main() -> int:
    from qa.evaluation import percentile, sample_questions
    from qa.reading.trained import SpanReader
    from qa.retrieval import search

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("questions", type=int, nargs="?", default=300)
    ap.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qa-eval")
    args = ap.parse_args()

    engine, questions = held_out_engine(args.cache)
    sample = sample_questions(questions, args.questions, 11)
    read = [
        (q.question, list(search(engine.index, engine.embedder, engine.settings, q.question, 5).passages))
        for q in sample
    ]
    spinner = multiprocessing.Process(target=_spin, daemon=True) if args.busy else None
    if spinner:
        spinner.start()
    results = []
    try:
        for mode, threads in (("padded", 1), ("each", 1), ("each", 2), ("padded", 1)):
            reader = SpanReader(threads=threads)
            reader.load()
            if mode == "padded":
                reader.loaded_backend = "padded"  # any name but 'onnx' runs one padded batch
            for question, passages in read[:10]:
                reader.read(question, passages)
            times = []
            for question, passages in read:
                t = time.perf_counter()
                reader.read(question, passages)
                times.append(1000 * (time.perf_counter() - t))
            row = {
                "windows": mode,
                "threads": threads,
                "p50_ms": round(percentile(times, 50), 1),
                "p95_ms": round(percentile(times, 95), 1),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if spinner:
            spinner.terminate()
    print(json.dumps({"questions": len(read), "busy": args.busy, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
