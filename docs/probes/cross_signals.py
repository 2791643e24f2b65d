"""The cross-encoder's reading as a signal for the trained reader's rank and confidence models.

The cross-encoder rerank (``qa/rerankers/cross.py``) scores how likely a result's best sentence
answers the question, but only to reorder ranks 3-7; the reader's rank and confidence models never
see it. This probe runs ``calibrate-reader --questions 4000`` (held-out SQuAD *train* questions
only) and, on the same questions read once, refits both models in four variants: as shipped; plus
the cross-encoder's score of each read passage (as the rerank reads it: title, the best sentence
and the one before) - per guess its passage's score less the best passage's, and for confidence
the chosen guess's passage's score and the best one; plus its score of the sentence holding each
guess (with the sentence before) - per guess that score less the best guess sentence's, and for
confidence the chosen guess's; and both. ``python docs/probes/cross_signals.py [N ...]`` runs the
variants numbered N (all when none); reports in artifacts/cross-signal-N.json and a summary in
artifacts/cross-signals.json."""

import json
import os
import sys
from pathlib import Path

import qa.reading.calibrate as calibrate
import qa.reading.trained as trained
import qa.retrieval as retrieval
import qa.settings as qsettings
from qa.cli import main
from qa.rerankers import cross

VARIANTS = {"shipped": (False, False), "+ passage": (True, False), "+ sentence": (False, True), "+ both": (True, True)}
STATE = {"use": (False, False), "cur": None}
PASSAGE: dict[int, dict[int, float]] = {}  # id(hits) -> chunk row -> score
QUESTION: dict[int, str] = {}  # id(hits) -> the question the network read
SENTENCE: dict[tuple, float] = {}  # (question, source, sentence start) -> score
KEEP: list = []  # the hits, so that their ids stay theirs

_search = retrieval.search


def _scorer(settings):
    return cross.scorer(settings.cross_rerank_weights, settings.cross_rerank_threads)


def search(index, embedder, settings, query, k, *args, **kwargs):
    hits = _search(index, embedder, settings, query, k, *args, **kwargs)
    rs = settings.replace(w_type=settings.w_rerank_type)
    texts = []
    for p in hits.passages:
        feats = hits.sentence_features.get(p.chunk_id) or []
        texts.append(cross.pair_text(p.title, cross.snippet(feats, rs)))
    scores = _scorer(settings).score(query, texts)
    PASSAGE[id(hits)] = {p.chunk_id: float(s) for p, s in zip(hits.passages, scores, strict=True)}
    QUESTION[id(hits)] = query
    KEEP.append(hits)
    return hits


def _sentence_scores(guesses, passages, features):
    """The cross-encoder's score of each guess's sentence (with the one before), cached."""
    question = QUESTION.get(STATE["cur"], "")
    keys, todo, texts = [], [], []
    for g in guesses:
        sents = features[g.rank]
        f = trained.sentence_of(g, sents)
        if f is None:
            keys.append(None)
            continue
        i = sents.index(f)
        key = (question, passages[g.rank].source, f.span.start)
        keys.append(key)
        if key not in SENTENCE and key not in todo:
            before = sents[i - 1].text + " " if i > 0 else ""
            todo.append(key)
            texts.append(cross.pair_text(passages[g.rank].title, before + f.text))
    if todo:
        for key, s in zip(todo, _scorer(qsettings.Settings()).score(question, texts), strict=True):
            SENTENCE[key] = float(s)
    return [SENTENCE[k] if k is not None else -10.0 for k in keys]


base_rank = trained.rank_features


def rank_features(reading, passages, features):
    rows = base_rank(reading, passages, features)
    use_p, use_s = STATE["use"]
    if not rows:
        return rows
    extra = [[] for _ in rows]
    if use_p:
        ce = PASSAGE[STATE["cur"]]
        best = max(ce.get(p.chunk_id, -10.0) for p in passages)
        for e, g in zip(extra, reading.spans, strict=True):
            e.append(ce.get(passages[g.rank].chunk_id, -10.0) - best)
    if use_s:
        s = _sentence_scores(reading.spans, passages, features)
        best = max(s)
        for e, x in zip(extra, s, strict=True):
            e.append(x - best)
    return [r + e for r, e in zip(rows, extra, strict=True)]


base_abstain = trained.abstain_features


def abstain_features(reading, guess, passages, known, cap_unknown, follow_up=False):
    row = base_abstain(reading, guess, passages, known, cap_unknown, follow_up)
    use_p, use_s = STATE["use"]
    if use_p:
        ce = PASSAGE[STATE["cur"]]
        row += [ce.get(passages[guess.rank].chunk_id, -10.0), max(ce.values())]
    if use_s:
        row += [STATE["sentence_of_choice"].get((guess.rank, guess.start, guess.end), -10.0)]
    return row


base_order = trained.rank_order


def rank_order(reading, passages, features, model):
    out = base_order(reading, passages, features, model)
    if STATE["use"][1] and out.spans:
        STATE["sentence_of_choice"] = {
            (g.rank, g.start, g.end): x
            for g, x in zip(out.spans, _sentence_scores(out.spans, passages, features), strict=True)
        }
    return out


def confidence(features, settings):
    return 0.5  # calibration always answers; the fit is on the features, not the shipped model


base_answer_reading = trained.TrainedReader.answer_reading


def answer_reading(self, question, reading, hits, index, query):
    STATE["cur"] = id(hits)
    return base_answer_reading(self, question, reading, hits, index, query)


base_guess_rows = calibrate._guess_rows


def guess_rows(it):
    STATE["cur"] = id(it.hits)
    return base_guess_rows(it)


def _check_model(name, value, features, may=""):
    """The probe fits models of other lengths; the shipped ones stay valid defaults."""


trained.rank_features = rank_features
trained.abstain_features = abstain_features
trained.rank_order = rank_order
trained.confidence = confidence
trained.TrainedReader.answer_reading = answer_reading
calibrate._guess_rows = guess_rows
retrieval.search = search
qsettings._check_model = _check_model
real_fit_and_report = calibrate.fit_and_report
CHOSEN: dict = {}


def variants(items, latencies, parts, engine, out, t0, ablate=False):
    summary = {}
    for i, (name, use) in enumerate(VARIANTS.items()):
        if name not in CHOSEN:
            continue
        STATE["use"] = use
        trained.RANK_FEATURES = trained.RANK_FEATURES_BASE + use[0] + use[1]
        path = Path(f"artifacts/cross-signal-{i}.json")
        print(f"\n=== {name}", flush=True)
        real_fit_and_report(items, latencies, parts, engine, path, t0)
        r = json.loads(path.read_text())
        t = r["suggested_threshold"]
        at = {
            th: {
                part: next((row for row in rows if row["threshold"] == th), None)
                for part, rows in r["rows_by_corpus_out_of_fold"].items()
            }
            for th in {t, 0.6, 0.7}
            if th is not None
        }
        summary[name] = {
            "chosen_guess_out_of_fold": r["ranking"]["folds_by_article"],
            "always_answering_in_sample": r["always_answering"],
            "threshold": t,
            "out_of_fold_at": at,
            "reader_rank_model": r["reader_rank_model"],
            "reader_abstain_model": r["reader_abstain_model"],
        }
        Path("artifacts/cross-signals.json").write_text(json.dumps(summary, indent=1))
    return 0


trained.RANK_FEATURES_BASE = trained.RANK_FEATURES

if __name__ == "__main__":  # python docs/probes/cross_signals.py [N ...]
    names = sys.argv[1:]
    CHOSEN.update({k: v for i, (k, v) in enumerate(VARIANTS.items()) if not names or str(i) in names})
    calibrate.fit_and_report = variants
    n = os.environ.get("CROSS_SIGNALS_QUESTIONS", "4000")  # fewer for a quick check of the probe itself
    sys.exit(main(["calibrate-reader", "--questions", n, "--out", "artifacts/cross-signals-calibration.json"]))
