"""What news typography costs the trained reader, and what ``model.plain_typography`` wins back.

The held-out SQuAD *train* questions (the 40 articles of seed 13 that the reader never trained on)
whose paragraph has an em dash, a straight double quote or an apostrophe are read with their gold
paragraph (at most 1,500 of each kind, a seeded sample) by the shipped int8 reader, as `qa` reads
(top guess over the windows), three ways:
the paragraph as it is; rewritten in wire-copy typography (an em dash as " -- ", straight double
quotes as curly ones, apostrophes as "\u2019", in the question too); and that rewrite read with the
normalization on. Also the held-out paragraphs that already hold curly quotes or "--", read with
and without the normalization. Official SQuAD EM / F1 of the top guess, and "exact": the guess is a
gold answer character for character (SQuAD's normalization drops punctuation, so it forgives a span
that ends on a dash). Report in artifacts/typography.json.
``python docs/probes/typography.py``"""

import json
import random
import re
import sys
from pathlib import Path

import qa.reading.model as rm
from qa.evaluation import squad_em_f1
from qa.reading.train import DEFAULT_DATA, load_squad_train, split_articles
from qa.reading.trained import SpanReader
from qa.types import Passage

NORMALIZE = rm.plain_typography
MAX_QUESTIONS = 1500  # per kind of paragraph, a seeded sample of them
SEED = 5


def wire_copy(text: str) -> str:
    """``text`` as news wire copy types it: em dashes as " -- ", curly quotes and apostrophes."""
    text = re.sub(r"\s*\u2014\s*", " -- ", text)
    out, opening = [], True
    for ch in text:
        if ch == '"':
            out.append("\u201c" if opening else "\u201d")
            opening = not opening
        elif ch == "'":
            out.append("\u2019")
        else:
            out.append(ch)
    return "".join(out)


def canon(text: str) -> str:
    """One spelling for the guess and the golds of every variant, so that the scores differ only by
    what the reader pointed at (SQuAD's normalization drops ASCII punctuation only)."""
    return re.sub(r"\s*\u2014\s*", "\u2014", NORMALIZE(text)).strip()


def score(reader: SpanReader, items, normalize: bool) -> dict:
    rm.plain_typography = NORMALIZE if normalize else (lambda s: s)
    em = f1 = exact = 0.0
    for question, context, answers in items:
        reading = reader.read(question, [Passage(context, 1.0, "p", "", None, 0, len(context))], top=1)
        guess = canon(reading.spans[0].text if reading.spans else "")
        golds = [canon(a) for a in answers]
        e, f = squad_em_f1(guess, golds)
        em, f1, exact = em + e, f1 + f, exact + (guess in golds)
    n = len(items)
    return {"questions": n, "em": round(em / n, 4), "f1": round(f1 / n, 4), "exact": round(exact / n, 4)}


def main() -> int:
    questions = load_squad_train(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA)
    _, held = split_articles(questions, 40, 13)
    held_q = [q for q in questions if q.article in held]
    reader = SpanReader()
    report = {"held_out_questions": len(held_q)}
    kinds = {
        "an em dash within 3 characters of the answer": lambda q: (
            "\u2014" in q.context[max(0, q.start - 3) : q.end + 3]
        ),
        "em dash": lambda q: "\u2014" in q.context,
        "straight quotes or apostrophes": lambda q: '"' in q.context or "'" in q.context,
    }
    for kind, has in kinds.items():
        items = [(q.question, q.context, q.answers) for q in held_q if has(q)]
        items = random.Random(SEED).sample(items, min(len(items), MAX_QUESTIONS))
        wired = [(wire_copy(q), wire_copy(c), tuple(wire_copy(a) for a in ans)) for q, c, ans in items]
        report[kind] = {
            "as it is": score(reader, items, False),
            "wire copy": score(reader, wired, False),
            "wire copy, normalized": score(reader, wired, True),
        }
        print(kind, json.dumps(report[kind]), flush=True)
    items = [(q.question, q.context, q.answers) for q in held_q if NORMALIZE(q.context) != q.context]
    if items:
        report["curly quotes or -- already"] = {
            "as it is": score(reader, items, False),
            "normalized": score(reader, items, True),
        }
        print("curly quotes or -- already", json.dumps(report["curly quotes or -- already"]), flush=True)
    Path("artifacts").mkdir(exist_ok=True)
    Path("artifacts/typography.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
