"""``python -m qa train-cross-rerank``: train the cross-encoder rerank (``rerankers/cross.py``) on
SQuAD *train* articles, never on the benchmark or the dev set.

Articles: SQuAD train's less the trained reader's 40 held-out ones and ``fit-rerank``'s 96,
shuffled (seed 7) into closed corpora of 48 by the benchmark's protocol (the corpora of the
query-adapter probe, ``docs/probes/query_adapter.py``, whose indexes they share). Corpora 0-2
train the network, corpus 3 chooses how its score mixes with the rerank's (``cross_rerank_weight``,
``cross_rerank_from``, ``cross_rerank_to``: the best R@5, then R@1, on a fixed grid), and the
reader's held-out articles (one closed corpus) are measured once, for the report.

Each in-corpus question is searched as ``answer`` searches (with the cross-encoder off) and its
top ``DEPTH`` results kept: rerank score, title, best sentence with the one before, and whether
it holds a gold answer (cached under ``--cache``/cross-rerank). The network starts from the
shipped reader's embeddings and first ``--layers`` layers, with a fresh linear head on [CLS],
and is trained with a softmax over each question's group (one gold result, ``GROUP`` - 1
non-gold ones of its top ``DEPTH``), AdamW, the learning rate warming up for 50 steps and
decaying linearly with the time spent. Written: the int8 ONNX graph and ``cross.json`` (sha256,
command, seed, data, the chosen mix and R@k) into ``--out``; a person copies them into
``qa/rerankers/weights`` and the mix into ``qa/settings.py``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import random
import sys
import time
from pathlib import Path

import numpy as np

from .cross import CARD_FILE, MAX_TOKENS, pair_text, snippet

DEPTH = 12  # results kept per question (ranks the mix may reorder)
GROUP = 6  # results per question in a training step: one gold, the rest not
CORPUS_ARTICLES, CORPORA_SEED = 48, 7
TRAIN_CORPORA, CHOOSE_CORPUS = (0, 1, 2), 3
# The mixes tried: at most MAX_PAIRS results read per question (about 3 ms each on one core), the
# first two or three ranks kept (from rank 0, R@1 rose but R@5 fell on corpus 3).
GRID_FROM, GRID_TO, MAX_PAIRS = (2, 3), (6, 7, 8), 5
GRID_WEIGHT = (0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)
ONNX_FILE = "cross.int8.onnx"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..evaluation import DEFAULT_CACHE
    from ..reading.train import DEFAULT_DATA

    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding train-v1.1.json.gz")
    p.add_argument("--minutes", type=float, default=40.0, help="training time budget (default 40)")
    p.add_argument("--layers", type=int, default=3, help="reader layers the network keeps (default 3)")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate of the layers (the head: 20x)")
    p.add_argument("--questions-per-step", type=int, default=8, help="questions per step (default 8)")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch threads while training (default 2)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="corpus, index and search cache folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the graph and its card")
    p.add_argument("--limit", type=int, default=0, help="only the first N questions of each corpus (a quick check)")
    p.add_argument(
        "--network",
        type=Path,
        help="a trained network (cross.pt of an earlier run): no training, only export and measure",
    )


def corpora(data_folder: Path, held_titles: set[str], fit_titles: set[str]) -> list[dict]:
    """Every corpus of ``CORPUS_ARTICLES`` articles, none held out or fit-rerank's."""
    with gzip.open(data_folder / "train-v1.1.json.gz", "rt", encoding="utf-8") as f:
        every = json.load(f)["data"]
    pool = [a for a in every if a["title"] not in held_titles and a["title"] not in fit_titles]
    random.Random(CORPORA_SEED).shuffle(pool)
    n = len(pool) // CORPUS_ARTICLES
    return [
        {"version": f"query-adapter-{i}", "data": pool[i * CORPUS_ARTICLES : (i + 1) * CORPUS_ARTICLES]}
        for i in range(n)
    ]


def corpus_rows(sq, questions) -> list[dict]:
    """Each in-corpus question's top ``DEPTH`` results as ``answer`` searches them."""
    from ..evaluation import covers
    from ..retrieval import search

    s = sq.settings.replace(cross_rerank_weight=0.0)
    rs = s.replace(w_type=s.w_rerank_type)
    out = []
    for q in questions:
        if not q.in_corpus:
            continue
        hits = search(sq.index, sq.embedder, s, q.question, DEPTH)
        cands = [
            {
                "score": p.score,
                "title": p.title,
                "text": snippet(hits.sentence_features.get(p.chunk_id, []), rs),
                "gold": covers(p.start, p.end, p.source, q.source, q.offsets),
            }
            for p in hits.passages
        ]
        out.append({"question": q.question, "cands": cands})
    return out


def searched(args: argparse.Namespace, engine) -> dict[str, list[dict]]:
    """name -> rows, for the training corpora, the choosing corpus and the held-out articles."""
    from tqdm.auto import tqdm

    from ..evaluation import squad_engine
    from ..reading import model as rm
    from ..reading.calibrate import held_out_squad
    from ..reading.train import FIT_ARTICLES, FIT_CORPORA, FIT_SEED, load_squad_train, split_articles, training_corpora

    card = rm.read_card(rm.WEIGHTS_DIR)
    _, held = split_articles(load_squad_train(args.data), int(card["held_out"]["articles"]), int(card["seed"]))
    fit = {
        a["title"] for c in training_corpora(args.data, held, FIT_CORPORA, FIT_ARTICLES, FIT_SEED) for a in c["data"]
    }
    pool = corpora(args.data, held, fit)
    work = args.cache / "query-adapter"
    rows_dir = args.cache / "cross-rerank"
    work.mkdir(parents=True, exist_ok=True)
    rows_dir.mkdir(parents=True, exist_ok=True)
    held_path = args.cache / "reader-calibration" / f"heldout-seed{card.get('seed')}.json"
    held_path.parent.mkdir(parents=True, exist_ok=True)
    held_path.write_text(json.dumps(held_out_squad(args.data, card)), encoding="utf-8")
    wanted = {str(i): pool[i] for i in (*TRAIN_CORPORA, CHOOSE_CORPUS)}
    out = {}
    for name in (*wanted, "heldout"):
        cached = rows_dir / f"rows-{name}.pkl.gz"
        if cached.exists():
            with gzip.open(cached, "rb") as f:
                out[name] = pickle.load(f)
            continue
        if name == "heldout":
            path, where = held_path, held_path.parent
        else:
            path, where = work / f"{wanted[name]['version']}.json", work
            path.write_text(json.dumps(wanted[name]), encoding="utf-8")
        sq, questions = squad_engine(path, where, engine)[:2]
        rows = corpus_rows(sq, tqdm(questions, desc=f"search {name}", unit="q", mininterval=2))
        with gzip.open(cached, "wb") as f:
            pickle.dump(rows, f)
        out[name] = rows
    return out


def network(layers: int):
    """The reader's embeddings and first ``layers`` layers, with a fresh linear head on [CLS]."""
    import torch

    from ..reading import model as rm

    reader, _ = rm.load_network(rm.WEIGHTS_DIR)
    encoder = reader.encoder
    encoder.encoder.layer = encoder.encoder.layer[:layers]
    encoder.config.num_hidden_layers = layers

    class Cross(torch.nn.Module):
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, 1)

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None):
            h = self.encoder(
                input_ids=input_ids,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            ).last_hidden_state
            return self.head(h[:, 0]).squeeze(-1)

    net = Cross(encoder)
    for p in net.parameters():
        p.requires_grad_(True)
    encoder.embeddings.word_embeddings.weight.requires_grad_(False)  # never shipped: the packaged model's
    return net


def _encode(tok, questions: list[str], texts: list[str]):
    import torch

    from ..reading.model import plain_typography

    questions, texts = [plain_typography(q) for q in questions], [plain_typography(t) for t in texts]
    enc = tok(questions, texts, truncation="only_second", max_length=MAX_TOKENS, padding=True, return_tensors="pt")
    if "token_type_ids" not in enc:
        enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
    return enc


def train(net, rows: list[dict], args: argparse.Namespace, tok) -> dict:
    """Train in place within ``args.minutes``; what was done."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    groups = []
    for r in rows:
        gold = [c for c in r["cands"] if c["gold"]]
        other = [c for c in r["cands"] if not c["gold"]]
        if gold and other:
            groups.append((r["question"], gold, other))
    rng.shuffle(groups)
    net.train()
    head = list(net.head.parameters())
    body = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("head.")]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": head, "lr": args.lr * 20}], weight_decay=0.01)
    base = [g["lr"] for g in opt.param_groups]
    budget, t0, step, seen, curve, total = args.minutes * 60, time.perf_counter(), 0, 0, [], 0.0
    bar = tqdm(total=len(groups), desc="train", unit="q", mininterval=2)
    while time.perf_counter() - t0 < budget and seen < len(groups):
        batch = groups[seen : seen + args.questions_per_step]
        seen += len(batch)
        qs, texts, sizes = [], [], []
        for q, gold, other in batch:
            cands = [rng.choice(gold), *rng.sample(other, min(GROUP - 1, len(other)))]
            qs += [q] * len(cands)
            texts += [pair_text(c["title"], c["text"]) for c in cands]
            sizes.append(len(cands))
        enc = _encode(tok, qs, texts)
        logits = net(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        loss, i = 0.0, 0
        for n in sizes:  # the gold result is first in its group
            loss = loss + torch.logsumexp(logits[i : i + n], 0) - logits[i]
            i += n
        loss = loss / len(sizes)
        f = min(1.0, (step + 1) / 50) * max(0.0, 1.0 - (time.perf_counter() - t0) / budget)
        for g, b in zip(opt.param_groups, base, strict=True):
            g["lr"] = b * f
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        total += float(loss.detach())
        step += 1
        bar.update(len(batch))
        if step % 100 == 0:
            curve.append({"step": step, "questions": seen, "minutes": round((time.perf_counter() - t0) / 60, 1),
                          "loss": round(total / 100, 4)})  # fmt: skip
            bar.set_postfix(loss=f"{total / 100:.3f}")
            total = 0.0
    bar.close()
    net.eval()
    return {"groups": len(groups), "questions": seen, "steps": step,
            "minutes": round((time.perf_counter() - t0) / 60, 1), "curve": curve}  # fmt: skip


def score_rows(folder: Path, rows: list[dict], first: int, last: int, threads: int) -> list[np.ndarray]:
    """The int8 graph's score (as answering runs it) of each question's results at ranks ``first``
    to ``last`` - 1, per question (0 for the others)."""
    from tqdm.auto import tqdm

    from .cross import CrossScorer

    scorer = CrossScorer(folder, threads=threads)
    out = []
    for r in tqdm(rows, desc="score", unit="q", mininterval=2):
        s = np.zeros(len(r["cands"]), dtype=np.float32)
        texts = [pair_text(c["title"], c["text"]) for c in r["cands"][first:last]]
        s[first : first + len(texts)] = scorer.score(r["question"], texts)
        out.append(s)
    return out


def recall(rows: list[dict], orders: list[list[int]], ks=(1, 3, 5, 10)) -> dict[str, float]:
    """R@k of each question's results taken in ``orders`` (indexes into its results)."""
    hits = dict.fromkeys(ks, 0)
    for r, order in zip(rows, orders, strict=True):
        gold = [r["cands"][i]["gold"] for i in order]
        for k in ks:
            hits[k] += any(gold[:k])
    return {f"R@{k}": round(hits[k] / max(1, len(rows)), 4) for k in ks}


def mixed_orders(rows: list[dict], scores: list[np.ndarray], weight: float, first: int, last: int) -> list[list[int]]:
    """Each question's results reordered as ``cross.reorder`` reorders passages."""
    from types import SimpleNamespace

    from .cross import reorder

    out = []
    for r, s in zip(rows, scores, strict=True):
        items = [SimpleNamespace(score=c["score"], i=i) for i, c in enumerate(r["cands"])]
        lo, hi = min(first, len(items)), min(last, len(items))
        out.append([p.i for p in reorder(items, s[lo:hi], weight, first, last)])
    return out


def choose(rows: list[dict], scores: list[np.ndarray]) -> tuple[dict, list[dict]]:
    """The grid's best mix on ``rows`` (R@5, then R@1), and every point's figures."""
    points = []
    for first in GRID_FROM:
        for last in GRID_TO:
            if last - first > MAX_PAIRS:
                continue
            for w in GRID_WEIGHT:
                r = recall(rows, mixed_orders(rows, scores, w, first, last))
                points.append({"weight": w, "from": first, "to": last, **r})
    best = max(points, key=lambda p: (p["R@5"], p["R@1"]))
    return best, points


def export(net, path: Path) -> Path:
    """The network as an int8 ONNX graph (per-channel dynamic quantization) taking ``inputs_embeds``."""
    import torch

    from ..reading.model import export_int8

    class Graph(torch.nn.Module):
        def __init__(self, net) -> None:
            super().__init__()
            self.net = net

        def forward(self, inputs_embeds, attention_mask, token_type_ids):
            return self.net(inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids)

    net = net.to("cpu").float().eval()
    return export_int8(Graph(net).eval(), net, path, {"score": {0: "batch"}})


def model_card_markdown(card: dict) -> str:
    """A short human-readable model card from the JSON one."""
    t, mix, held = card.get("training", {}), card.get("mix", {}), card.get("held_out", {})
    plain, mixed = held.get("rerank alone", {}), held.get("with the cross-encoder", {})
    return "\n".join(
        [
            "# Cross-encoder rerank (qa-news)",
            "",
            "Reads a question with a retrieved result's title, best sentence and the sentence before it, and",
            "scores how likely the result holds the answer; answering reorders ranks "
            f"{mix.get('from')} to {mix.get('to', 1) - 1} by the rerank score + {mix.get('weight')} x this score.",
            "Written by `python -m qa train-cross-rerank`; `cross.json` holds the same facts and the graph's sha256.",
            "",
            f"- **Network**: {card.get('base_model', '')}; int8 ONNX ({card.get('onnx_bytes', 0) / 1e6:.1f} MB), "
            f"at most {card.get('max_tokens')} tokens",
            f"- **Data**: {card.get('data', '')}",
            f"- **License**: {card.get('license', '')}",
            f"- **Command**: `{t.get('command') or card.get('command', '')}`, seed {card.get('seed')}",
            f"- **Training**: {t.get('questions', '?')} questions of SQuAD train corpora {t.get('corpora')}, "
            f"{t.get('steps', '?')} steps, {t.get('minutes', '?')} min, lr {t.get('lr', '?')}, "
            f"groups of {t.get('group', '?')} of each question's top {t.get('depth', '?')} results",
            f"- **Mix chosen on** corpus {card.get('chosen_on', {}).get('corpus')}: {mix}",
            f"- **Held-out articles** ({held.get('questions', '?')} questions, never trained or chosen on): "
            f"R@5 {plain.get('R@5')} -> {mixed.get('R@5')}, R@1 {plain.get('R@1')} -> {mixed.get('R@1')}",
            "",
        ]
    )


def main(args: argparse.Namespace, engine) -> int:
    from ..files import sha256_file
    from ..reading import model as rm

    t0 = time.perf_counter()
    rows = searched(args, engine)
    if args.limit:
        rows = {name: r[: args.limit] for name, r in rows.items()}
    import torch

    tok = rm.load_tokenizer()
    net = network(args.layers)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.network:
        net.load_state_dict(torch.load(args.network))
        net.eval()
        earlier = args.network.parent / CARD_FILE
        training = json.loads(earlier.read_text(encoding="utf-8")).get("training", {}) if earlier.exists() else {}
        training["network"] = str(args.network)
        training.setdefault(
            "command", json.loads(earlier.read_text(encoding="utf-8")).get("command") if earlier.exists() else None
        )
    else:
        training = train(net, [r for n in TRAIN_CORPORA for r in rows[str(n)]], args, tok)
        torch.save(net.state_dict(), args.out / "cross.pt")  # the float network (not shipped), before scoring
    path = export(net, args.out / ONNX_FILE)
    first = {"onnx_file": ONNX_FILE, "onnx_sha256": sha256_file(path), "max_tokens": MAX_TOKENS, "training": training}
    (args.out / CARD_FILE).write_text(json.dumps(first), encoding="utf-8")  # what the scorer needs; all of it below
    choose_rows, held_rows = rows[str(CHOOSE_CORPUS)], rows["heldout"]
    lo, hi = min(GRID_FROM), max(GRID_TO)
    best, points = choose(choose_rows, score_rows(args.out, choose_rows, lo, hi, args.threads))
    held_scores = score_rows(args.out, held_rows, lo, hi, args.threads)
    shipped = [list(range(len(r["cands"]))) for r in held_rows]
    held = {
        "questions": len(held_rows),
        "rerank alone": recall(held_rows, shipped),
        "with the cross-encoder": recall(held_rows, mixed_orders(held_rows, held_scores, best["weight"], best["from"], best["to"])),
    }  # fmt: skip
    card = {
        "name": "qa-news cross-encoder rerank",
        "base_model": f"the trained reader's embeddings and first {args.layers} of its layers (qa/reading/weights), "
        "a fresh linear head on [CLS]",
        "data": "SQuAD v1.1 train, CC BY-SA 4.0 (Rajpurkar et al., EMNLP 2016); passages are Wikipedia text",
        "license": "CC BY-SA 4.0 (training data)",
        "command": "python -m qa train-cross-rerank " + " ".join(sys.argv[2:]),
        "seed": args.seed,
        "layers": args.layers,
        "max_tokens": MAX_TOKENS,
        "training": {
            **training,
            "lr": args.lr,
            "questions_per_step": args.questions_per_step,
            "group": GROUP,
            "depth": DEPTH,
            "corpora": list(TRAIN_CORPORA),
            "threads": args.threads,
        },  # fmt: skip
        "mix": {k: best[k] for k in ("weight", "from", "to")},
        "chosen_on": {
            "corpus": CHOOSE_CORPUS,
            "questions": len(choose_rows),
            **{k: best[k] for k in best if k.startswith("R@")},
            "rerank alone": recall(choose_rows, [list(range(len(r["cands"]))) for r in choose_rows]),
        },  # fmt: skip
        "held_out": held,
        "onnx_file": ONNX_FILE,
        "onnx_sha256": sha256_file(path),
        "onnx_bytes": path.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (args.out / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.out / "MODEL_CARD.md").write_text(model_card_markdown(card), encoding="utf-8")
    (args.out / "grid.json").write_text(json.dumps(points, indent=1), encoding="utf-8")
    print(json.dumps({k: card[k] for k in ("mix", "chosen_on", "held_out", "onnx_bytes")}, indent=2))
    print(f"cross_rerank_weight={best['weight']} cross_rerank_from={best['from']} cross_rerank_to={best['to']}")
    return 0
