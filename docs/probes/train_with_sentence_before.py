"""``train-reader --retrieved K ...`` (arguments passed on) with each retrieved passage read with the
sentence before it in front, as ``read_with_sentence_before.py`` reads it: the chunk before's last
sentence not in the passage, same article, spaces filling the gap. The gold answer is labelled only
inside the passage itself (guesses in the sentence before are dropped when reading), so that
sentence is context only. Example (the control is the third run of docs/reader.md, same data):
``python docs/probes/train_with_sentence_before.py --init qa/reading/weights --retrieved 5
--shuffle-seed 14 --offset 10070 --questions 0 --lr 3e-5 --minutes 75 --threads 2 --export DIR``."""

import sys

from qa.cli import main
from qa.reading import train


def with_sentence_before(index, p) -> tuple[str, int]:
    """The passage's text with the sentence before it in front, and how many characters that adds."""
    if p.chunk_id > 0 and index.chunks[p.chunk_id - 1].source == p.source:
        prev = index.chunks[p.chunk_id - 1]
        before = [s for s in prev.sentences if s.end <= p.start]
        if before:
            s = before[-1]
            sentence = prev.text[s.start - prev.start : s.end - prev.start]
            lead = p.start - s.start
            return sentence + " " * (lead - len(sentence)) + p.text, lead
    return p.text, 0


_searched = train._searched
train._searched = lambda args, held_titles: _searched(args, held_titles, with_sentence_before)
sys.exit(main(["train-reader", *sys.argv[1:]]))
