"""How follow-up questions fare against the same questions asked in full, on held-out SQuAD *train*
articles (never the benchmark). Not a test (it takes minutes); its figures are in docs/reader.md.

    python tests/followupbench.py [N] [--reader trained|picker] [--threshold T] [--seed S]

A question that names its article's title ("When did Dell open its Tennessee facility?") is asked
three ways over the closed corpus ``python -m qa calibrate-reader`` builds (run that once before):
in full; as a follow-up, the title turned into "it"/"its", after a first turn (another question of
the same article that names the title, and the answer the system gave it) as ``history``; and in
that pronoun form without history. Printed per way: the share answered and the share right (the
benchmark's answer accuracy: a gold answer in the answer text and a citation of its article).
``--threshold -1`` never refuses, which separates refusals from wrong answers. Only the articles
of ``calibrate.BENCH_FOLD`` are asked about: ``calibrate-reader`` fits its models on follow-ups
too, never of those articles (``--all-articles``: every held-out article, as before it did).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def follow_ups(questions, n: int, seed: int, fold: int | None = None) -> list[tuple]:
    """(first turn, asked question, its pronoun form) for up to ``n`` in-corpus questions naming
    their article's title, the first turn drawn from the same article's; with ``fold``, only of
    the articles of that calibration fold."""
    from qa.evaluation import pronoun_follow_ups
    from qa.reading.calibrate import _fold

    asked = [f for f in pronoun_follow_ups(questions, seed) if fold is None or _fold(f.question) == fold]
    return [(f.first, f.question, f.asked) for f in asked[:n]]


def main() -> int:
    from readerbench import held_out_engine

    from qa.engine import Engine
    from qa.evaluation import squad_correct

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("questions", type=int, nargs="?", default=400)
    ap.add_argument("--reader", choices=("trained", "picker"), default="trained")
    ap.add_argument("--threshold", type=float, default=None, help="the reader's abstention threshold")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--all-articles", action="store_true", help="every held-out article, also those calibration asks follow-ups of"
    )
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qa-eval")
    args = ap.parse_args()

    held, questions = held_out_engine(args.cache)
    settings = held.settings.replace(reader=args.reader)
    if args.threshold is not None:
        key = "reader_abstain_threshold" if args.reader == "trained" else "abstain_threshold"
        settings = settings.replace(**{key: args.threshold})
    engine = Engine(settings, embedder=held.embedder)
    engine._index = held.index
    from qa.reading.calibrate import BENCH_FOLD

    asked = follow_ups(questions, args.questions, args.seed, None if args.all_articles else BENCH_FOLD)
    tally = {"in full": [0, 0], "follow-up": [0, 0], "pronoun, no history": [0, 0]}
    for first, q, pronoun in asked:
        said = engine.answer(first.question).text
        history = [{"role": "user", "content": first.question}, {"role": "assistant", "content": said}]
        for way, answer in (
            ("in full", engine.answer(q.question)),
            ("follow-up", engine.answer(pronoun, history)),
            ("pronoun, no history", engine.answer(pronoun)),
        ):
            tally[way][0] += not answer.abstained
            tally[way][1] += squad_correct(answer, q)
    n = max(1, len(asked))
    where = "every held-out article" if args.all_articles else f"the articles of calibration fold {BENCH_FOLD}"
    print(f"{len(asked)} questions on {where}, reader {args.reader}, threshold {args.threshold}")
    for way, (answered, right) in tally.items():
        print(f"{way:20s} answered {answered / n:.3f}  right {right / n:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
