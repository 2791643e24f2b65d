"""The command line: exit codes and output a shell user expects."""

from __future__ import annotations

import json

import pytest

from qa import cli


@pytest.fixture
def fake_cli(monkeypatch, make_engine, seed_corpus, tmp_path):
    """Route the CLI's engine to the fake embedder over a tmp copy of the corpus."""
    engine = make_engine(seed_corpus, tmp_path / "index", abstain_threshold=0.0)
    monkeypatch.setattr("qa.engine.get_engine", lambda corpus=None, index=None: engine)
    return engine


def test_index_then_ask_json(fake_cli, capsys):
    assert cli.main(["index"]) == 0
    out = capsys.readouterr().out
    assert "3 articles" in out and "added 3" in out
    assert cli.main(["index"]) == 0
    assert "embedded 0 chunks" in capsys.readouterr().out
    assert cli.main(["ask", "Who directed Severance?", "--json", "-k", "3"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["passages"]) == 3 and "abstained" in d


def test_ask_text_output_lists_sources(fake_cli, capsys):
    assert cli.main(["ask", "Who directed and executive produced Severance?"]) == 0
    out = capsys.readouterr().out
    assert "confidence:" in out
    assert "[1]" in out and ".txt, characters" in out


@pytest.mark.parametrize("question", ["", "   ", "x" * 100_000])
def test_bad_questions_exit_2_with_a_message(fake_cli, capsys, question):
    assert cli.main(["ask", question]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: question")


def test_bad_k_exits_2(fake_cli, capsys):
    assert cli.main(["ask", "Who?", "-k", "0"]) == 2
    assert "k must be" in capsys.readouterr().err


def test_missing_corpus_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("QA_CORPUS_DIR", raising=False)
    code = cli.main(["--corpus", str(tmp_path / "nope"), "--index", str(tmp_path / "ix"), "index"])
    assert code == 1
    assert "nope" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["frobnicate"])
    assert e.value.code == 2
