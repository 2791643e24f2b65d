"""The trained reader's second quote chosen in other ways, on ``calibrate-reader --questions 4000``'s
held-out questions read once (in corpus, always answering, the shipped rank model): per policy the
share of answers holding a gold answer from the gold article, the share with two quotes and the
mean answer length. Policies: the rank model's runner-up within margin m (shipped: m = 1.0), and
the sentence picker's best sentence as the second quote when it is not the first. Report in
artifacts/second-quote.json."""

import json
import sys
from pathlib import Path

import qa.reading.calibrate as calibrate
from qa.cli import main

MARGINS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0]


def policies(items, latencies, parts, engine, out, t0, ablate=False):
    from qa.evaluation import contains_answer, normalize_squad
    from qa.reading.picker import SentencePicker
    from qa.reading.trained import TrainedReader, _quotes, _sentences, _with_second
    from qa.types import Span

    tally: dict[str, list] = {}

    def score(name, quoted, q):
        text = " ".join(p.text[s.start - p.start : s.end - p.start] for p, s in quoted)
        ok = contains_answer(text, q.answers, normalize_squad) and any(p.source == q.source for p, _ in quoted)
        tally.setdefault(name, []).append((ok, len(quoted) > 1, len(text)))

    readers, pickers = {}, {}
    for it in items:
        q = it.question
        if not q.in_corpus:
            continue
        s = it.engine.settings.replace(reader_abstain_threshold=-1.0, abstain_threshold=-1.0)
        reader = readers.setdefault(id(it.engine), TrainedReader(s, it.spans))
        picker = pickers.setdefault(id(it.engine), SentencePicker(s))
        index, passages = it.engine.index, list(it.hits.passages)
        reading = reader.order(it.reading, it.hits, index, it.query)
        quotes = _quotes(reading, passages, lambda p: _sentences(index, p), s)
        first = next(quotes, None)
        if first is None:
            continue
        i, guess, p, quote = first
        second = next(quotes, None)
        for m in MARGINS:
            quoted = [(p, quote)]
            if m > 0 and second is not None and reading.choice[i] - reading.choice[second[0]] <= m:
                quoted = _with_second(p, quote, second[2], second[3], s.answer_max_chars)
            score(f"margin {m}", quoted, q)
            if m in (0.0, 1.0):
                # the picker's best sentence as the second quote (unless the margin gave one)
                pa = picker.read(it.asked, it.hits, index, it.query)
                extra = quoted
                if len(quoted) == 1 and pa.citations:
                    c = pa.citations[0]
                    holder = next((x for x in passages if x.source == c.source and x.start <= c.start and c.end <= x.end), None)
                    inside = quote.start <= c.start and c.end <= quote.end and c.source == p.source
                    if holder is not None and not inside:
                        extra = _with_second(p, quote, holder, Span(c.start, c.end), s.answer_max_chars)
                score(f"margin {m} + picker's sentence", extra, q)
    report = {}
    for name, rows in tally.items():
        k = len(rows)
        report[name] = {
            "accuracy": round(sum(r[0] for r in rows) / k, 4),
            "two_quotes": round(sum(r[1] for r in rows) / k, 4),
            "mean_chars": round(sum(r[2] for r in rows) / k, 1),
            "questions": k,
        }
        print(f"{name:40s} accuracy {report[name]['accuracy']:.4f}  two quotes {report[name]['two_quotes']:.3f}  chars {report[name]['mean_chars']:.0f}")
    Path("artifacts/second-quote.json").write_text(json.dumps(report, indent=1))
    return 0


calibrate.fit_and_report = policies
sys.exit(main(["calibrate-reader", "--questions", "4000", "--out", "artifacts/second-quote-calibration.json"]))
