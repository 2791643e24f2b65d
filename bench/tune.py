"""Fast tuning loop on the SQuAD closed corpus: question vectors cached on disk, settings
overrides from the command line, per-question rows saved for calibration.

    .venv/bin/python bench/tune.py --sample 2000 --seed 1 w_type=0.2 fusion=weighted
    .venv/bin/python bench/tune.py --dump bench/rows.jsonl        # all questions, rows for calibration

The reported numbers are the protocol's (same functions as ``python -m qa eval --squad``), but the
index must already exist (run ``python -m qa eval --squad`` once) and latency is not measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qa import evaluation as ev  # noqa: E402
from qa.engine import Engine, default_embedder  # noqa: E402
from qa.settings import Settings, _parse  # noqa: E402


class CachedEmbedder:
    """Wraps the real embedder; remembers every text's vector (and saves them)."""

    def __init__(self, inner, path: Path):
        self.inner, self.path = inner, path
        self.model_id, self.dimension, self.max_tokens = inner.model_id, inner.dimension, inner.max_tokens
        self.cache: dict[str, np.ndarray] = {}
        if path.exists():
            d = np.load(path, allow_pickle=False)
            self.cache = dict(zip(d["texts"].tolist(), d["vecs"], strict=False))

    def embed(self, texts, *, progress=False):
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for t, v in zip(missing, self.inner.embed(missing, progress=progress), strict=False):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)

    def save(self):
        texts = list(self.cache)
        np.savez(self.path, texts=np.array(texts), vecs=np.stack([self.cache[t] for t in texts]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dump", help="write one JSON row per question (features for calibration)")
    ap.add_argument("--baselines", action="store_true")
    ap.add_argument("overrides", nargs="*", help="name=value settings")
    a = ap.parse_args()
    fields = {f.name: f for f in __import__("dataclasses").fields(Settings)}
    over = {}
    for o in a.overrides:
        k, v = o.split("=", 1)
        over[k] = _parse(fields[k], v)
    squad = ev.DEFAULT_SQUAD
    base = Settings.from_env()
    work = ev.squad_workdir(squad, ev.DEFAULT_CACHE, base)
    data = json.loads(squad.read_text(encoding="utf-8"))
    questions = ev.write_squad_corpus(data, work / "corpus")
    s = base.replace(corpus_dir=str(work / "corpus"), index_dir=str(work / "index"), **over)
    emb = CachedEmbedder(default_embedder(s), work / "qvecs.npz")
    eng = Engine(s, embedder=emb)
    t0 = time.perf_counter()
    br = eng.build_index()
    print(f"index: {br.chunks} chunks, built={br.embedded_chunks > 0} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    sample = ev.sample_questions(questions, a.sample, a.seed)
    emb.embed([q.question for q in sample])
    emb.save()
    m = ev.run_squad(eng, sample, baselines=a.baselines, keep_answers=bool(a.dump))
    if a.dump:
        with open(a.dump, "w") as f:
            for r in m.pop("answers"):
                f.write(json.dumps(r) + "\n")
    m.pop("latency_ms")
    print(json.dumps({"overrides": over, **{k: m[k] for k in ("ours", "bm25", "dense") if k in m}}, indent=None))


if __name__ == "__main__":
    main()
