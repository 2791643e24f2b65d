"""``python -m qa calibrate-reader [--reader trained|picker]``: fit a reader's confidence model on
held-out SQuAD *train* articles, never on the benchmark.

The articles the reader never trained on (the seeded split recorded in its model card) become a
closed corpus by the benchmark's own protocol (article ``i`` left out when ``i % 6 == 0``), so
their questions are in-corpus or out-of-corpus exactly as the benchmark's are. Each sampled
question is retrieved with ``answer(question, k=5)``'s retrieval and read once by the trained
reader. First the rank model (``reader_rank_model``) that chooses among the reader's span guesses
is fitted on the in-corpus questions (``fit_rank_model``, with its 5-fold-by-article score against
the old order); then, on the answers it chooses, the reader's signals and the retrieval signals
(``trained.abstain_features``) are fitted by logistic regression to "the question is in the
corpus". With ``--small-corpora N`` (default 3) half the
questions come instead from corpora of N held-out articles each, as a folder of a few news
articles is: signals such as the share of question words the corpus knows, or BM25's scale, are
not the same in a corpus of 3 articles as in one of 33, and a model fitted on the big one alone
refuses too much in a small one. Printed: the ``reader_rank_model`` and ``reader_abstain_model`` strings and,
per threshold, answered (in corpus), refused (out of corpus) and answer accuracy (in corpus), in-sample
and out of fold (each article's questions judged by a confidence model fitted without them, 5 folds
by title: what a corpus the model never saw gets), and the suggested threshold: the lowest that
refuses at least 92 % out of fold in every kind of corpus (in-sample figures flatter: at one
threshold, 0.941 refused in-sample against 0.904 out of fold).
With ``--on-topic N`` (default 1000) N more questions come from on-topic corpora
(``on_topic_corpora``: three held-out articles, half of the first one's paragraphs held back), whose
out-of-corpus questions are about an article the corpus holds, as "Who plays Helly?" is for
articles about the show: the small corpora's come from an unrelated article and are far easier
to refuse. They are fitted on like the rest; the threshold rule leaves them out (no threshold
refuses 92 % of them) and their figures are printed.
A person puts the chosen numbers in ``qa/settings.py``. With ``--reader picker`` the sentence
picker's nine signals (``answering.abstain_features``) are fitted the same way, for
``abstain_model``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from . import model as rm
from .train import DEFAULT_DATA, load_squad_train, split_articles

if TYPE_CHECKING:
    import numpy as np

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
REFUSE_AT_LEAST = 0.92  # the rule: the lowest threshold refusing this share out of fold in every kind of corpus
FOLDS = 5
BENCH_FOLD = 0  # articles (by _fold) whose follow-ups calibration never asks: tests/followupbench.py's
FOLLOW_UPS = ", follow-ups"  # suffix of the parts holding follow-ups (left out of the threshold rule)
ON_TOPIC = "on topic"  # prefix of the on-topic parts (``on_topic_corpora``): fitted, but not in the threshold rule


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding train-v1.1.json.gz")
    p.add_argument("--questions", type=int, default=2000, help="held-out questions sampled (default 2000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the question sample")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qa-eval", help="corpus and index folder")
    p.add_argument("--out", type=Path, default=None, help="JSON report (default artifacts/<reader>-calibration.json)")
    p.add_argument(
        "--ablate",
        action="store_true",
        help="also score (out of fold) rank models fitted with each of their features left out, in turn",
    )
    p.add_argument(
        "--reader", choices=("trained", "picker"), default="trained", help="whose confidence model (default trained)"
    )
    p.add_argument(
        "--small-corpora",
        type=int,
        default=3,
        metavar="N",
        help="draw half the questions from small corpora of N held-out articles each "
        "(a folder of a few articles, as the product is used), 1 to 5; 0: only the one corpus of all of them",
    )
    p.add_argument(
        "--follow-ups",
        type=int,
        default=0,
        metavar="N",
        help="also ask N questions as follow-ups, in and out of corpus: the article's title turned into "
        "it/its, after a first turn on the same article, as a chat asks them (half in the small corpora); "
        f"never of the articles of fold {BENCH_FOLD}, which tests/followupbench.py measures on (default 0: none; "
        "800 measured: in-full refusal out of fold fell, see docs/reader.md)",
    )
    p.add_argument(
        "--on-topic",
        type=int,
        default=1000,
        metavar="N",
        help="also ask N questions of on-topic corpora: held-out articles in threes with half the first one's "
        "paragraphs held back, whose questions are out of corpus but on its topic; fitted on like the others, "
        "not weighed by the threshold rule, which no threshold meets there (default 1000; 0: none)",
    )


def held_out_squad(data_folder: Path, card: dict) -> dict:
    """The held-out articles of the reader's training split, in SQuAD's JSON shape."""
    import gzip

    seed = int(card.get("seed", 13))
    held = int(card.get("held_out", {}).get("articles", 40))
    questions = load_squad_train(data_folder)
    _, held_titles = split_articles(questions, held, seed)
    with gzip.open(data_folder / "train-v1.1.json.gz", "rt", encoding="utf-8") as f:
        data = json.load(f)
    return {"version": "heldout-train", "data": [a for a in data["data"] if a["title"] in held_titles]}


def small_corpora(held: dict, size: int) -> list[dict]:
    """The held-out articles the protocol keeps in the corpus, cut into corpora of ``size``
    articles; each is put after one of the articles the protocol leaves out, which stays out (index
    0 of its list), so its questions are the small corpus's out-of-corpus ones."""
    from ..evaluation import in_corpus

    if not 1 <= size < 6:
        raise InputError(f"--small-corpora must be from 0 to 5. Currently, it is {size}.")
    left = [a for i, a in enumerate(held["data"]) if not in_corpus(i)]
    return [
        {"version": f"heldout-small-{g}", "data": [left[g % len(left)], *grp]}
        for g, grp in enumerate(_kept_groups(held, size))
    ]


def _kept_groups(held: dict, size: int) -> list[list[dict]]:
    """The held-out articles the protocol keeps in the corpus, in order, in groups of ``size``."""
    from ..evaluation import in_corpus

    kept = [a for i, a in enumerate(held["data"]) if in_corpus(i)]
    return [kept[k : k + size] for k in range(0, len(kept), size)]


def on_topic_corpora(held: dict, size: int = 3) -> list[dict]:
    """The held-out articles the protocol keeps in the corpus, in corpora of ``size``, the first of
    each cut in two: its odd paragraphs (index 0 of the list, which the protocol leaves out) and
    its even ones (kept). Questions on the odd paragraphs are out of corpus but on a topic the
    corpus holds, as "Who plays Helly?" is for articles about the show: the small corpora's
    out-of-corpus questions come from an unrelated article, which is far easier to refuse. Both
    halves keep the article's title, so they share its fold (``_fold``)."""
    if not 1 <= size < 6:
        raise InputError(f"the on-topic corpora's size must be from 1 to 5. Currently, it is {size}.")
    out = []
    for g, (first, *rest) in enumerate(_kept_groups(held, size)):
        held_back = {"title": first["title"], "paragraphs": first["paragraphs"][1::2]}
        shown = {"title": first["title"], "paragraphs": first["paragraphs"][0::2]}
        out.append({"version": f"heldout-topic-{g}", "data": [held_back, shown, *rest]})
    return out


def _on_topic_parts(args: argparse.Namespace, engine, work: Path, held: dict, card: dict) -> list[tuple]:
    """[(ON_TOPIC + size, engine, sampled questions)], one part per on-topic corpus drawn from."""
    from ..evaluation import sample_questions, squad_engine

    if args.on_topic <= 0:
        return []
    size = args.small_corpora or 3
    pool = []
    for g, data in enumerate(on_topic_corpora(held, size)):
        path = work / f"heldout-seed{card.get('seed')}-topic{size}-{g}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        e, qs, _ = squad_engine(path, work / f"topic{size}", engine)
        pool += [(e, q) for q in qs]
    picked = sample_questions(list(range(len(pool))), args.on_topic, args.seed)
    return _by_engine(f"{ON_TOPIC} {size}", [pool[i] for i in picked])


def _engines(args: argparse.Namespace, engine, work: Path, held: dict, card: dict):
    """[(name, engine, sampled questions)]: the one corpus of all held-out articles, and (with
    ``--small-corpora``) the small corpora, which share half of the sample; with ``--follow-ups``,
    parts named ``<corpus>, follow-ups`` holding ``FollowUp``s instead of questions."""
    from ..evaluation import sample_questions, squad_engine

    squad_path = work / f"heldout-seed{card.get('seed')}.json"
    squad_path.write_text(json.dumps(held), encoding="utf-8")
    big, questions, _ = squad_engine(squad_path, work, engine)
    n_follow = args.follow_ups
    if not args.small_corpora:
        out = [("all", big, sample_questions(questions, args.questions, args.seed))]
        return out + _follow_up_parts("all", [(big, questions)], n_follow, args.seed)
    out = [("all", big, sample_questions(questions, args.questions - args.questions // 2, args.seed))]
    pool, corpora = [], []
    for g, data in enumerate(small_corpora(held, args.small_corpora)):
        path = work / f"heldout-seed{card.get('seed')}-small{args.small_corpora}-{g}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        small, qs, _ = squad_engine(path, work / f"small{args.small_corpora}", engine)
        pool += [(small, q) for q in qs]
        corpora.append((small, qs))
    picked = sample_questions(list(range(len(pool))), args.questions // 2, args.seed)
    out += _by_engine(f"small{args.small_corpora}", [pool[i] for i in picked])
    out += _follow_up_parts("all", [(big, questions)], n_follow - n_follow // 2, args.seed)
    out += _follow_up_parts(f"small{args.small_corpora}", corpora, n_follow // 2, args.seed)
    return out


def _follow_up_parts(name: str, corpora: list[tuple], n: int, seed: int) -> list[tuple]:
    """Up to ``n`` follow-ups (``pronoun_follow_ups``, in and out of corpus) drawn from these
    corpora's questions, none of an article of ``BENCH_FOLD``: [(name + FOLLOW_UPS, engine,
    follow-ups)], one part per corpus that got any."""
    import random

    from ..evaluation import pronoun_follow_ups

    if n <= 0:
        return []
    pool = [
        (e, f)
        for e, qs in corpora
        for f in pronoun_follow_ups(qs, seed, in_corpus_only=False)
        if _fold(f.question) != BENCH_FOLD
    ]
    picked = sorted(random.Random(seed).sample(range(len(pool)), min(n, len(pool))))
    return _by_engine(name + FOLLOW_UPS, [pool[i] for i in picked])


def _by_engine(name: str, drawn: list[tuple]) -> list[tuple]:
    """[(name, engine, its items)] from (engine, item) pairs, one part per engine, in order."""
    by_engine: dict[int, tuple] = {}
    for e, item in drawn:
        by_engine.setdefault(id(e), (e, []))[1].append(item)
    return [(name, e, items) for e, items in by_engine.values()]


def main(args: argparse.Namespace, engine) -> int:
    if args.questions < 10:
        raise InputError(f"--questions must be at least 10. Currently, it is {args.questions}.")
    card = rm.read_card(Path(engine.settings.reader_weights) if engine.settings.reader_weights else rm.WEIGHTS_DIR)
    work = args.cache / "reader-calibration"
    work.mkdir(parents=True, exist_ok=True)
    held = held_out_squad(args.data, card)
    out = args.out or Path("artifacts") / f"{args.reader}-calibration.json"
    parts = _engines(args, engine, work, held, card) + _on_topic_parts(args, engine, work, held, card)
    if args.reader == "picker":
        return _picker(parts, out)
    t0 = time.perf_counter()
    items, latencies = _read_all(parts)
    return fit_and_report(items, latencies, parts, engine, out, t0, args.ablate)


def fit_and_report(
    items: list[_Read], latencies: list[float], parts, engine, out: Path, t0: float, ablate: bool = False
) -> int:
    """The rank model, then the confidence model on the answers it chooses, fitted on questions
    already read (``_read_all``): the report written to ``out`` and printed."""
    import numpy as np

    from ..calibration import fit_logistic
    from ..evaluation import percentile, squad_correct, squad_em_f1
    from .trained import TrainedReader

    rank_model, ranking = fit_rank_model(items, ablate=ablate)
    X, y, ok, part_of, fold_of = [], [], [], [], []
    ems, f1s = [], []
    readers: dict[int, TrainedReader] = {}
    for it in items:
        settings = it.engine.settings.replace(reader_abstain_threshold=-1.0, reader_rank_model=rank_model)
        reader = readers.setdefault(id(it.engine), TrainedReader(settings, it.spans))  # always answers
        q = it.question
        answer, feats = reader.answer_reading(it.asked, it.reading, it.hits, it.engine.index, it.query)
        if q.in_corpus:
            em, f1 = squad_em_f1(answer.span.text, q.answers) if answer.span else (0.0, 0.0)
            ems.append(em)
            f1s.append(f1)
        if not feats:
            continue
        X.append(feats)
        y.append(1.0 if q.in_corpus else 0.0)
        ok.append(bool(q.in_corpus and not answer.abstained and squad_correct(answer, q)))
        part_of.append(it.part)
        fold_of.append(_fold(q))
    X_, y_, ok_ = np.array(X, dtype=np.float64), np.array(y), np.array(ok)
    if len(set(y)) < 2:
        raise InputError("the sample holds only in-corpus or only out-of-corpus questions; raise --questions")
    theta = fit_logistic(X_, y_)
    prob = 1.0 / (1.0 + np.exp(-(X_ @ theta[1:] + theta[0])))
    model = ",".join(f"{v:.4g}" for v in theta)
    rows = _rows(prob, y_, ok_)
    parts_ = np.array(part_of)
    by_part = {
        name: _rows(prob[parts_ == name], y_[parts_ == name], ok_[parts_ == name]) for name in dict.fromkeys(part_of)
    }
    oof = _out_of_fold(X_, y_, np.array(fold_of))
    rows_oof = _rows(oof, y_, ok_)
    by_part_oof = {
        name: _rows(oof[parts_ == name], y_[parts_ == name], ok_[parts_ == name]) for name in dict.fromkeys(part_of)
    }
    suggested = suggest_threshold(_in_rule(by_part_oof))
    spans = items[0].spans if items else None
    report = {
        "reader_rank_model": rank_model,
        "ranking": ranking,
        "reader_abstain_model": model,
        "rows": rows,
        "rows_by_corpus": by_part,
        "rows_out_of_fold": rows_oof,
        "rows_by_corpus_out_of_fold": by_part_oof,
        "suggested_threshold": suggested,
        "corpora": {
            name: {
                "corpora": sum(1 for n, _, _ in parts if n == name),
                "questions": sum(len(qs) for n, _, qs in parts if n == name),
            }
            for name in dict.fromkeys(n for n, _, _ in parts)
        },
        "questions": len(X),
        "in_corpus": int(y_.sum()),
        "out_of_corpus": int(len(y_) - y_.sum()),
        "articles": sum(len(e.index.documents) for _, e, _ in parts),
        "seconds": round(time.perf_counter() - t0, 1),
        "always_answering": {
            "accuracy_in_corpus": round(float(ok_[y_ == 1].mean()), 4),
            "EM": round(sum(ems) / max(1, len(ems)), 4),
            "F1": round(sum(f1s) / max(1, len(f1s)), 4),
        },
        "latency_ms": {
            "p50": round(1000 * percentile(latencies, 50), 1),
            "p95": round(1000 * percentile(latencies, 95), 1),
        },
        "settings": {
            "reader_window_tokens": engine.settings.reader_window_tokens,
            "reader_backend": spans.loaded_backend if spans else "",
        },
        "note": "rows, rows_by_corpus: the confidence model fitted on these same questions (in-sample); "
        "*_out_of_fold: each question judged by a model fitted without its article (5 folds by article title); "
        f"suggested_threshold: the lowest refusing >= {REFUSE_AT_LEAST} out of fold in every kind of corpus; "
        f"the rule leaves out the follow-ups and the parts named '{ON_TOPIC} ...'; "
        "ranking: chosen guess, 5 folds by article",
    }
    print(f"reader_rank_model = {rank_model!r}")
    for name, r in ranking["folds_by_article"].items():
        print(f"choosing the guess by {name}: accuracy {r['accuracy']:.3f}, EM {r['EM']:.3f}, F1 {r['F1']:.3f}")
    _write_and_print(out, report, "reader_abstain_model", model, rows)
    _print_parts(by_part)
    print("out of fold (each article's questions judged by a model fitted without it):")
    _print_parts(by_part_oof if len(by_part_oof) > 1 else {"all": rows_oof})
    print(
        f"suggested reader_abstain_threshold: {suggested} (the lowest refusing >= {REFUSE_AT_LEAST} out of fold "
        "in every kind of corpus but the on-topic ones)"
    )
    aa = report["always_answering"]
    print(
        f"always answering: accuracy {aa['accuracy_in_corpus']:.3f}, EM {aa['EM']:.3f}, F1 {aa['F1']:.3f} (in corpus); "
        f"retrieval + reading p50 {report['latency_ms']['p50']} ms, p95 {report['latency_ms']['p95']} ms"
    )
    print(f"{len(X)} held-out training questions ({report['in_corpus']} in corpus); report {out}", file=sys.stderr)
    return 0


@dataclass(frozen=True)
class _Read:
    """One calibration question, retrieved and read once (the network's guesses in its own order)."""

    part: str
    engine: object
    question: object
    hits: object
    reading: object
    spans: object
    asked: str  # the question as asked (a follow-up: its pronoun form)
    query: str  # what retrieval and the network read: ``asked``, or a follow-up's rewrite with its history


def _read_all(parts) -> tuple[list[_Read], list[float]]:
    """Every sampled question of every corpus retrieved and read (one network for all), with the
    seconds each took."""
    from tqdm.auto import tqdm

    from ..answering import rewrite_query
    from ..evaluation import FollowUp
    from ..retrieval import search
    from .trained import GUESSES, SpanReader, TrainedReader

    items, latencies = [], []
    spans = None
    bar = tqdm(total=sum(len(qs) for _, _, qs in parts), desc="calibration questions", unit="q", mininterval=2)
    for name, sq_engine, sample in parts:
        s = sq_engine.settings
        spans = spans or SpanReader(
            s.reader_weights or None, s.model_path or None, s.reader_backend, s.reader_window_tokens, s.reader_threads
        )
        first_turns = TrainedReader(s, spans)
        for q in sample:
            bar.update(1)
            asked = query = q.question
            if isinstance(q, FollowUp):  # the first turn answered as the chat would, then the follow-up
                first = q.first.question
                hits = search(sq_engine.index, sq_engine.embedder, s, first, 5)
                said = first_turns.read(first, hits, sq_engine.index, first).text
                history = [{"role": "user", "content": first}, {"role": "assistant", "content": said}]
                asked, q = q.asked, q.question
                query = rewrite_query(asked, history, s.history_turns, s.max_question_chars)
            t = time.perf_counter()
            hits = search(sq_engine.index, sq_engine.embedder, s, asked, 5, also=(query,))
            reading = spans.read(query, list(hits.passages), top=GUESSES)
            latencies.append(time.perf_counter() - t)
            items.append(_Read(name, sq_engine, q, hits, reading, spans, asked, query))
    bar.close()
    return items, latencies


def _guess_rows(it: _Read) -> tuple[list[list[float]], list[dict]]:
    """The rank features of a question's quotable guesses, and per guess whether its quote holds a
    gold answer from the gold article (``accuracy``) and the span's EM and F1."""
    from ..evaluation import contains_answer, normalize_squad, squad_em_f1
    from .features import asks_who, quotable
    from .trained import _sentences, passage_sentence_features, quote_around, rank_features

    index, settings, q = it.engine.index, it.engine.settings, it.question
    who = asks_who(it.query)
    passages = list(it.hits.passages)
    features = passage_sentence_features(it.hits, index, it.query, settings)
    # every guess's features (the softmax share and best score are over all of them, as when
    # answering), then only the quotable ones, which an answer can be built on
    every = rank_features(it.reading, passages, features)
    rows, labels = [], []
    for g, row in zip(it.reading.spans, every, strict=True):
        p = passages[g.rank]
        quote = quote_around(p, _sentences(index, p), g, settings.answer_max_chars, who)
        text = p.text[quote.start - p.start : quote.end - p.start] if quote else ""
        if quote is None or not quotable(text, settings.min_answer_words):
            continue
        em, f1 = squad_em_f1(g.text, q.answers)
        right = p.source == q.source and contains_answer(text, q.answers, normalize_squad)
        rows.append(row)
        labels.append({"accuracy": float(right), "EM": em, "F1": f1})
    return rows, labels


def rank_label(lab: dict) -> float:
    """What the rank model is fitted to call right: the guess's quote holds a gold answer from the
    gold article and its span overlaps one by F1 > 0.5 (``_guess_rows``' labels)."""
    return 1.0 if lab["accuracy"] and lab["F1"] > 0.5 else 0.0


def fit_rank(lists: list[tuple]) -> np.ndarray:
    """Intercept and weights of the rank model (``lists``: per question, its guesses' rank features
    and ``rank_label``s). Its only use is to order one question's guesses, so the weights are
    fitted listwise (``calibration.fit_listwise``: the softmax over each question's guesses putting
    its mass on the right ones), then put on the scale of a logistic model of the same labels by
    least squares (``calibration.on_scale``), so that ``reader_second_margin`` stays in its log-odds.
    On 4,007 held-out questions, 5 folds by article, against the logistic model itself: the chosen
    guess's accuracy / EM / F1 0.8999 / 0.6169 / 0.7576 against 0.8949 / 0.6132 / 0.7530
    (``docs/probes/rank_targets.py``; docs/reader.md)."""
    import numpy as np

    from ..calibration import fit_listwise, fit_logistic, on_scale

    kept = [(X, y) for X, y in lists if len(X)]
    if len({v for _, y in kept for v in y.tolist()}) < 2:
        raise InputError("too few answerable questions to fit the reader's rank model; raise --questions")
    theta = fit_logistic(np.concatenate([X for X, _ in kept]), np.concatenate([y for _, y in kept]))
    w = fit_listwise([(X, y > 0.5) for X, y in kept])
    return on_scale(kept, w, lambda Z: theta[0] + Z @ theta[1:])


def fit_rank_model(items: list[_Read], folds: int = 5, ablate: bool = False) -> tuple[str, dict]:
    """``reader_rank_model``: a linear score putting first the guesses whose quote holds the answer
    and whose span overlaps it by F1 > 0.5 (``rank_label``, ``fit_rank``), fitted on the in-corpus
    questions' quotable guesses. Reported: the
    chosen guess's accuracy, EM and F1 with ``folds`` folds by article (fitted without the
    article's questions), against span score plus ``reader_w_passage``; with ``ablate``, also the
    same scores of models fitted with each feature left out (its column zeroed: weight 0)."""
    import zlib

    import numpy as np

    from .trained import RANK_FEATURES

    data = []
    for it in items:
        if it.question.in_corpus:
            rows, labels = _guess_rows(it)
            title = it.question.source.split("_", 1)[-1]
            data.append((zlib.crc32(title.encode()) % folds, rows, labels, it))

    def fit(subset, drop: int | None = None) -> np.ndarray:
        lists = []
        for _, rows, labels, _ in subset:
            X = np.array(rows, dtype=np.float64) if rows else np.zeros((0, RANK_FEATURES))
            if drop is not None and len(X):
                X[:, drop] = 0.0
            lists.append((X, np.array([rank_label(lab) for lab in labels], dtype=np.float64)))
        return fit_rank(lists)

    def chosen(theta: np.ndarray | None, it: _Read) -> dict:
        """The labels of the guess the answer would be built on (the first quotable one in order)."""
        from .trained import TrainedReader, rank_order

        if theta is None:  # span score + reader_w_passage, as without a rank model
            reader = TrainedReader(it.engine.settings.replace(reader_rank_model=""), it.spans)
            order = reader.order(it.reading, it.hits, it.engine.index, it.query)
        else:
            model = ",".join(repr(float(v)) for v in theta)
            order = rank_order(it.reading, list(it.hits.passages), _passage_features(it), model)
        ordered = dataclasses.replace(it, reading=order)
        _, labels = _guess_rows(ordered)
        return labels[0] if labels else {"accuracy": 0.0, "EM": 0.0, "F1": 0.0}

    # the model with every feature (None), then, with ``ablate``, one without each feature in turn
    variants = {"rank model": None} | (
        {f"rank model without feature {i + 1}": i for i in range(RANK_FEATURES)} if ablate else {}
    )
    scored: dict[str, list[dict]] = {"span score + reader_w_passage": [], **{name: [] for name in variants}}
    for k in range(folds):
        train = [d for d in data if d[0] != k]
        test = [d for d in data if d[0] == k]
        if not test:
            continue
        scored["span score + reader_w_passage"] += [chosen(None, it) for *_, it in test]
        for name, drop in variants.items():
            theta = fit(train, drop)
            scored[name] += [chosen(theta, it) for *_, it in test]
    theta = fit(data)
    summary = {
        name: {m: round(float(np.mean([r[m] for r in rs])), 4) if rs else 0.0 for m in ("accuracy", "EM", "F1")}
        for name, rs in scored.items()
    }
    return ",".join(f"{v:.4g}" for v in theta), {"questions": len(data), "folds_by_article": summary}


def _fold(q) -> int:
    """The question's fold: its article's title hashed (the same article, in the big corpus or in a
    small one, is always in the same fold)."""
    import zlib

    return zlib.crc32(q.source.split("_", 1)[-1].encode()) % FOLDS


def _in_rule(by_part: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The parts the threshold rule weighs: not the follow-ups, not the on-topic corpora (where no
    threshold refuses 92 %: their figures are reported, not required)."""
    return {k: v for k, v in by_part.items() if not k.endswith(FOLLOW_UPS) and not k.startswith(ON_TOPIC)}


def _out_of_fold(X, y, folds):
    """Each row's confidence from a model fitted on the other folds' rows (the in-sample one where
    a fold is all its rows, or the others hold only one kind)."""
    import numpy as np

    from ..calibration import fit_logistic

    theta = fit_logistic(X, y)
    prob = 1.0 / (1.0 + np.exp(-(X @ theta[1:] + theta[0])))
    for k in np.unique(folds):
        train = folds != k
        if train.any() and len(set(y[train].tolist())) == 2:
            t = fit_logistic(X[train], y[train])
            prob[~train] = 1.0 / (1.0 + np.exp(-(X[~train] @ t[1:] + t[0])))
    return prob


def suggest_threshold(by_part: dict[str, list[dict]]) -> float | None:
    """The lowest threshold whose refused share (out of corpus) is at least ``REFUSE_AT_LEAST`` in
    every part; None when none is."""
    for i, t in enumerate(THRESHOLDS):
        refused = [rows[i]["refused_out_of_corpus"] for rows in by_part.values()]
        if all(r is not None and r >= REFUSE_AT_LEAST for r in refused):
            return t
    return None


def _passage_features(it: _Read) -> list[list]:
    from .trained import passage_sentence_features

    return passage_sentence_features(it.hits, it.engine.index, it.query, it.engine.settings)


def _rows(prob, y, ok) -> list[dict]:
    """Answered (in corpus), refused (out of corpus) and accuracy (in corpus) per threshold."""
    rows = []
    for t in THRESHOLDS:
        answered = prob >= t
        rows.append(
            {
                "threshold": t,
                "answered_in_corpus": float(answered[y == 1].mean()) if (y == 1).any() else None,
                "refused_out_of_corpus": float((~answered[y == 0]).mean()) if (y == 0).any() else None,
                "accuracy_in_corpus": float((answered & ok)[y == 1].mean()) if (y == 1).any() else None,
            }
        )
    return rows


def _share(x: float | None) -> str:
    """A share printed to 3 places; "-" where the part holds no question of that kind."""
    return "-" if x is None else f"{x:.3f}"


def _print_parts(by_part: dict[str, list[dict]]) -> None:
    if len(by_part) > 1:
        for name, part_rows in by_part.items():
            cells = ", ".join(
                f"{r['threshold']}: {_share(r['answered_in_corpus'])}/{_share(r['refused_out_of_corpus'])}"
                for r in part_rows
            )
            print(f"{name} (threshold: answered/refused): {cells}")


def _write_and_print(out: Path, report: dict, setting: str, model: str, rows: list[dict]) -> None:
    """The JSON report, then the model string and the table per threshold on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{setting} = {model!r}")
    print("threshold  answered(in)  refused(out)  accuracy(in)")
    for r in rows:
        print(
            f"{r['threshold']:9.2f}  {r['answered_in_corpus']:12.3f}  {r['refused_out_of_corpus']:12.3f}"
            f"  {r['accuracy_in_corpus']:12.3f}"
        )


def _picker(parts, out: Path) -> int:
    """The sentence picker's ``abstain_model``, fitted on the held-out questions (of every
    corpus in ``parts``), with answered / refused / accuracy per threshold, in-sample and out of
    fold, and the threshold the trained reader's rule suggests (``suggest_threshold``)."""
    import numpy as np

    from ..answering import build_answer
    from ..calibration import fit_logistic, signals
    from ..evaluation import squad_correct

    t0 = time.perf_counter()
    # One row per question, in order: its signals (None when no sentence is a candidate, so the
    # picker refuses whatever the model), whether the picker's answer, always given, is right, in
    # corpus or not, its fold and its part. Each question is retrieved once, as ``answer`` does;
    # the answer's text does not depend on the confidence model, only whether it is given.
    feats, ok, inside, fold_of, part_of = [], [], [], [], []
    for name, e, sample in parts:
        always = e.settings.replace(abstain_threshold=-1.0)
        for q in sample:
            hits, f = signals(e, q.question)
            feats.append(f)
            a = build_answer(e.index, hits, q.question, q.question, always)
            ok.append(bool(q.in_corpus and squad_correct(a, q)))
            inside.append(1.0 if q.in_corpus else 0.0)
            fold_of.append(_fold(q))
            part_of.append(name)
    has = np.array([f is not None for f in feats])
    in_, folds_, parts_ = np.array(inside), np.array(fold_of), np.array(part_of)
    X = np.array([f for f in feats if f is not None], dtype=np.float64)
    y = in_[has]
    if len(set(y.tolist())) < 2:
        raise InputError("the sample holds only in-corpus or only out-of-corpus questions; raise --questions")
    theta = fit_logistic(X, y)
    model = ",".join(f"{v:.4g}" for v in theta)
    # the confidence ``answer`` gives with this model: the printed coefficients, clamped, to 4 places
    coef = np.array([float(v) for v in model.split(",")])
    probs_ = np.zeros(len(feats))
    probs_[has] = np.round(1.0 / (1.0 + np.exp(-np.clip(X @ coef[1:] + coef[0], -50.0, 50.0))), 4)
    ok_ = np.array(ok)
    rows = _rows(probs_, in_, ok_)
    names = dict.fromkeys(part_of)
    by_part = {name: _rows(probs_[parts_ == name], in_[parts_ == name], ok_[parts_ == name]) for name in names}
    # Each question's out-of-fold confidence: the model fitted without its article's fold (0 where
    # no sentence is a candidate, as answer() gives).
    oof = np.zeros(len(feats))
    oof[has] = _out_of_fold(X, y, folds_[has])
    by_part_oof = {name: _rows(oof[parts_ == name], in_[parts_ == name], ok_[parts_ == name]) for name in names}
    suggested = suggest_threshold(_in_rule(by_part_oof))
    report = {
        "abstain_model": model,
        "rows": rows,
        "rows_by_corpus": by_part,
        "rows_out_of_fold": _rows(oof, in_, ok_),
        "rows_by_corpus_out_of_fold": by_part_oof,
        "suggested_threshold": suggested,
        "questions": len(probs_),
        "in_corpus": int(in_.sum()),
        "articles": sum(len(e.index.documents) for _, e, _ in parts),
        "embedder": parts[0][1].embedder.model_id,
        "seconds": round(time.perf_counter() - t0, 1),
        "note": "rows, rows_by_corpus: the model fitted on these same questions (in-sample); *_out_of_fold: each "
        f"question judged by a model fitted without its article (5 folds by title); suggested_threshold: the lowest "
        f"refusing >= {REFUSE_AT_LEAST} out of fold in every kind of corpus but the on-topic ones ('{ON_TOPIC} ...')",
    }
    _write_and_print(out, report, "abstain_model", model, rows)
    _print_parts(by_part)
    print("out of fold (each article's questions judged by a model fitted without it):")
    _print_parts(by_part_oof if len(by_part_oof) > 1 else {"all": report["rows_out_of_fold"]})
    print(
        f"suggested abstain_threshold: {suggested} (the lowest refusing >= {REFUSE_AT_LEAST} out of fold "
        "in every kind of corpus but the on-topic ones)"
    )
    print(f"{len(probs_)} held-out training questions ({report['in_corpus']} in corpus); report {out}", file=sys.stderr)
    return 0
