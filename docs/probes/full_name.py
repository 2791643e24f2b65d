"""The trained reader's quote with and without the sentence before when the span names someone by
the surname alone whose full name is in that sentence (``trained._surname_only``), or is an age
after a description of someone ("the actor, 66,": ``trained._described_subject``), on
``calibrate-reader --questions 4000``'s held-out questions read once (in corpus, always answering,
the shipped rank model, second quotes by the shipped margin): per policy the share of answers
holding a gold answer from the gold article, how often the rule changed the quote, the mean answer
length, and the questions won and lost. Report in artifacts/full-name.json."""

import json
import sys
from pathlib import Path

import qa.reading.calibrate as calibrate
import qa.reading.trained as trained
from qa.cli import main

RULES = {"_surname_only": trained._surname_only, "_described_subject": trained._described_subject}
POLICIES = {"neither": (), "full names": ("_surname_only",), "ages": ("_described_subject",), "both": tuple(RULES)}


def _never(*args) -> bool:
    return False


def policies(items, latencies, parts, engine, out, t0, ablate=False):
    from qa.evaluation import contains_answer, normalize_squad
    from qa.reading.features import asks_who
    from qa.reading.trained import TrainedReader, _close, _quotes, _sentences, _with_second

    rows: dict[str, list] = {name: [] for name in POLICIES}
    readers = {}
    for it in items:
        q = it.question
        if not q.in_corpus:
            continue
        s = it.engine.settings.replace(reader_abstain_threshold=-1.0)
        reader = readers.setdefault(id(it.engine), TrainedReader(s, it.spans))
        index, passages = it.engine.index, list(it.hits.passages)
        reading = reader.order(it.reading, it.hits, index, it.query)
        for name, on in POLICIES.items():
            for rule, fn in RULES.items():
                setattr(trained, rule, fn if rule in on else _never)
            quotes = _quotes(reading, passages, lambda p, ix=index: _sentences(ix, p), s, asks_who(it.query))
            first = next(quotes, None)
            if first is None:
                rows[name].append((False, "", q.question))
                continue
            i, guess, p, quote = first
            second = next(quotes, None)
            quoted = [(p, quote)]
            if second is not None and _close(reading, i, second[0], s.reader_second_margin):
                quoted = _with_second(p, quote, second[2], second[3], s.answer_max_chars)
            text = " ".join(x.text[y.start - x.start : y.end - x.start] for x, y in quoted)
            ok = contains_answer(text, q.answers, normalize_squad) and any(x.source == q.source for x, _ in quoted)
            rows[name].append((ok, text, q.question))
    for rule, fn in RULES.items():
        setattr(trained, rule, fn)
    a, b = rows["neither"], rows["both"]
    n = len(a)
    report = {
        name: {
            "accuracy": round(sum(r[0] for r in rs) / n, 4),
            "mean_chars": round(sum(len(r[1]) for r in rs) / n, 1),
        }
        for name, rs in rows.items()
    }
    changed = [(x, y) for x, y in zip(a, b, strict=True) if x[1] != y[1]]
    report["questions"] = n
    report["quote changed"] = len(changed)
    report["won"] = sum(1 for x, y in changed if y[0] and not x[0])
    report["lost"] = sum(1 for x, y in changed if x[0] and not y[0])
    report["examples"] = [{"question": y[2], "right": y[0], "quote": y[1]} for x, y in changed[:40]]
    print(json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=1))
    Path("artifacts/full-name.json").write_text(json.dumps(report, indent=1))
    return 0


calibrate.fit_and_report = policies
sys.exit(main(["calibrate-reader", "--questions", "4000", "--out", "artifacts/full-name-calibration.json"]))
