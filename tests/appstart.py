"""Seconds from `python app.py` to the first answer over HTTP (index on disk): `python tests/appstart.py [RUNS]`.

Starts the app on a free port, polls `/gradio_api/call/answer_json` until a question is answered,
prints the time, stops it. A benchmark helper, not a test (pytest does not collect it).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Who plays Mark?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(url: str, question: str) -> str:
    """The answer's event stream for ``question``, through Gradio's HTTP API."""
    body = json.dumps({"data": [question, None]}).encode()
    req = urllib.request.Request(
        url + "/gradio_api/call/answer_json", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        event = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{url}/gradio_api/call/answer_json/{event}", timeout=60) as r:
        text = r.read().decode()
    if "event: complete" not in text:
        raise RuntimeError(text[:300])
    return text


def first_answer_seconds() -> tuple[float, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    app = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            try:
                return time.perf_counter() - t0, ask(url, QUESTION)
            except (OSError, RuntimeError, ValueError):
                if app.poll() is not None:
                    raise SystemExit(f"app.py exited with code {app.returncode}") from None
                time.sleep(0.05)
    finally:
        app.terminate()
        app.wait()


if __name__ == "__main__":
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        seconds, body = first_answer_seconds()
        print(f"first answer after {seconds:.2f} s", "(answered)" if "Scott" in body else "(unexpected answer)")
