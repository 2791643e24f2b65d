"""The layers stay a stack: answering builds on retrieval, and both on reading.features;
retrieval and the features never import answering (at module level or inside a function)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOWER = ["qa/retrieval.py", "qa/reading/features.py"]


def _imported_modules(path: Path) -> list[str]:
    """Every module an import statement anywhere in the file names, dotted, relative dots kept
    (``from .answering import x`` -> ``.answering``, ``from . import answering`` -> ``.answering``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.module:
                out.append(base)
            out.extend(f"{base.rstrip('.')}.{a.name}" if node.module else base + a.name for a in node.names)
    return out


@pytest.mark.parametrize("rel", LOWER)
def test_lower_layers_never_import_answering(rel):
    mods = _imported_modules(ROOT / rel)
    bad = [m for m in mods if "answering" in m.split(".")]
    assert not bad, f"{rel} imports {bad}: answering builds on it, so that makes an import circle"


def test_features_import_only_lower_layers():
    """reading.features sits under retrieval and answering: it may use index, lexical, settings,
    types (and numpy, the standard library), nothing else of the package."""
    allowed = {"index", "lexical", "settings", "types"}
    mods = _imported_modules(ROOT / "qa/reading/features.py")
    ours = [m for m in mods if m.startswith(".") or m.split(".")[0] == "qa"]
    bad = [m for m in ours if m.lstrip(".").removeprefix("qa.").split(".")[0] not in allowed]
    assert not bad, f"reading/features.py imports {bad}"


def _modules_loaded_by(module: str) -> list[str]:
    """The ``qa.*`` modules a fresh interpreter loads to import ``module``. The package's
    ``__init__`` (which imports the engine, hence answering) is bypassed with a bare package
    object, so only what ``module`` itself pulls in is counted."""
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('qa'); pkg.__path__ = [{str(ROOT / 'qa')!r}]; sys.modules['qa'] = pkg\n"
        f"import {module}\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('qa.'))))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_import_retrieval_does_not_load_answering():
    loaded = _modules_loaded_by("qa.retrieval")
    assert "qa.reading.features" in loaded
    assert "qa.answering" not in loaded, loaded


def test_features_load_neither_retrieval_nor_answering():
    loaded = _modules_loaded_by("qa.reading.features")
    assert "qa.retrieval" not in loaded and "qa.answering" not in loaded, loaded


def test_answering_re_exports_moved_names():
    from qa import answering
    from qa.reading import features

    for name in ("TermSet", "quotable", "question_terms", "sentence_features", "sentence_score", "coverage"):
        assert getattr(answering, name) is getattr(features, name)
