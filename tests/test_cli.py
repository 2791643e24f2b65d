"""The command line: exit codes and output a shell user expects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


# ---------------------------------------------------------------- environment problems: one line, no traceback


@pytest.fixture
def fake_model(monkeypatch, fake_embedder):
    """The CLI's real engine plumbing (paths from the arguments) with the fake embedder."""
    monkeypatch.setattr("qa.engine.default_embedder", lambda settings: fake_embedder)
    monkeypatch.setattr("qa.engine._ENGINES", {})
    monkeypatch.delenv("QA_CORPUS_DIR", raising=False)
    monkeypatch.delenv("QA_INDEX_DIR", raising=False)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _file(p):
    p.write_text("not a folder")


def _lock_dir(p):
    (p / ".lock").mkdir(parents=True)


def _lock_fifo(p):
    p.mkdir()
    os.mkfifo(p / ".lock")


@pytest.mark.parametrize(
    "index, prepare, named",
    [
        ("/etc/hostname", None, "/etc/hostname"),
        ("/dev/null", None, "/dev/null"),
        ("{tmp}/no/such/parent/index", None, "{tmp}/no/such/parent"),
        ("{tmp}/" + "x" * 300, None, "too long"),
        ("{tmp}/index", _file, "{tmp}/index"),
        ("{tmp}/index", _lock_dir, "{tmp}/index/.lock"),
        ("{tmp}/index", _lock_fifo, "{tmp}/index/.lock"),
    ],
    ids=["etc-hostname", "dev-null", "parent-missing", "name-too-long", "file", "lock-is-dir", "lock-is-fifo"],
)
@pytest.mark.parametrize("command", [["index"], ["ask", "Who plays Irving?"]])
def test_unusable_index_path_is_one_line_and_exit_1(
    fake_model, seed_corpus, tmp_path, capsys, index, prepare, named, command
):
    index = index.format(tmp=tmp_path)
    if prepare:
        prepare(Path(index))
    code = cli.main(["--corpus", str(seed_corpus), "--index", index, *command])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1
    assert named.format(tmp=tmp_path) in line


@pytest.mark.parametrize("option", ["--corpus", "--index"])
def test_empty_folder_argument_is_refused_with_exit_2(fake_model, tmp_path, capsys, monkeypatch, option):
    monkeypatch.chdir(tmp_path)  # an empty path would mean this folder
    (tmp_path / "a.txt").write_text("An article that must not be indexed from the current folder.\n")
    with pytest.raises(SystemExit) as e:
        cli.main([option, "", "index"])
    assert e.value.code == 2
    assert option in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize(
    "args",
    [
        ["--sample", "-1"],
        ["--sample", "0"],
        ["--calibrate", "-5"],
        ["--calibrate", "0"],
        ["--dev-repeat", "0"],
        ["--dev-repeat", "-3"],
        ["--sample", "many"],
    ],
)
def test_eval_numeric_arguments_out_of_range_exit_2(fake_model, tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert args[0] in err and args[1] in err


def test_unexpected_error_is_one_line_and_exit_1(fake_cli, capsys, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(fake_cli, "answer", broken)
    assert cli.main(["ask", "Who plays Irving?"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "RuntimeError" in line and "something nobody planned for" in line


def test_unexpected_error_with_verbose_logs_the_traceback(fake_cli, capsys, monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(fake_cli, "answer", broken)
    assert cli.main(["-v", "ask", "Who plays Irving?"]) == 1
    assert "something nobody planned for" in capsys.readouterr().err
    assert any(r.exc_info for r in caplog.records), "the traceback is logged with -v"


def test_os_error_from_the_library_is_one_line(fake_cli, capsys, monkeypatch):
    def broken(*a, **k):
        raise OSError(28, "No space left on device", "/somewhere/index")

    monkeypatch.setattr(fake_cli, "build_index", broken)
    assert cli.main(["index"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and "/somewhere/index" in line


# ---------------------------------------------------------------- quiet stderr

QUIET_SCRIPT = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from conftest import FakeEmbedder
import qa.engine
qa.engine.default_embedder = lambda settings: FakeEmbedder()
from qa import cli
sys.exit(cli.main(["--corpus", {corpus!r}, "--index", {index!r}, "ask", "Who plays Irving?"]))
"""


def test_successful_ask_prints_nothing_on_stderr(seed_corpus, tmp_path):
    """A build (BM25 index, chunking) and an answer, in a fresh process as a user runs it."""
    from conftest import ROOT

    script = QUIET_SCRIPT.format(
        root=str(ROOT), tests=str(ROOT / "tests"), corpus=str(seed_corpus), index=str(tmp_path / "index")
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert proc.stderr == ""


@pytest.mark.slow
def test_successful_ask_with_the_real_model_prints_nothing_on_stderr(seed_corpus, tmp_path):
    """Loading the real model printed a 'Loading weights' bar; building printed a bm25s DEBUG line."""
    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    cmd = [sys.executable, "-m", "qa", "--corpus", str(seed_corpus), "--index", str(tmp_path / "index")]
    proc = subprocess.run(
        [*cmd, "ask", "Who plays Irving?"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "Irving" in proc.stdout
    assert proc.stderr == ""


def test_eval_refuses_to_calibrate_on_the_benchmark(fake_cli, capsys):
    """The confidence model is never fitted on the benchmark's questions."""
    assert cli.main(["eval", "--squad", "--calibrate", "50"]) == 2
    err = capsys.readouterr().err
    assert "benchmark" in err and "calibrate-reader --reader picker" in err


def test_text_output_gives_the_short_answer_and_its_citation():
    from qa.types import Answer, AnswerSpan, Citation

    quote = "Walken reveals the scene was filmed at a Utica-based station."
    cite = lambda n, start: Citation(n, "a.txt", "T", "2025-06-10", start, start + len(quote), quote)  # noqa: E731
    at = 100 + quote.index("Utica-based station")
    span = AnswerSpan("Utica-based station", "a.txt", at, at + len("Utica-based station"))
    a = Answer(
        text=f"{quote} [1] {quote} [2]",
        citations=[cite(1, 500), cite(2, 100)],
        confidence=0.9,
        abstained=False,
        span=span,
    )
    lines = cli.format_answer(a).splitlines()
    assert f"short answer: Utica-based station (in [2], characters {span.start}-{span.end})" in lines
    assert lines[-1] == "confidence: 0.90"
    picked = Answer(text=f"{quote} [1]", citations=[cite(1, 100)], confidence=0.9, abstained=False)
    assert not any(line.startswith("short answer") for line in cli.format_answer(picked).splitlines())
