"""Shared fixtures: a deterministic hash-seeded fake embedder, corpora in tmp folders, and the
real model loaded once per session for the `slow` tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from qa.embedders.fake import FakeEmbedder

ROOT = Path(__file__).resolve().parent.parent
SEED_CORPUS = ROOT / "corpus"
SHARED = ROOT.parent / "shared"
DEV_SET = SHARED / "eval" / "severance_dev.jsonl"
# Dev questions each reader is known to miss, and why. test_dev_set asks the dev set with both
# readers and marks these strict expected failures (one that starts passing fails there, so its
# entry is removed); a failure not listed is a regression. The reasons were read off the readers'
# guesses; nothing was tuned to them (the dev set is for checking, not fitting).
DEV_KNOWN_MISSES = {
    "trained": {
        "dev-07": "the chosen span is '50' (years of friendship, another article); '66' in 'the actor, 66, said', "
        "a sentence that names Turturro only as 'the actor', is not among the guesses the rank model prefers",
        "dev-08": "the chosen span is 'Patricia Arquette' in the cast list 'includes Adam Scott, Patricia Arquette, "
        "...'; 'Mark' in 'Scott -- who plays Mark --' is not chosen",
        "dev-13": "answered ('Dan Erickson', from 'Severance is the brainchild of Dan Erickson') at confidence 0.645 "
        "against the threshold 0.6: the confidence model refitted with the listwise rank model (2026-12-07) moved it "
        "from 0.57 to 0.63, and again with the cross-encoder rerank to 0.645; no held-out question set the threshold by it",
    },
    "picker": {
        "dev-04": "refused: its confidence model, fitted on held-out SQuAD train articles (calibrate-reader "
        "--reader picker), gives 0.74 against the threshold 0.75 its rule chose; the benchmark-fitted model it "
        "replaced answered it (README, Refusing)",
    },
}
# Known misses on the threshold's edge, whose outcome differs between machines (the same code gave
# the picker's dev-04 a confidence of 0.74 on earlier machines and 0.760 on an AVX2-only AMD EPYC,
# 2026-12-07): expected failures that may pass, not strict ones.
DEV_BORDERLINE = {("picker", "dev-04")}


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def seed_corpus(tmp_path: Path) -> Path:
    """A copy of the three seed articles in a tmp folder (tests may change it)."""
    dst = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, dst)
    return dst


@pytest.fixture
def make_engine(tmp_path: Path, fake_embedder: FakeEmbedder):
    """Engine over a corpus folder with the fake embedder and a tmp index folder."""
    from qa.engine import Engine
    from qa.settings import Settings

    def make(corpus_dir: Path, index_dir: Path | None = None, **settings):
        settings.setdefault("reader", "picker")  # the fast tier never loads the real network
        s = Settings(corpus_dir=str(corpus_dir), index_dir=str(index_dir or tmp_path / "index"), **settings)
        return Engine(s, embedder=fake_embedder)

    return make


@pytest.fixture(scope="session")
def real_embedder():
    """The real all-MiniLM-L6-v2 as users get it (the onnx int8 graph), loaded once."""
    from qa.embedders.onnx import OnnxEmbedder

    e = OnnxEmbedder()
    e.embed(["warm up"])
    return e


@pytest.fixture(scope="session")
def st_embedder():
    """The sentence-transformers reference path of the same model, loaded once."""
    from qa.embedders.sentence_transformers import SentenceTransformerEmbedder

    e = SentenceTransformerEmbedder()
    e.embed(["warm up"])
    return e


@pytest.fixture(scope="session")
def seed_texts() -> list[str]:
    """Every sentence and every paragraph of the seed articles."""
    from qa.chunking import split_sentences
    from qa.corpus import load_corpus

    docs, _ = load_corpus(SEED_CORPUS, 5_000_000)
    texts = []
    for d in docs:
        texts += [p for p in d.text.split("\n\n") if p.strip()]
        texts += [d.text[s.start : s.end] for s in split_sentences(d.text)]
    return texts


@pytest.fixture(scope="session")
def real_engine(tmp_path_factory, real_embedder):
    """An Engine with the real model over the seed corpus, index built once per session."""
    from qa.engine import Engine
    from qa.settings import Settings

    index_dir = tmp_path_factory.mktemp("real-index")
    engine = Engine(Settings(corpus_dir=str(SEED_CORPUS), index_dir=str(index_dir)), embedder=real_embedder)
    engine.build_index()
    return engine


@pytest.fixture(autouse=True)
def _fast_tier_reader(request, monkeypatch):
    """Fast-tier tests answer with the sentence picker (QA_READER=picker) unless they set a reader
    themselves: the trained reader needs the real network, which only the slow tier loads. Its
    logic has fast tests of its own with a fake span reader (test_reader.py). The same for the
    cross-encoder rerank."""
    if request.node.get_closest_marker("slow") is None and request.node.get_closest_marker("browser") is None:
        monkeypatch.setenv("QA_READER", "picker")
        # nor the cross-encoder rerank: a scorer giving every result 0 leaves the rerank's order
        # (test_cross_rerank.py tests it with fakes of its own, and the slow tier with the real graph)
        from qa.rerankers import cross

        monkeypatch.setattr(cross, "scorer", lambda folder=None, threads=1: _ZeroScorer())


class _ZeroScorer:
    def score(self, question, texts):
        import numpy as np

        return np.zeros(len(texts), dtype=np.float32)


def pytest_configure(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def small_chunks(tmp_path_factory):
    """The seed corpus in small chunks (many rows) with the fake embedder: (index, settings)."""
    from qa.index import build_index, load_index
    from qa.settings import Settings

    settings = Settings(
        corpus_dir=str(SEED_CORPUS), index_dir=str(tmp_path_factory.mktemp("r") / "index"), chunk_max_tokens=40
    )
    build_index(settings, FakeEmbedder())
    idx = load_index(settings.index_path, settings, FakeEmbedder())
    assert idx.n_chunks > 30
    return idx, settings
