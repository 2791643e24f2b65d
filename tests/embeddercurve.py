"""The int8 onnx embedder against the float sentence-transformers one, on the SQuAD protocol, with
the refusal threshold taken out of the comparison. Not a test (it takes 10-20 minutes: the
sentence-transformers build is slow); its figures are in docs/quality.md.

    python tests/embeddercurve.py [--reader picker] [--cache DIR] [--sample N]

For each embedder it builds the protocol's index (reused from ``--cache`` when up to date) and
asks every question once with refusal switched off, keeping each answer's confidence. It then
prints, for both:

- in-corpus answers holding the gold answer when nothing is refused, and the questions only one
  embedder gets right (paired);
- accuracy and answered share at the shipped threshold (what ``qa eval --squad`` reports);
- accuracy at the same out-of-corpus refusal rates (each embedder's own threshold for it);
- the area under accuracy against the refusal rate.

A lower accuracy at the shipped threshold with equal figures at equal refusal rates means the
confidence moved along the same curve (the threshold sits at another point of it), not that answers
got worse.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATES = (0.85, 0.88, 0.90, 0.92, 0.95)


def ask_all(embedder: str, reader: str, cache: Path, squad: Path, sample: int) -> tuple[list[dict], float]:
    """Every question, never refusing: (rows of in_corpus / correct / confidence, the threshold)."""
    from qa.engine import Engine
    from qa.evaluation import sample_questions, squad_correct, squad_engine
    from qa.settings import Settings

    settings = Settings(reader=reader, embedder=embedder)
    threshold = settings.abstain_threshold if reader == "picker" else settings.reader_abstain_threshold
    never = {"abstain_threshold": 0.0} if reader == "picker" else {"reader_abstain_threshold": 0.0}
    engine, questions, build = squad_engine(squad, cache / embedder, Engine(dataclasses.replace(settings, **never)))
    print(f"{embedder}: index of {build['chunks']} chunks ({'built' if build['built'] else 'reused'})", flush=True)
    if sample:
        questions = sample_questions(questions, sample, 1)
    rows = []
    for q in questions:
        a = engine.answer(q.question, None, 5, reader=reader)
        rows.append(
            {
                "in": q.in_corpus,
                "ok": bool(q.in_corpus and squad_correct(a, q)),
                "answered": not a.abstained,  # nothing quotable is still a refusal
                "conf": a.confidence,
            }
        )
    return rows, threshold


def at(rows: list[dict], t: float) -> tuple[float, float, float]:
    """(accuracy, answered in corpus, refused out of corpus) with refusal below confidence ``t``."""
    ins = [r for r in rows if r["in"]]
    out = [r for r in rows if not r["in"]]
    acc = sum(r["ok"] and r["conf"] >= t for r in ins) / max(1, len(ins))
    answered = sum(r["answered"] and r["conf"] >= t for r in ins) / max(1, len(ins))
    refused = sum(not r["answered"] or r["conf"] < t for r in out) / max(1, len(out))
    return acc, answered, refused


def threshold_for(rows: list[dict], rate: float) -> float:
    """The lowest threshold refusing at least ``rate`` of the out-of-corpus questions."""
    for t in sorted({r["conf"] for r in rows} | {1.0}):
        if at(rows, t)[2] >= rate:
            return t
    return 1.0


def area(rows: list[dict]) -> float:
    """Area under accuracy against the out-of-corpus refusal rate, over thresholds 0..1."""
    points = sorted((at(rows, i / 400)[2], at(rows, i / 400)[0]) for i in range(401))
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reader", default="picker", choices=["picker", "trained"])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qa-eval" / "embedders")
    ap.add_argument("--squad", type=Path, default=ROOT.parent / "shared" / "eval" / "squad" / "dev-v1.1.json")
    ap.add_argument("--sample", type=int, default=0, help="ask N sampled questions (default: all)")
    args = ap.parse_args()

    names = ["onnx", "sentence-transformers"]
    runs = {name: ask_all(name, args.reader, args.cache, args.squad, args.sample) for name in names}
    (a, t_a), (b, t_b) = runs["onnx"], runs["sentence-transformers"]
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x["in"]]
    print(f"\nreader {args.reader}; {len(pairs)} in-corpus and {len(a) - len(pairs)} out-of-corpus questions")
    print("| | onnx (int8) | sentence-transformers (float) |")
    print("|---|---|---|")
    only_a = sum(x["ok"] and not y["ok"] for x, y in pairs)
    only_b = sum(y["ok"] and not x["ok"] for x, y in pairs)
    print(
        f"| correct, never refusing (right only with this one) | {sum(x['ok'] for x, _ in pairs)} ({only_a})"
        f" | {sum(y['ok'] for _, y in pairs)} ({only_b}) |"
    )
    fa, fb = at(a, t_a), at(b, t_b)
    print(
        f"| accuracy / answered / refused at the shipped threshold {t_a} | {fa[0]:.4f} / {fa[1]:.4f} / {fa[2]:.4f}"
        f" | {fb[0]:.4f} / {fb[1]:.4f} / {fb[2]:.4f} |"
    )
    for rate in RATES:
        ta, tb = threshold_for(a, rate), threshold_for(b, rate)
        (acc_a, ans_a, _), (acc_b, ans_b, _) = at(a, ta), at(b, tb)
        print(
            f"| refusing ≥ {rate:.2f}: accuracy / answered (threshold) | {acc_a:.4f} / {ans_a:.4f} ({ta:.3f})"
            f" | {acc_b:.4f} / {ans_b:.4f} ({tb:.3f}) |"
        )
    print(f"| area under accuracy against refused | {area(a):.4f} | {area(b):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
