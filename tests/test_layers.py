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
    """reading.features sits under retrieval and answering: it may use corpus, index, lexical, settings,
    types (and numpy, the standard library), nothing else of the package."""
    allowed = {"corpus", "index", "lexical", "settings", "types"}
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


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(importer: str, is_package: bool, name: str, known: set[str]) -> str | None:
    """The package module an import names (the longest known prefix), or None if not ours."""
    if name.startswith("."):
        level = len(name) - len(name.lstrip("."))
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        name = ".".join(base + ([name.lstrip(".")] if name.lstrip(".") else []))
    parts = name.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return None


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (module level or in a function; not
    under ``if TYPE_CHECKING``). A package's ``__init__`` counts as importing nothing of its own
    subpackages' parents (``qa`` re-exports the API and is left out as a target)."""
    files = sorted((ROOT / "qa").rglob("*.py"))
    known = {_module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        me = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                skip.update(id(n) for n in ast.walk(node))
        targets = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names = [f"{base}.{a.name}" if node.module else base + a.name for a in node.names]
            for n in names:
                target = _resolve(me, path.name == "__init__.py", n, known)
                if target and target not in (me, "qa"):
                    targets.add(target)
        graph[me] = targets
    return graph


def test_no_import_circles():
    """No module imports (directly or through others) a module that imports it back, lazy
    imports inside functions included: the stages form layers."""
    graph = _import_graph()
    assert len(graph) > 30 and "qa.stores.faiss_dense" in graph["qa.index"]
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
