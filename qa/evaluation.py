"""Quality measurement: the dev question set and the SQuAD v1.1 closed-corpus benchmark.

Both follow ``../shared/eval/README.md`` exactly:

* dev set (``severance_dev.jsonl``): answerable questions must be answered with a gold string
  and a citation of a gold source, unanswerable ones abstained, follow-ups asked with the earlier
  turns as history; every citation must be verbatim at its offsets and the answer text (markers
  removed) made only of cited quotes.
* SQuAD (``squad/dev-v1.1.json``): article ``i`` becomes ``{i:02d}_{title}.txt`` (paragraphs
  joined by a blank line, no header); articles with ``i % 6 == 0`` are left out and their
  questions must be refused. R@1, R@5, answer accuracy and answered rate over in-corpus
  questions, abstention over out-of-corpus ones, all from one ``answer(question, k=5)`` call each;
  plus BM25-alone and dense-alone R@1/R@5 on the same index, index build time and latency.

Used by ``python -m qa eval`` (see ``add_arguments`` and ``main``); the metric functions are
plain and tested alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
import stat
import statistics
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .types import Answer, Passage

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEV = ROOT.parent / "shared" / "eval" / "severance_dev.jsonl"
DEFAULT_SQUAD = ROOT.parent / "shared" / "eval" / "squad" / "dev-v1.1.json"
DEFAULT_REPORT = ROOT / "artifacts" / "eval-report.json"
DEFAULT_CACHE = Path.home() / ".cache" / "qa-eval"
PROTOCOL_VERSION = 1  # bump when the way the SQuAD corpus files are written changes
LEFT_OUT_EVERY = 6  # articles with i % 6 == 0 are out of the corpus

_MARKER = re.compile(r"\[\d+\]")
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CURLY = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "„": '"', "‚": "'"})


# ---------------------------------------------------------------- normalisation


def normalize_dev(text: str) -> str:
    """Dev-set matching: case-, punctuation- and whitespace-insensitive, curly quotes as straight."""
    text = text.translate(_CURLY).lower()
    return " ".join(re.sub(r"[^\w\s]|_", " ", text).split())


def normalize_squad(text: str) -> str:
    """SQuAD matching: lower-cased, non-alphanumerics to spaces, whitespace collapsed."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def normalize_squad_official(text: str) -> str:
    """The official SQuAD v1.1 script's normalization (for short-answer EM and F1): lower case,
    punctuation removed, articles (a, an, the) removed, whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def contains_answer(answer_text: str, golds: Iterable[str], normalize: Callable[[str], str]) -> bool:
    """True when one of the gold strings occurs in the answer text (after ``normalize``)."""
    hay = f" {normalize(answer_text)} "
    for g in golds:
        g = normalize(g)
        if g and g in hay:
            return True
    return False


# ---------------------------------------------------------------- answer checks


def citation_problems(answer: Answer, corpus_dir: str | Path) -> list[str]:
    """What is wrong with the answer's citations (empty when all fine): each quote must be
    ``open(corpus/source).read()[start:end]``; the answer text with its ``[n]`` markers removed
    must be made only of cited quotes; an abstained answer cites nothing."""
    problems = []
    if answer.abstained:
        if answer.citations or answer.text.strip():
            problems.append("abstained answer has text or citations")
        return problems
    texts: dict[str, str] = {}
    for c in answer.citations:
        if c.source not in texts:
            with open(Path(corpus_dir) / c.source, encoding="utf-8", newline="") as f:
                texts[c.source] = f.read()
        if texts[c.source][c.start : c.end] != c.quote:
            problems.append(f"citation [{c.number}] is not verbatim at {c.source}:{c.start}-{c.end}")
    if not only_quotes(answer):
        problems.append("answer text is not made only of cited quotes and [n] markers")
    return problems


def only_quotes(answer: Answer) -> bool:
    """The answer text is only its citations' quotes and ``[n]`` markers (and whitespace)."""
    rest = answer.text
    for c in answer.citations:
        if not c.quote or c.quote not in rest:
            return False
        rest = rest.replace(c.quote, " ", 1)
    return not _MARKER.sub(" ", rest).strip()


def read_dev(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class DevTurn:
    question: str
    passed: bool
    answer: Answer
    problems: list[str] = field(default_factory=list)
    ms: float = 0.0  # how long the answer took


def check_turn(answer: Answer, turn: dict[str, Any], corpus_dir: str | Path) -> tuple[bool, list[str]]:
    """Does one answer pass one dev question (or follow-up turn)?"""
    problems = citation_problems(answer, corpus_dir)
    answers = turn.get("answers") or []
    answerable = turn.get("answerable", bool(answers))
    if answerable:
        if answer.abstained:
            problems.append("abstained")
        else:
            if not contains_answer(answer.text, answers, normalize_dev):
                problems.append("no gold answer string in the answer")
            if not any(c.source in (turn.get("sources") or []) for c in answer.citations):
                problems.append("no citation of a gold source")
    elif not answer.abstained:
        problems.append("answered an unanswerable question")
    return not problems, problems


def run_dev(engine, rows: Sequence[dict[str, Any]], corpus_dir: str | Path, k: int = 5) -> list[dict[str, Any]]:
    """Ask every dev row; returns one result dict per row: id, passed, turns."""
    results = []
    for row in rows:
        turns = row.get("turns") or [row]
        history: list[dict[str, str]] = []
        outcome = []
        for t in turns:
            t0 = time.perf_counter()
            a = engine.answer(t["question"], history or None, k)
            ms = 1000 * (time.perf_counter() - t0)
            ok, problems = check_turn(a, t if "turns" not in row else {**t, "answerable": True}, corpus_dir)
            outcome.append(DevTurn(t["question"], ok, a, problems, ms))
            history += [{"role": "user", "content": t["question"]}, {"role": "assistant", "content": a.text}]
        if len(outcome) == 1:
            passed = outcome[0].passed
        else:  # a follow-up passes when every turn after the first passes (all must be verbatim)
            passed = all(o.passed for o in outcome[1:]) and not any(
                p for o in outcome[:1] for p in o.problems if "verbatim" in p or "only of cited" in p
            )
        results.append(
            {
                "id": row.get("id", ""),
                "passed": passed,
                "turns": [
                    {
                        "question": o.question,
                        "passed": o.passed,
                        "problems": o.problems,
                        "abstained": o.answer.abstained,
                        "confidence": o.answer.confidence,
                        "text": o.answer.text,
                        "sources": [c.source for c in o.answer.citations],
                        "latency_ms": round(o.ms, 2),
                    }
                    for o in outcome
                ],
            }
        )
    return results


# ---------------------------------------------------------------- SQuAD protocol


def squad_file_name(i: int, title: str) -> str:
    """``{i:02d}_{title}.txt``: runs of non-alphanumerics in the title become ``_``, first 60 chars."""
    return f"{i:02d}_{re.sub(r'[^0-9A-Za-z]+', '_', title)[:60]}.txt"


def in_corpus(i: int) -> bool:
    return i % LEFT_OUT_EVERY != 0


@dataclass(frozen=True)
class SquadQuestion:
    id: str
    question: str
    source: str  # corpus file name (also for left-out articles, whose file is not written)
    answers: tuple[str, ...]
    offsets: tuple[int, ...]  # answer offsets in the file text
    in_corpus: bool
    article: int


@dataclass(frozen=True)
class FollowUp:
    """A question asked as a follow-up: its article's title turned into "it"/"its" (``asked``),
    after ``first``, another question of the same article that names the title."""

    first: SquadQuestion
    question: SquadQuestion
    asked: str


def pronoun_follow_ups(questions: Sequence[SquadQuestion], seed: int, in_corpus_only: bool = True) -> list[FollowUp]:
    """Every question that names its article's title (from its file name, as "Dell" in
    ``03_Dell.txt``), as a follow-up after another such question of its article, drawn with
    ``seed``; shuffled. With ``in_corpus_only=False`` the out-of-corpus articles' questions too
    (follow-ups the system should refuse)."""
    rng = random.Random(seed)
    by_source: dict[str, list[SquadQuestion]] = {}
    for q in questions:
        if q.in_corpus or not in_corpus_only:
            by_source.setdefault(q.source, []).append(q)
    out = []
    for source in sorted(by_source):
        title = source.split("_", 1)[1].rsplit(".", 1)[0].replace("_", " ")
        name = re.compile(r"\b(?:the )?" + re.escape(title) + r"\b('s)?", re.IGNORECASE)
        named = [q for q in by_source[source] if name.search(q.question)]
        for q in named:
            others = [x for x in named if x is not q]
            if others:
                asked = name.sub(lambda m: "its" if m.group(1) else "it", q.question, count=1)
                out.append(FollowUp(rng.choice(others), q, asked))
    rng.shuffle(out)
    return out


def squad_articles(data: dict[str, Any]) -> tuple[dict[str, str], list[SquadQuestion]]:
    """(file name -> text for the in-corpus articles, every question) per the protocol."""
    files: dict[str, str] = {}
    questions: list[SquadQuestion] = []
    for i, art in enumerate(data["data"]):
        name = squad_file_name(i, art["title"])
        parts, pos = [], 0
        for para in art["paragraphs"]:
            ctx = para["context"]
            for qa in para["qas"]:
                answers = tuple(a["text"] for a in qa["answers"])
                offsets = tuple(pos + a["answer_start"] for a in qa["answers"])
                questions.append(SquadQuestion(qa["id"], qa["question"], name, answers, offsets, in_corpus(i), i))
            parts.append(ctx)
            pos += len(ctx) + 2
        if in_corpus(i):
            files[name] = "\n\n".join(parts)
    return files, questions


def write_squad_corpus(data: dict[str, Any], corpus_dir: str | Path) -> list[SquadQuestion]:
    """Write the in-corpus articles as files (unchanged files left alone); return all questions."""
    corpus_dir = Path(corpus_dir)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    files, questions = squad_articles(data)
    for name, text in files.items():
        path = corpus_dir / name
        data_bytes = text.encode("utf-8")
        if not path.exists() or path.read_bytes() != data_bytes:
            path.write_bytes(data_bytes)
    for stale in corpus_dir.glob("*.txt"):
        if stale.name not in files:
            stale.unlink()
    return questions


def covers(start: int, end: int, source: str, gold_source: str, offsets: Iterable[int]) -> bool:
    """A passage ``[start, end)`` of ``source`` covers one gold answer offset."""
    return source == gold_source and any(start <= o < end for o in offsets)


def hit_rank(spans: Sequence[tuple[str, int, int]], q: SquadQuestion) -> int | None:
    """0-based rank of the first (source, start, end) covering a gold answer, or None."""
    for r, (source, start, end) in enumerate(spans):
        if covers(start, end, source, q.source, q.offsets):
            return r
    return None


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of questions whose first covering passage has rank < k."""
    return sum(1 for r in ranks if r is not None and r < k) / len(ranks) if ranks else 0.0


def squad_correct(answer: Answer, q: SquadQuestion) -> bool:
    """Answered, a gold string inside the answer text, and a citation of the gold file."""
    return (
        not answer.abstained
        and contains_answer(answer.text, q.answers, normalize_squad)
        and any(c.source == q.source for c in answer.citations)
    )


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear between ranks."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def sample_questions(questions: Sequence[SquadQuestion], n: int | None, seed: int) -> list[SquadQuestion]:
    """A seeded sample of ``n`` questions (all when ``n`` is None or too big), in file order."""
    if n is None or n >= len(questions):
        return list(questions)
    picked = set(random.Random(seed).sample(range(len(questions)), n))
    return [q for i, q in enumerate(questions) if i in picked]


def squad_workdir(squad_path: Path, cache_dir: Path, settings) -> Path:
    h = hashlib.sha256(squad_path.read_bytes()).hexdigest()[:12]
    return cache_dir / f"squad-{h}-p{PROTOCOL_VERSION}"


def baseline_ranks(
    index, embedder, questions: Sequence[SquadQuestion], k: int = 5, batch: int = 256
) -> dict[str, list[int | None]]:
    """BM25-alone and dense-alone covering ranks (top ``k``) computed on the index directly."""
    from .retrieval import dense_search, lexical_search

    out: dict[str, list[int | None]] = {"bm25": [], "dense": []}
    for b in range(0, len(questions), batch):
        qs = questions[b : b + batch]
        vecs = embedder.embed([q.question for q in qs])
        for q, v in zip(qs, vecs, strict=False):
            d = dense_search(index, v, k)
            rows = sorted(d, key=lambda r: -d[r])
            out["dense"].append(hit_rank([_span(index, r) for r in rows], q))
            s = lexical_search(index, q.question, k)
            rows = sorted(s, key=lambda r: -s[r])
            out["bm25"].append(hit_rank([_span(index, r) for r in rows], q))
    return out


def _span(index, row: int) -> tuple[str, int, int]:
    c = index.chunks[row]
    return c.source, c.start, c.end


def _passage_spans(passages: Sequence[Passage]) -> list[tuple[str, int, int]]:
    return [(p.source, p.start, p.end) for p in passages]


def squad_em_f1(prediction: str, golds: Iterable[str]) -> tuple[float, float]:
    """The official SQuAD v1.1 exact match and token F1 of a short answer (best over the golds)."""
    p = normalize_squad_official(prediction).split()
    em = f1 = 0.0
    for g in golds:
        gt = normalize_squad_official(g).split()
        em = max(em, float(p == gt))
        same = sum((Counter(p) & Counter(gt)).values())
        if same:
            prec, rec = same / len(p), same / len(gt)
            f1 = max(f1, 2 * prec * rec / (prec + rec))
    return em, f1


def run_squad(
    engine,
    questions: Sequence[SquadQuestion],
    *,
    k: int = 5,
    baselines: bool = True,
    progress: bool = True,
    keep_answers: bool = False,
    readers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Ask every question once per reader with ``answer(question, k=k, reader=...)``; metrics per
    the protocol, for each reader (``readers``; default: the settings' one) side by side.
    ``metrics["ours"]`` is the first reader's. Short-answer EM/F1 (official normalization,
    refusals count 0) for readers that give ``Answer.span``."""
    from tqdm import tqdm

    readers = list(readers or [engine.settings.reader])
    index = engine.index
    for name in readers:
        engine.answer("warm up", None, k, reader=name)  # the first call pays lazy loading
    inside = [q for q in questions if q.in_corpus]
    outside = [q for q in questions if not q.in_corpus]
    ranks: list[int | None] = []
    tally = {
        name: {"correct": 0, "answered": 0, "refused": 0, "em": 0.0, "f1": 0.0, "spans": 0, "latencies": []}
        for name in readers
    }
    rows: list[dict[str, Any]] = []
    for q in tqdm(questions, desc="SQuAD questions", unit="q", disable=not progress, mininterval=2):
        for n, name in enumerate(readers):
            t = tally[name]
            t0 = time.perf_counter()
            a = engine.answer(q.question, None, k, reader=name)
            t["latencies"].append(time.perf_counter() - t0)
            r, ok = None, False
            if q.in_corpus:
                r = hit_rank(_passage_spans(a.passages), q)
                if n == 0:
                    ranks.append(r)
                t["answered"] += not a.abstained
                ok = squad_correct(a, q)
                t["correct"] += ok
                if a.span is not None:
                    t["spans"] += 1
                if a.span is not None and not a.abstained:
                    em, f1 = squad_em_f1(a.span.text, q.answers)
                    t["em"] += em
                    t["f1"] += f1
            else:
                t["refused"] += a.abstained
            if keep_answers:
                rows.append(
                    {
                        "id": q.id,
                        "reader": name,
                        "in_corpus": q.in_corpus,
                        "rank": r,
                        "correct": ok,
                        "abstained": a.abstained,
                        "confidence": a.confidence,
                        "text": a.text,
                        "span": a.span.text if a.span else None,
                    }
                )
    n_in, n_out = len(inside), len(outside)
    per_reader: dict[str, dict[str, Any]] = {}
    for name in readers:
        t = tally[name]
        lat = t["latencies"]
        gives_spans = t["spans"] > 0 or (name == "trained")
        per_reader[name] = {
            "R@1": recall_at(ranks, 1),
            "R@5": recall_at(ranks, 5),
            "answer_accuracy": t["correct"] / n_in if n_in else 0.0,
            "EM": (t["em"] / n_in if n_in else 0.0) if gives_spans else None,
            "F1": (t["f1"] / n_in if n_in else 0.0) if gives_spans else None,
            "answered_rate": t["answered"] / n_in if n_in else 0.0,
            "abstention_out_of_corpus": t["refused"] / n_out if n_out else 0.0,
            "latency_ms": {
                "p50": 1000 * percentile(lat, 50),
                "p95": 1000 * percentile(lat, 95),
                "mean": 1000 * statistics.fmean(lat) if lat else 0.0,
            },
        }
    first = per_reader[readers[0]]
    metrics: dict[str, Any] = {
        "questions": len(questions),
        "in_corpus": n_in,
        "out_of_corpus": n_out,
        "readers": per_reader,
        "ours": {key: v for key, v in first.items() if key != "latency_ms"},
        "latency_ms": first["latency_ms"],
    }
    if baselines and inside:
        b = baseline_ranks(index, engine.embedder, inside, k)
        for name, rs in b.items():
            metrics[name] = {"R@1": recall_at(rs, 1), "R@5": recall_at(rs, 5)}
    if keep_answers:
        metrics["answers"] = rows
    return metrics


# ---------------------------------------------------------------- CLI


def _int_at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer of at least ``low`` (argparse turns the error into exit 2)."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = None
        if n is None or n < low:
            raise argparse.ArgumentTypeError(f"must be an integer of at least {low}. Currently, it is {value!r}.")
        return n

    parse.__name__ = f"integer >= {low}"
    return parse


def _input_file(value: str) -> str:
    """argparse type of --dev PATH / --squad PATH: a file the user names must be a regular file
    (/dev/null would read as an empty set that "passes"). Only the defaults, when missing, are
    skipped with a note (argparse does not pass the non-string defaults through this)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path is not a file; name one")
    try:
        mode = os.stat(value).st_mode
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"{value!r} does not exist") from None
    except (OSError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"{value!r} cannot be read: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(mode):
        raise argparse.ArgumentTypeError(f"{value!r} is not a regular file")
    return value


def _readers(value: str) -> list[str]:
    from .settings import READERS

    names = [x.strip() for x in value.split(",") if x.strip()]
    bad = [x for x in names if x not in READERS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"must name readers among {', '.join(READERS)}. Currently, it is {value!r}.")
    return list(dict.fromkeys(names))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dev",
        metavar="PATH",
        type=_input_file,
        default=DEFAULT_DEV,  # a Path: argparse leaves it as is (a missing default is skipped)
        help="dev question set (JSONL); default: %(default)s",
    )
    parser.add_argument("--no-dev", action="store_true", help="skip the dev question set")
    parser.add_argument(
        "--dev-repeat",
        type=_int_at_least(1),
        default=10,
        metavar="N",
        help="ask the dev set N times for its latency figures (default 10)",
    )
    parser.add_argument(
        "--squad",
        metavar="PATH",
        type=_input_file,
        nargs="?",
        const=str(DEFAULT_SQUAD),
        default=None,
        help=f"run the SQuAD v1.1 closed-corpus benchmark (default file: {DEFAULT_SQUAD})",
    )
    parser.add_argument(
        "--sample",
        type=_int_at_least(1),
        metavar="N",
        help="a seeded sample of N SQuAD questions (default: all 10,570)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument(
        "--cache",
        metavar="DIR",
        default=str(DEFAULT_CACHE),
        help="where the SQuAD corpus and index are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--report", metavar="PATH", default=str(DEFAULT_REPORT), help="JSON report (default: %(default)s)"
    )
    parser.add_argument("--no-baselines", action="store_true", help="skip the BM25-alone and dense-alone baselines")
    parser.add_argument(
        "--readers",
        type=_readers,
        default=["trained", "picker"],
        metavar="NAMES",
        help="readers scored side by side on SQuAD, comma-separated, the first is 'ours' (default: trained,picker)",
    )
    parser.add_argument(
        "--calibrate",
        type=_int_at_least(2),
        metavar="N",
        help="refused: the confidence model is fitted on held-out SQuAD train articles "
        "(python -m qa calibrate-reader --reader picker), never on the benchmark",
    )


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else ("—" if x is None else str(x))


def format_squad_table(m: dict[str, Any]) -> str:
    readers = m.get("readers") or {"ours": {**m["ours"], "latency_ms": m["latency_ms"]}}
    cols = [("BM25", m.get("bm25", {})), ("dense", m.get("dense", {})), *readers.items()]
    names = ["R@1", "R@5", "answer_accuracy", "EM", "F1", "answered_rate", "abstention_out_of_corpus"]
    lines = [f"{'metric':<26}" + "".join(f"{c:>9}" for c, _ in cols)]
    for n in names:
        lines.append(f"{n:<26}" + "".join(f"{_fmt(v.get(n)):>9}" for _, v in cols))
    for name, v in readers.items():
        lat = v["latency_ms"]
        lines.append(
            f"latency p50 / p95 ({name}): {lat['p50']:.1f} ms / {lat['p95']:.1f} ms (mean {lat['mean']:.1f} ms)"
        )
    b = m.get("build", {})
    if b:
        lines.append(
            f"index: {b['documents']} articles, {b['chunks']} chunks; "
            + (
                f"built in {b['seconds']:.1f} s"
                if b["built"]
                else f"reused (last build {_fmt(b.get('last_build_seconds'))} s)"
            )
        )
    lines.append(f"questions: {m['in_corpus']} in corpus, {m['out_of_corpus']} out of corpus")
    return "\n".join(lines)


def main(args: argparse.Namespace, engine) -> int:
    """``python -m qa eval``: dev set (unless --no-dev), SQuAD when asked; a table and a JSON report."""
    from .errors import InputError

    if args.calibrate:
        raise InputError(
            "--calibrate would fit the confidence model on the benchmark's own questions; fit it on held-out "
            "SQuAD train articles instead: python -m qa calibrate-reader --reader picker"
        )
    report: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": _settings_dict(engine.settings),
    }
    status = 0
    if not args.no_dev:
        dev = Path(args.dev)
        if not dev.exists():
            print(f"dev set: {dev} not found, skipped")
        else:
            engine.warm_up()
            rows = read_dev(dev)
            results = run_dev(engine, rows, engine.settings.corpus_dir)
            passed = sum(r["passed"] for r in results)
            lat = [
                t["latency_ms"]
                for _ in range(args.dev_repeat - 1)
                for r in run_dev(engine, rows, engine.settings.corpus_dir)
                for t in r["turns"]
            ]
            lat += [t["latency_ms"] for r in results for t in r["turns"]]
            print(
                f"dev set ({dev.name}): {passed}/{len(results)} passed; warm latency p50 {percentile(lat, 50):.1f} ms, p95 {percentile(lat, 95):.1f} ms over {len(lat)} answers"
            )
            for r in results:
                if not r["passed"]:
                    for t in r["turns"]:
                        print(
                            f"  FAIL {r['id']}: {t['question']} — {'; '.join(t['problems']) or 'ok'} — {t['text'][:120]!r}"
                        )
            report["dev"] = {"path": str(dev), "passed": passed, "total": len(results), "results": results}
            status = 0 if passed == len(results) else 1
    if args.squad:
        squad = Path(args.squad)
        if not squad.exists():
            print(f"SQuAD: {squad} not found, skipped")
        else:
            sq_engine, questions, build = squad_engine(squad, Path(args.cache), engine)
            sample = sample_questions(questions, args.sample, args.seed)
            m = run_squad(sq_engine, sample, baselines=not args.no_baselines, readers=args.readers)
            m["build"] = build
            m["sample"] = args.sample
            m["seed"] = args.seed
            print(format_squad_table(m))
            report["squad"] = m
    out = Path(args.report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"report: {out}")
    return status


def squad_engine(squad: Path, cache: Path, engine) -> tuple[Any, list[SquadQuestion], dict[str, Any]]:
    """An engine over the protocol's SQuAD corpus (written under ``cache``, index reused when
    up to date), its questions, and what the build did (seconds of the last real build kept)."""
    from .engine import Engine

    work = squad_workdir(squad, cache, engine.settings)
    data = json.loads(squad.read_text(encoding="utf-8"))
    questions = write_squad_corpus(data, work / "corpus")
    sq_engine = Engine(
        engine.settings.replace(corpus_dir=str(work / "corpus"), index_dir=str(work / "index")),
        embedder=engine.embedder,
    )
    t0 = time.perf_counter()
    br = sq_engine.build_index()
    seconds = time.perf_counter() - t0
    built = br.embedded_chunks > 0 or bool(br.rebuilt) or bool(br.added)
    build_file = work / "build-seconds.json"
    if built:
        build_file.write_text(json.dumps({"seconds": seconds, "chunks": br.chunks}))
    last = json.loads(build_file.read_text())["seconds"] if build_file.exists() else None
    build = {
        "built": built,
        "seconds": seconds,
        "last_build_seconds": last,
        "documents": br.documents,
        "chunks": br.chunks,
    }
    return sq_engine, questions, build


def _settings_dict(settings) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
