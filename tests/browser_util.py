"""Helpers for the tests that run `python app.py` as a subprocess (API and browser tiers)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 180  # model load + first index build on a slow machine
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def import_app() -> ModuleType:
    """app.py as a module (it sits at the repository root, which need not be on sys.path)."""
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_seed_corpus(dst: Path) -> Path:
    shutil.copytree(ROOT / "corpus", dst)
    return dst


@contextmanager
def running_app(
    corpus_dir: Path,
    index_dir: Path,
    log_path: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """`python app.py [args]` on a free port over these folders, with these extra environment
    variables; yields its URL, terminates it at the end."""
    port = free_port()
    full_env = dict(os.environ, QA_CORPUS_DIR=str(corpus_dir), QA_INDEX_DIR=str(index_dir), QA_PORT=str(port))
    full_env["NO_PROXY"] = full_env["no_proxy"] = "127.0.0.1,localhost"
    for name in ("QA_HOST", "QA_AUTH", "QA_AUTH_FILE", "QA_READ_ONLY"):
        full_env.pop(name, None)
    full_env.update(env or {})
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, str(ROOT / "app.py"), *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=log)
        try:
            _wait_until_up(url, proc, log_path)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_up(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            with _DIRECT.open(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"app.py did not answer at {url} in {STARTUP_SECONDS} s:\n{log_path.read_text(errors='replace')[-3000:]}"
    )
