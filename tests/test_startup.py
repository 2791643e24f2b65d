"""Lazy imports: with an index on disk, `python -m qa ask` and `qa.answer` import neither torch,
transformers, sentence-transformers nor gradio (with either reader); the chat adds gradio alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "sentence_transformers", "gradio")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, str]:
    """The seed corpus indexed with the default (onnx) embedder, in a fresh process."""
    index = tmp_path_factory.mktemp("startup-index")
    env = dict(os.environ, QA_CORPUS_DIR=str(ROOT / "corpus"), QA_INDEX_DIR=str(index))
    env.pop("QA_READER", None)
    subprocess.run([sys.executable, "-m", "qa", "index"], env=env, check=True, capture_output=True, timeout=300)
    return env


def _imported(args: list[str], env: dict[str, str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return names & set(HEAVY)


@pytest.mark.parametrize("reader", ["picker", "trained"])
def test_ask_imports_no_heavy_library(built, reader):
    env = dict(built, QA_READER=reader)
    assert _imported(["-m", "qa", "ask", "Who plays Mark?"], env) == set()


def test_the_python_api_imports_no_heavy_library(built):
    code = "import qa; a = qa.answer('Who plays Irving?'); assert a.citations"
    assert _imported(["-c", code], built) == set()


def test_the_chat_needs_gradio_and_nothing_heavier(built):
    code = "import qa.ui, gradio"
    assert _imported(["-c", code], built) == {"gradio"}
