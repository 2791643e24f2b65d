"""``python -m qa bench``: speed and size at scale, on synthetic corpora of SQuAD train paragraphs.

For each size (default 10k, 50k and 200k chunks) a corpus is written of one-paragraph articles
drawn from ``../shared/data/squad-train`` (18,876 distinct paragraphs, resampled with a seed once
they run out), indexed in this process, then served by a fresh process that measures what a user
waits for. The table:

- build: wall time of ``build_index`` and chunks per second. Paragraphs repeat above ~24k chunks:
  a repeated text is embedded and chunked once (a cache in this benchmark only, never in the
  product), so the build of a bigger corpus measures the index itself (BM25, HNSW, writing) plus
  the distinct texts; ``embedded`` says how many texts really went through the model and
  ``embed/s`` how fast, from which the full cost extrapolates.
- RSS: peak resident memory of the serving process (index loaded, questions answered, one
  article added).
- disk: the index version folder.
- cold ask: ``python -m qa ask`` end to end, index on disk. first answer: a fresh process's
  ``qa.answer`` from interpreter start (the app's path, without gradio).
- warm p50/p95: ``qa.answer`` (k=5, the default reader) over SQuAD train questions about the
  corpus's paragraphs.
- add one article: a new article written into the corpus and ``Engine.build_index()`` in the
  serving process (the chat's upload path), then ``python -m qa index`` for another one (cold).

With ``--compare-texts N`` it first embeds the same N texts (chunks and sentences of the corpus)
with the sentence-transformers reference path (batches of 8, every core) and the onnx embedder,
and prints texts per second and the ratio.

A benchmark, not a test: nothing here asserts a target. CI runs it at a tiny size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad-train"
DEFAULT_WORK = Path.home() / ".cache" / "qa-bench"
DEFAULT_REPORT = ROOT / "artifacts" / "bench-report.json"
CHUNKS_PER_PARAGRAPH = 1.27  # measured on 500 SQuAD train paragraphs (chunk_max_tokens 200, overlap 1)
NEW_ARTICLE = (
    " date 2026-11-20 The harbour master of Port Ellery, Ingrid Vasquez-Holm, said on Friday that the new "
    "tidal barrier had held back a surge of 3.4 metres during the storm named Odile. Engineers had finished "
    "the barrier in October, eleven months late and 40 million euros over budget.\n"
)
NEW_QUESTION = "Who is the harbour master of Port Ellery?"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="10000,50000,200000", help="corpus sizes in chunks, comma-separated")
    p.add_argument("--questions", type=int, default=200, help="questions answered warm per size (default 200)")
    p.add_argument("--compare-texts", type=int, default=2000, help="texts for the embedder comparison (0: skip)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding train-v1.1.json.gz")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where corpora and indexes are written")
    p.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="JSON report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe", type=Path, help=argparse.SUPPRESS)  # internal: the serving process's job file


def main(args: argparse.Namespace) -> int:
    if args.probe is not None:
        return _probe(args.probe)
    from .errors import InputError

    try:
        sizes = [int(x) for x in str(args.sizes).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--sizes must be integers separated by commas. Currently, it is {args.sizes!r}.") from None
    if not sizes or min(sizes) < 10:
        raise InputError(f"--sizes must name sizes of at least 10 chunks. Currently, it is {args.sizes!r}.")
    paragraphs = _paragraphs(args.data)
    args.work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "cores": os.cpu_count(), "sizes": []}
    if args.compare_texts > 0:
        report["embedders"] = compare_embedders(paragraphs, args.compare_texts, args.seed)
        e = report["embedders"]
        print(
            f"embedding {e['texts']} texts ({e['chunks']} chunks, {e['sentences']} sentences): "
            f"sentence-transformers {e['st_texts_per_s']:.0f}/s, onnx {e['onnx_texts_per_s']:.0f}/s: "
            f"{e['ratio']:.2f}x; cosine mean {e['cosine_mean']:.4f}, min {e['cosine_min']:.4f}",
            flush=True,
        )
    from .embedders.onnx import OnnxEmbedder

    cached = _CachedEmbedder(OnnxEmbedder())
    for size in sizes:
        row = bench_size(size, paragraphs, cached, args)
        report["sizes"].append(row)
        print(_line(row), flush=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print()
    print(table(report["sizes"]))
    print(f"report: {args.report}")
    return 0


# ---------------------------------------------------------------- data


def _paragraphs(folder: Path) -> list[tuple[str, list[str]]]:
    """(paragraph, its questions) of SQuAD v1.1 train, in file order."""
    from .errors import InputError

    path = folder / "train-v1.1.json.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError(f"no SQuAD train file at {path} (give --data)") from None
    return [(p["context"], [q["question"] for q in p["qas"]]) for a in data["data"] for p in a["paragraphs"]]


def _write_corpus(folder: Path, paragraphs, n_articles: int, seed: int) -> list[str]:
    """``n_articles`` one-paragraph articles (1,000 per sub-folder); the questions about them."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    order: list[int] = []
    questions: list[str] = []
    while len(order) < n_articles:
        batch = list(range(len(paragraphs)))
        rng.shuffle(batch)
        order += batch
    for i, p in enumerate(order[:n_articles]):
        sub = folder / f"{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir()
        text, qs = paragraphs[p]
        (sub / f"a{i:06d}.txt").write_text(f" date 2024-{1 + i % 12:02d}-{1 + i % 28:02d} {text}\n", encoding="utf-8")
        questions += qs[:1]
    rng.shuffle(questions)
    return questions


class _CachedEmbedder:
    """The onnx embedder with a cache of the texts it has seen (benchmark only: repeated
    paragraphs are embedded once). Counts what really went through the model."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_id, self.dimension = inner.model_id, inner.dimension
        self.cache: dict[str, np.ndarray] = {}
        self.embedded = 0
        self.seconds = 0.0

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)

    def embed(self, texts, *, progress: bool = False) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            t0 = time.perf_counter()
            vecs = self.inner.embed(missing, progress=progress)
            self.seconds += time.perf_counter() - t0
            self.embedded += len(missing)
            for t, v in zip(missing, vecs, strict=True):
                self.cache[t] = v.astype(np.float16)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self.cache[t]
        return out


class _ChunkMemo:
    """Chunks of a repeated text computed once (benchmark only), re-labelled with the source."""

    def __init__(self, real) -> None:
        self.real = real
        self.memo: dict[str, list] = {}

    def __call__(self, doc, *args, **kwargs):
        import dataclasses

        got = self.memo.get(doc.text)
        if got is None:
            got = self.memo[doc.text] = self.real(doc, *args, **kwargs)
        return [c if c.source == doc.source else dataclasses.replace(c, source=doc.source) for c in got]


# ---------------------------------------------------------------- one size


def bench_size(size: int, paragraphs, embedder: _CachedEmbedder, args) -> dict[str, Any]:
    from . import index as index_mod
    from .settings import Settings

    corpus, index_dir = args.work / f"corpus-{size}", args.work / f"index-{size}"
    n_articles = max(1, round(size / CHUNKS_PER_PARAGRAPH))
    questions = _write_corpus(corpus, paragraphs, n_articles, args.seed)
    shutil.rmtree(index_dir, ignore_errors=True)
    settings = Settings(corpus_dir=str(corpus), index_dir=str(index_dir))
    real_chunker = index_mod.chunk_document
    index_mod.chunk_document = _ChunkMemo(real_chunker)
    embedded, embed_s = embedder.embedded, embedder.seconds
    try:
        t0 = time.perf_counter()
        report = index_mod.build_index(settings, embedder)
        build_s = time.perf_counter() - t0
    finally:
        index_mod.chunk_document = real_chunker
    folder = index_mod.current_version(index_dir)
    disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    row: dict[str, Any] = {
        "size": size,
        "articles": report.documents,
        "chunks": report.chunks,
        "segments": report.segments,
        "dense": report.dense,
        "build_s": round(build_s, 1),
        "chunks_per_s": round(report.chunks / build_s, 1),
        "embedded_texts": embedder.embedded - embedded,
        "embed_texts_per_s": round((embedder.embedded - embedded) / max(1e-9, embedder.seconds - embed_s), 1),
        "disk_mb": round(disk / 1e6, 1),
    }
    row.update(_serve(corpus, index_dir, questions[: args.questions], args.work))
    return row


def _serve(corpus: Path, index_dir: Path, questions: list[str], work: Path) -> dict[str, Any]:
    """The serving process's figures, and ``python -m qa ask`` / ``python -m qa index`` cold."""
    env = dict(os.environ, QA_CORPUS_DIR=str(corpus), QA_INDEX_DIR=str(index_dir))
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "qa", "ask", questions[0]], env=env, check=True, capture_output=True, timeout=600
    )
    ask_s = time.perf_counter() - t0
    job = work / "probe.json"
    job.write_text(json.dumps({"questions": questions, "corpus": str(corpus), "index": str(index_dir)}))
    t0 = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "qa", "bench", "--probe", str(job)],
        env=dict(env, QA_BENCH_T0=repr(t0)),
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    new = corpus / "zz-new-cli.txt"
    new.write_text(NEW_ARTICLE.replace("Port Ellery", "Port Ansel"), encoding="utf-8")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qa", "index"], env=env, check=True, capture_output=True, timeout=1800)
    probe["add_cli_s"] = round(time.perf_counter() - t0, 2)
    probe["cold_ask_s"] = round(ask_s, 2)
    return probe


def _probe(job_path: Path) -> int:
    """In a fresh process: first answer, warm answers, one article added; JSON on stdout."""
    t_start = float(os.environ.get("QA_BENCH_T0", time.time()))
    job = json.loads(job_path.read_text())
    from . import engine as engine_mod
    from .evaluation import percentile

    engine = engine_mod.get_engine(job["corpus"], job["index"])
    questions = job["questions"]
    engine.answer(questions[0])
    first = time.time() - t_start
    times = []
    for q in questions:
        t0 = time.perf_counter()
        engine.answer(q)
        times.append((time.perf_counter() - t0) * 1000)
    new = Path(job["corpus"]) / "zz-new.txt"
    new.write_text(NEW_ARTICLE, encoding="utf-8")
    t0 = time.perf_counter()
    engine.build_index()
    add_s = time.perf_counter() - t0
    found = "Vasquez-Holm" in engine.answer(NEW_QUESTION).text
    rss_mb = _peak_rss_mb()
    out = {
        "first_answer_s": round(first, 2),
        "warm_p50_ms": round(percentile(times, 50), 1),
        "warm_p95_ms": round(percentile(times, 95), 1),
        "add_one_s": round(add_s, 2),
        "added_found": found,
        "rss_mb": round(rss_mb),
        "segments_after_add": len(engine.index.segments),
    }
    print(json.dumps(out))
    return 0


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries the
    parent's peak over fork and exec into ru_maxrss (the benchmark's parent holds two models)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- embedders side by side


def compare_embedders(paragraphs, n: int, seed: int) -> dict[str, Any]:
    """The same texts (chunk-sized paragraphs and their sentences, as a build sees them) through
    sentence-transformers (today's reference path) and the onnx embedder."""
    from .chunking import split_sentences
    from .embedders.onnx import OnnxEmbedder
    from .embedders.sentence_transformers import SentenceTransformerEmbedder

    rng = random.Random(seed + 1)
    picked = rng.sample(range(len(paragraphs)), min(len(paragraphs), n))
    texts: list[str] = []
    chunks = sentences = 0
    for i in picked:
        text = paragraphs[i][0]
        texts.append(text)
        chunks += 1
        for s in split_sentences(text):
            texts.append(text[s.start : s.end])
            sentences += 1
        if len(texts) >= n:
            break
    texts = texts[:n]
    st, onnx = SentenceTransformerEmbedder(), OnnxEmbedder()
    st.embed(["warm up"] * 9)
    onnx.embed(["warm up"] * 9)
    t0 = time.perf_counter()
    a = st.embed(texts)
    st_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = onnx.embed(texts)
    onnx_s = time.perf_counter() - t0
    cos = (a * b).sum(1)
    return {
        "texts": len(texts),
        "chunks": chunks,
        "sentences": len(texts) - min(chunks, len(texts)),
        "st_seconds": round(st_s, 2),
        "onnx_seconds": round(onnx_s, 2),
        "st_texts_per_s": len(texts) / st_s,
        "onnx_texts_per_s": len(texts) / onnx_s,
        "ratio": st_s / onnx_s,
        "cosine_mean": float(cos.mean()),
        "cosine_p1": float(np.percentile(cos, 1)),
        "cosine_min": float(cos.min()),
    }


# ---------------------------------------------------------------- output


COLUMNS = [
    ("chunks", "chunks", "{:,}"),
    ("build_s", "build s", "{:.1f}"),
    ("chunks_per_s", "chunks/s", "{:.0f}"),
    ("embedded_texts", "embedded", "{:,}"),
    ("embed_texts_per_s", "embed/s", "{:.0f}"),
    ("dense", "search", "{}"),
    ("rss_mb", "RSS MB", "{:,}"),
    ("disk_mb", "disk MB", "{:,.0f}"),
    ("cold_ask_s", "cold ask s", "{:.2f}"),
    ("first_answer_s", "first answer s", "{:.2f}"),
    ("warm_p50_ms", "p50 ms", "{:.1f}"),
    ("warm_p95_ms", "p95 ms", "{:.1f}"),
    ("add_one_s", "add one s", "{:.2f}"),
    ("add_cli_s", "add (CLI) s", "{:.2f}"),
]


def table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(fmt.format(r.get(k, "")) for k, _, fmt in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _line(row: dict[str, Any]) -> str:
    return ", ".join(f"{label} {fmt.format(row.get(k, ''))}" for k, label, fmt in COLUMNS) + (
        "" if row.get("added_found") else " (the added article was NOT found)"
    )
