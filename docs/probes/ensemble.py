"""``calibrate-reader --questions 4000`` with the trained reader's start and end logits averaged
over the shipped int8 graph and a second network's (same input, same windows): what an ensemble of
two readers would give, and what it costs. ``python docs/probes/ensemble.py FOLDER`` (a folder
``train-reader --export`` wrote); report in artifacts/ensemble-calibration.json."""

import sys
from pathlib import Path

import qa.reading.model as rm
from qa.cli import main

_load = rm.load_onnx


class Both:
    """Two onnxruntime sessions run one after the other on the same feed, outputs averaged."""

    def __init__(self, a, b) -> None:
        self.a, self.b = a, b

    def run(self, names, feed):
        start_a, end_a = self.a.run(names, feed)
        start_b, end_b = self.b.run(names, feed)
        return (start_a + start_b) / 2, (end_a + end_b) / 2


def load_onnx(folder=rm.WEIGHTS_DIR, threads=1):
    first = _load(folder, threads)
    if first is None:
        return None
    second = _load(Path(sys.argv[1]), threads)
    return Both(first[0], second[0]), first[1]


if __name__ == "__main__":
    rm.load_onnx = load_onnx
    sys.exit(main(["calibrate-reader", "--questions", "4000", "--out", "artifacts/ensemble-calibration.json"]))
