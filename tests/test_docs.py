"""The README documents every setting (datasette's test_docs habit) and the commands CI runs."""

from pathlib import Path

import pytest

from qa.settings import describe

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [n for n, _, _ in describe()])
def test_every_setting_is_documented(name):
    assert f"`{name}`" in README, f"setting {name} is missing from the README's settings table"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in README and "\nmake test\n" in ci


def test_seed_corpus_is_byte_identical_to_shared():
    shared = ROOT.parent / "shared" / "corpus"
    if not shared.is_dir():
        pytest.skip("../shared/corpus not present")
    for f in shared.glob("*.txt"):
        assert (ROOT / "corpus" / f.name).read_bytes() == f.read_bytes()
