"""``calibrate-reader --questions 4000`` with the network reading each passage with the sentence
before it in front (the chunk before's last sentence not in the passage, same article; spaces fill
the gap so every offset stays a file offset) and guesses inside that sentence dropped; report in
artifacts/sentence-before-calibration.json."""

import dataclasses
import sys

import qa.retrieval as retrieval
from qa.cli import main
from qa.reading import trained

BEFORE: dict[tuple[str, int], tuple[int, str]] = {}  # (source, passage start) -> (sentence start, text)
_search, _read = retrieval.search, trained.SpanReader.read


def search(index, embedder, settings, query, k, *args, **kwargs):
    hits = _search(index, embedder, settings, query, k, *args, **kwargs)
    for p in hits.passages:
        if p.chunk_id > 0 and index.chunks[p.chunk_id - 1].source == p.source:
            prev = index.chunks[p.chunk_id - 1]
            before = [s for s in prev.sentences if s.end <= p.start]
            if before:
                s = before[-1]
                BEFORE[(p.source, p.start)] = (s.start, prev.text[s.start - prev.start : s.end - prev.start])
    return hits


def read(self, question, passages, top=5):
    longer = []
    for p in passages:
        start, text = BEFORE.get((p.source, p.start), (p.start, ""))
        gap = " " * (p.start - start - len(text))
        longer.append(dataclasses.replace(p, text=text + gap + p.text, start=start) if text else p)
    r = _read(self, question, longer, top=top * 2)
    return trained.Reading([g for g in r.spans if g.start >= passages[g.rank].start][:top], r.no_answer, r.choice)


retrieval.search, trained.SpanReader.read = search, read
sys.exit(main(["calibrate-reader", "--questions", "4000", "--out", "artifacts/sentence-before-calibration.json"]))
