"""``calibrate-reader --questions 4000`` with each question's top K passages read instead of 5
(retrieval's k raised wherever calibration asks for 5); report in artifacts/read-K-calibration.json."""

import sys

import qa.retrieval as retrieval
from qa.cli import main

K = int(sys.argv[1])
_search = retrieval.search


def search(index, embedder, settings, query, k, *args, **kwargs):
    return _search(index, embedder, settings, query, K if k == 5 else k, *args, **kwargs)


retrieval.search = search
sys.exit(main(["calibrate-reader", "--questions", "4000", "--out", f"artifacts/read-{K}-calibration.json"]))
