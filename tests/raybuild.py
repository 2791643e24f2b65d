"""Ray build against the default build, on the SQuAD protocol corpus and on the seed articles:
times, vectors and answers. Not a test (it takes minutes); its figures are in docs/scale.md.

    python tests/raybuild.py [--actors N] [--address ADDR] [--questions N] [--work DIR]

For each corpus it builds the index twice from scratch, with the default embedder in-process
(`python -m qa index` as a library call) and with `--ray` (RayEmbedder, local Ray unless
--address), then checks that every chunk and sentence vector is bit-identical, and that every
dev-set question and a sample of the SQuAD questions get identical answers from both. Exits 1
on any difference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))


def build(corpus: Path, index: Path, ray: bool, address: str | None, actors: int | None):
    from qa.embedders.onnx import OnnxEmbedder
    from qa.engine import Engine
    from qa.settings import Settings

    shutil.rmtree(index, ignore_errors=True)
    base = OnnxEmbedder()
    engine = Engine(Settings(corpus_dir=str(corpus), index_dir=str(index), reader="picker"), embedder=base)
    t0 = time.perf_counter()
    if ray:
        from qa.embedders.ray_embed import RayEmbedder

        with RayEmbedder(base, address=address, actors=actors) as ray_embedder:
            report = engine.build_index(embedder=ray_embedder)
    else:
        report = engine.build_index()
    return engine, time.perf_counter() - t0, report


def same_vectors(a, b) -> bool:
    return np.array_equal(a.index.chunk_vectors(), b.index.chunk_vectors()) and np.array_equal(
        a.index.sentence_vectors, b.index.sentence_vectors
    )


def answers(engine, conversations: list[list[str]]) -> list[dict]:
    """Every turn's answer (a follow-up asked with the conversation so far)."""
    out = []
    for turns in conversations:
        history: list[dict] = []
        for q in turns:
            a = engine.answer(q, history)
            out.append({"text": a.text, "citations": [c.to_dict() for c in a.citations], "abstained": a.abstained})
            history += [{"role": "user", "content": q}, {"role": "assistant", "content": a.text}]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default=None, help="a Ray cluster (default: a local Ray)")
    p.add_argument("--actors", type=int, default=None)
    p.add_argument("--questions", type=int, default=2000, help="SQuAD questions compared (default 2000)")
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args()

    from qa.evaluation import read_dev, sample_questions, write_squad_corpus

    work = args.work or Path(tempfile.mkdtemp(prefix="raybuild-"))
    squad = json.loads((SHARED / "eval/squad/dev-v1.1.json").read_text(encoding="utf-8"))
    corpora = {"seed": ROOT / "corpus", "squad": work / "squad-corpus"}
    squad_questions = write_squad_corpus(squad, corpora["squad"])
    dev = [[t["question"] for t in row.get("turns", [row])] for row in read_dev(SHARED / "eval/severance_dev.jsonl")]
    asked = {
        "seed": dev,
        "squad": [[q.question] for q in sample_questions(squad_questions, args.questions, 1)],
    }
    ok = True
    for name, corpus in corpora.items():
        plain, t_plain, r = build(corpus, work / f"{name}-plain", False, None, None)
        rayed, t_ray, _ = build(corpus, work / f"{name}-ray", True, args.address, args.actors)
        vectors = same_vectors(plain, rayed)
        a, b = answers(plain, asked[name]), answers(rayed, asked[name])
        same = sum(x == y for x, y in zip(a, b, strict=True))
        ok &= vectors and same == len(a)
        print(
            f"{name}: {r.documents} articles, {r.chunks} chunks; build {t_plain:.1f} s in-process, {t_ray:.1f} s with "
            f"Ray; vectors bit-identical: {vectors}; answers identical: {same}/{len(a)}"
        )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
