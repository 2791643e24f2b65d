"""Where the trained reader's in-corpus misses are, always answering with the shipped rank model, on
``calibrate-reader --questions 4000``'s held-out SQuAD *train* questions: right; the answer in none
of the five passages read; in one of them, but in no quote the reader could build around any of
its 20 guesses; in such a quote, but another guess was chosen (the rank model's headroom). Per kind
of corpus, with up to 40 examples of the last kind; report in artifacts/headroom.json.
``python docs/probes/headroom.py``"""

import json
import sys
from collections import Counter
from pathlib import Path

import qa.reading.calibrate as calibrate
from qa.cli import main

RIGHT = "right"
NOT_READ = "wrong: the answer in none of the 5 passages"
NO_GUESS = "wrong: in a passage, in no guess's quote"
NOT_CHOSEN = "wrong: in a guess's quote, another chosen"


def analyse(items, latencies, parts, engine, out, t0, ablate=False):
    from qa.evaluation import contains_answer, normalize_squad, squad_correct
    from qa.reading.trained import TrainedReader

    kinds, by_part, examples, readers = Counter(), {}, [], {}
    for it in items:
        q = it.question
        if not q.in_corpus:
            continue
        settings = it.engine.settings.replace(reader_abstain_threshold=-1.0)
        reader = readers.setdefault(id(it.engine), TrainedReader(settings, it.spans))
        answer, _ = reader.answer_reading(it.asked, it.reading, it.hits, it.engine.index, it.query)
        read = any(
            p.source == q.source and contains_answer(p.text, q.answers, normalize_squad) for p in it.hits.passages
        )
        _, labels = calibrate._guess_rows(it)
        if squad_correct(answer, q):
            kind = RIGHT
        elif not read:
            kind = NOT_READ
        elif not any(lab["accuracy"] for lab in labels):
            kind = NO_GUESS
        else:
            kind = NOT_CHOSEN
            if len(examples) < 40:
                span = answer.span.text if answer.span else None
                examples.append({"question": q.question, "gold": q.answers[:2], "span": span, "said": answer.text})
        kinds[kind] += 1
        by_part.setdefault(it.part, Counter())[kind] += 1
    n = sum(kinds.values())
    report = {
        "questions": n,
        "share": {k: round(v / n, 4) for k, v in kinds.items()},
        "by_corpus": {p: dict(c) for p, c in by_part.items()},
        "examples": examples,
    }
    Path("artifacts/headroom.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("questions", "share", "by_corpus")}, indent=1))
    return 0


if __name__ == "__main__":
    calibrate.fit_and_report = analyse
    sys.exit(main(["calibrate-reader", "--questions", "4000", "--out", "artifacts/headroom-calibration.json"]))
