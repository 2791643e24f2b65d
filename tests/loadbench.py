"""Load and fault bench for the chat server (local only, bounded). Not collected by pytest.

    .venv/bin/python tests/loadbench.py [--clients 20] [--questions 10] [--uploads 5]
        [--upload-kind text|word|mixed] [--upload-bytes 1000000] [--port 7871]
        [--timeout-s 900] [--out artifacts/loadbench.json]

What it does:

1. copies the seed corpus (``corpus/``) to a temp folder and starts ``python app.py`` on
   127.0.0.1 with ``QA_CORPUS_DIR`` / ``QA_INDEX_DIR`` pointing at temp folders (the real model:
   startup takes about 20 s), and waits until it answers;
2. one gradio_client client asks the question list once: the reference answers;
3. N clients (threads, one ``gradio_client.Client`` each) ask the list concurrently through
   ``/answer_json`` while M articles are uploaded through the app's upload path, one after the
   other; "text" uploads are news-like paragraphs (SQuAD contexts, shuffled with --seed, under a
   date header), "word" uploads are one single word of random letters, "mixed" alternates;
4. the same client asks the list again after the uploads (second reference);
5. samples the server's RSS (itself and its children, from /proc) every 0.5 s throughout.

It reports errors, latency p50/p95/max (overall and for questions asked while an upload was in
progress), answers that differ from the single-client references (answer text, citations and
abstention compared; an answer may match the reference taken before or the one taken after the
uploads, since new articles can change rankings), upload durations, and RSS before / peak /
after. It prints a table, writes JSON to --out and exits 0 when every target is met
(0 errors, 0 differing answers, p95 during uploads <= --p95-target-s, RSS growth <= --rss-target-mb),
1 when one is missed, 2 when the bench itself could not run.

Uploads: the upload button's event is private in the Gradio API (gradio_client refuses it), so
unless the app exposes a public upload endpoint (one whose name contains "upload", taking a
file), the bench does what the browser does: POST /gradio_api/upload, then
/gradio_api/queue/join with the upload event's fn_index, reading the result from
/gradio_api/queue/data.

Every request has a timeout, the whole run has --timeout-s, and the server (its whole process
group) is killed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEV_SET = ROOT.parent / "shared" / "eval" / "severance_dev.jsonl"
SQUAD = ROOT.parent / "shared" / "eval" / "squad" / "dev-v1.1.json"
HOST = "127.0.0.1"  # loopback only, never anything else
EXTRA_UNANSWERABLE = [
    "What is the capital of France?",
    "How many moons does Jupiter have?",
    "Who won the 1998 World Cup final?",
]

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class BenchError(Exception):
    """The bench could not run (setup problem): exit code 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=20, help="concurrent gradio_client clients (default 20)")
    p.add_argument("--questions", type=int, default=10, help="questions each client asks (default 10)")
    p.add_argument("--uploads", type=int, default=5, help="articles uploaded during the run (default 5)")
    p.add_argument("--upload-kind", choices=["text", "word", "mixed"], default="mixed", help="default: mixed")
    p.add_argument("--upload-bytes", type=int, default=1_000_000, help="size of each upload (default 1,000,000)")
    p.add_argument("--port", type=int, default=7871, help="port of the server started on 127.0.0.1 (default 7871)")
    p.add_argument("--timeout-s", type=float, default=900, help="limit for the whole run (default 900)")
    p.add_argument("--request-timeout-s", type=float, default=120, help="limit for one question (default 120)")
    p.add_argument("--upload-timeout-s", type=float, default=600, help="limit for one upload (default 600)")
    p.add_argument("--startup-timeout-s", type=float, default=300, help="limit for the server start (default 300)")
    p.add_argument("--sample-s", type=float, default=0.5, help="RSS sampling period (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the question order and upload texts")
    p.add_argument("--p95-target-s", type=float, default=2.0, help="target: p95 of questions during uploads")
    p.add_argument("--rss-target-mb", type=float, default=200.0, help="target: peak RSS growth of the server")
    p.add_argument("--out", default="artifacts/loadbench.json", help="JSON report (default artifacts/loadbench.json)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp corpus, index and server log")
    args = p.parse_args(argv)
    for name in ("clients", "questions", "port"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.uploads < 0 or args.upload_bytes < 1 or args.timeout_s <= 0:
        p.error("--uploads must be >= 0, --upload-bytes >= 1 and --timeout-s > 0")
    return args


# ---------------------------------------------------------------- inputs


def question_list(n: int, seed: int) -> list[str]:
    """n questions: the dev set's answerable single-turn ones, its unanswerable ones and a few more."""
    answerable, unanswerable = [], list(EXTRA_UNANSWERABLE)
    if DEV_SET.exists():
        for line in DEV_SET.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if "question" not in row:
                continue
            (answerable if row.get("answerable") else unanswerable).append(row["question"])
    if not answerable:
        answerable = ["Who plays Irving?", "Who directed Severance?"]
    rng = random.Random(seed)
    rng.shuffle(answerable)
    rng.shuffle(unanswerable)
    n_un = max(1, n // 4) if n > 1 else 0
    pool = answerable[: n - n_un] + unanswerable[:n_un]
    while len(pool) < n:
        pool.append((answerable + unanswerable)[len(pool) % (len(answerable) + len(unanswerable))])
    rng.shuffle(pool)
    return pool[:n]


def _sentences(seed: int) -> list[str]:
    """News-like sentences on other topics than the seed articles (so uploads rarely change their answers)."""
    if SQUAD.exists():
        data = json.loads(SQUAD.read_text(encoding="utf-8"))
        out = [
            s.strip()
            for art in data["data"]
            for par in art["paragraphs"]
            for s in re.split(r"(?<=[.!?])\s+", par["context"])
            if 30 <= len(s.strip()) <= 400
        ]
    else:
        print("note: no SQuAD file; upload texts are made of the seed articles' sentences", file=sys.stderr)
        out = [
            s.strip()
            for p in sorted((ROOT / "corpus").glob("*.txt"))
            for s in re.split(r"(?<=[.!?])\s+", p.read_text(encoding="utf-8"))
            if 30 <= len(s.strip()) <= 400
        ]
    random.Random(seed).shuffle(out)
    return out


def make_upload(kind: str, size: int, i: int, seed: int, sentences: list[str]) -> tuple[str, bytes]:
    """(file name, content of exactly about ``size`` bytes)."""
    rng = random.Random(seed * 1000 + i)
    if kind == "word":
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(size))
        return f"loadbench-{i:02d}-word.txt", word.encode("ascii")
    head = f"date 2025-0{1 + i % 9}-1{i % 10}\n# Load bench article {i}\n\n"
    parts, total, para = [head], len(head.encode()), []
    while total < size:
        s = sentences[rng.randrange(len(sentences))]
        para.append(s)
        total += len(s.encode()) + 1
        if len(para) >= rng.randint(3, 7):
            parts.append(" ".join(para) + "\n\n")
            para = []
    if para:
        parts.append(" ".join(para) + "\n")
    data = "".join(parts).encode("utf-8")
    if len(data) > size:  # cut at the last sentence end that fits
        cut = data.rfind(b". ", 0, size - 1)
        data = data[: cut + 1] + b"\n" if cut > len(head) else data[:size]
    return f"loadbench-{i:02d}-text.txt", data


# ---------------------------------------------------------------- the server


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no obstacle
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_mb(pid: int) -> float:
    """VmRSS of the process and its children, in MB (10**6 bytes)."""
    total_kb = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except OSError:
            continue
    return total_kb * 1024 / 1e6


class Server:
    def __init__(self, port: int, tmp: Path) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}/"
        self.tmp = tmp
        self.log_path = tmp / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float) -> float:
        if not port_free(self.port):
            raise BenchError(f"port {self.port} on {HOST} is in use; pick another with --port")
        corpus = self.tmp / "corpus"
        shutil.copytree(ROOT / "corpus", corpus)
        env = {
            **os.environ,
            "QA_CORPUS_DIR": str(corpus),
            "QA_INDEX_DIR": str(self.tmp / "index"),
            "QA_HOST": HOST,
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        t0 = time.monotonic()
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--host", HOST, "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() kills all of it
        )
        import httpx

        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"the server exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() - t0 > timeout_s:
                raise BenchError(f"the server did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")
            try:
                r = httpx.get(self.url + "gradio_api/info", timeout=5)
                if r.status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid) if self.proc and self.proc.poll() is None else 0.0

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in lines[-n:])

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.log.close()


# ---------------------------------------------------------------- clients


@dataclass
class Request:
    client: int
    question: str
    start: float  # monotonic
    seconds: float = 0.0
    ok: bool = False
    error: str = ""
    answer: dict | None = None


@dataclass
class Upload:
    name: str
    kind: str
    bytes: int
    start: float = 0.0
    seconds: float = 0.0  # until indexed (or refused)
    request_seconds: float = 0.0  # until the upload request itself answered
    accepted: bool = False
    error: str = ""
    message: str = ""


@dataclass
class Run:
    deadline: float
    requests: list[Request] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def left(self) -> float:
        return self.deadline - time.monotonic()


def new_client(url: str, timeout_s: float):
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"timeout": timeout_s})


def ask(client, cid: int, question: str, run: Run, timeout_s: float) -> Request:
    req = Request(cid, question, time.monotonic())
    limit = min(timeout_s, run.left())
    try:
        if limit <= 0:
            raise TimeoutError("the run's --timeout-s is spent")
        job = client.submit(question, None, api_name="/answer_json")
        try:
            req.answer = job.result(timeout=limit)
            req.ok = isinstance(req.answer, dict)
            if not req.ok:
                req.error = f"not a dict: {str(req.answer)[:200]}"
        except BaseException:
            job.cancel()
            raise
    except Exception as e:  # every failure is recorded, none stops the bench
        req.error = f"{type(e).__name__}: {str(e)[:300]}" + (
            f" (after {limit:.0f} s)" if "Timeout" in type(e).__name__ else ""
        )
    req.seconds = time.monotonic() - req.start
    with run.lock:
        run.requests.append(req)
    return req


def client_thread(url: str, cid: int, questions: list[str], run: Run, timeout_s: float, barrier) -> None:
    try:
        client = new_client(url, timeout_s)
    except Exception as e:
        with run.lock:
            run.requests.append(Request(cid, "(connect)", time.monotonic(), error=f"{type(e).__name__}: {e}"[:300]))
        barrier_wait(barrier)
        return
    barrier_wait(barrier)
    for q in questions:
        if run.stop.is_set() or run.left() <= 0:
            break
        ask(client, cid, q, run, timeout_s)


def barrier_wait(barrier) -> None:
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass


def fingerprint(answer: dict | None) -> Any:
    """What must be identical across clients: text, citations (source, offsets, quote), abstention."""
    if not isinstance(answer, dict):
        return None
    cites = tuple(
        (c.get("number"), c.get("source"), c.get("start"), c.get("end"), c.get("quote"))
        for c in answer.get("citations") or []
    )
    return (answer.get("text"), cites, answer.get("abstained"))


# ---------------------------------------------------------------- uploads


def _strip_tags(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", s)).strip()


class Uploader:
    """Uploads files through a public upload endpoint if the app has one, else the browser's way,
    and waits until the article is indexed (the app may index uploads in the background)."""

    def __init__(self, url: str, timeout_s: float, index_dir: Path) -> None:
        import httpx

        self.url = url
        self.index_dir = index_dir
        self.http = httpx.Client(base_url=url, timeout=timeout_s)
        self.client = new_client(url, timeout_s)
        api = self.client.view_api(print_info=False, return_format="dict") or {}
        named = list((api.get("named_endpoints") or {}).keys())
        self.endpoint = next((n for n in named if "upload" in n.lower()), None)
        self.fn_index = self.trigger_id = self.tick_index = None
        config = self.http.get("config").json()
        for dep in config.get("dependencies", []):
            for target in dep.get("targets") or []:
                if not (isinstance(target, (list, tuple)) and len(target) == 2):
                    continue
                if target[1] == "upload" and self.fn_index is None:
                    self.fn_index, self.trigger_id = dep["id"], target[0]
                elif target[1] == "tick" and self.tick_index is None:
                    self.tick_index = dep["id"]
        if self.endpoint is None and self.fn_index is None:
            raise BenchError(
                "the app has no upload endpoint and no upload event: expected a public API endpoint "
                "named like /upload taking a file, or an UploadButton with an upload event"
            )

    @property
    def how(self) -> str:
        if self.endpoint:
            return f"public API endpoint {self.endpoint}"
        return f"browser path: /gradio_api/upload + queue/join fn_index={self.fn_index} (private upload event)"

    def upload(self, up: Upload, data: bytes, folder: Path, timeout_s: float) -> None:
        path = folder / up.name
        path.write_bytes(data)
        up.start = time.monotonic()
        session = secrets.token_hex(8)
        try:
            if self.endpoint:
                from gradio_client import handle_file

                job = self.client.submit(handle_file(str(path)), api_name=self.endpoint)
                out = job.result(timeout=timeout_s)
                html = out if isinstance(out, str) else json.dumps(out)
            else:
                html = str(
                    (self._event(session, self.fn_index, [self._file_data(path)], timeout_s, self.trigger_id) or [""])[
                        0
                    ]
                )
            up.request_seconds = time.monotonic() - up.start
            up.message = _strip_tags(html)[:300]
            m = re.search(r"saved as <b>([^<]+)</b>", html)
            saved = m.group(1) if m else up.name
            if "qa-upload-refused" in html:
                return
            if "qa-upload-ok" not in html:  # saved and queued: wait until it is indexed or refused
                html = self._wait_indexed(saved, session, up.start + timeout_s)
                up.message = _strip_tags(html)[:300] or up.message
            up.accepted = "qa-upload-ok" in html or self._indexed(saved)
        except Exception as e:
            up.error = f"{type(e).__name__}: {str(e)[:300]}"
        finally:
            up.seconds = time.monotonic() - up.start
            path.unlink(missing_ok=True)

    def _indexed(self, name: str) -> bool:
        """Is the article in the live index? (read from the index folder on disk)."""
        try:
            version = (self.index_dir / "CURRENT").read_text(encoding="utf-8").strip()
            manifest = json.loads((self.index_dir / version / "manifest.json").read_text(encoding="utf-8"))
            return name in manifest.get("documents", {})
        except (OSError, ValueError):
            return False

    def _wait_indexed(self, name: str, session: str, deadline: float) -> str:
        """Poll until the article is indexed or the app says it was refused; the last message (HTML)."""
        message = ""
        while time.monotonic() < deadline:
            if self._indexed(name):
                return message if "qa-upload-ok" in message else f'<div class="qa-upload-ok">{name} indexed</div>'
            if self.tick_index is not None:
                try:  # the page's status timer, in the upload's session: tells a refusal
                    out = self._event(session, self.tick_index, [None, None], min(30.0, deadline - time.monotonic()))
                    if out and len(out) > 1 and isinstance(out[1], str) and out[1]:
                        message = out[1]
                        if "qa-upload-refused" in message or "qa-upload-ok" in message:
                            return message
                except Exception:  # noqa: BLE001 - the timer is only a hint; the index folder decides
                    pass
            time.sleep(0.5)
        raise TimeoutError(f"{name} was not indexed in time")

    @staticmethod
    def _file_data(path: Path) -> dict:
        return {"path": str(path), "orig_name": path.name, "size": path.stat().st_size, "mime_type": "text/plain"}

    def _event(self, session: str, fn_index: int, data: list, timeout_s: float, trigger_id: int | None = None):
        """Run one event the way the browser does; its output data."""
        t0 = time.monotonic()
        data = list(data)
        for i, d in enumerate(data):
            if isinstance(d, dict) and "orig_name" in d:  # a file: upload it first
                with open(d["path"], "rb") as f:
                    r = self.http.post(
                        "gradio_api/upload",
                        params={"upload_id": secrets.token_hex(6)},
                        files=[("files", (d["orig_name"], f, d["mime_type"]))],
                    )
                r.raise_for_status()
                data[i] = {**d, "path": r.json()[0], "meta": {"_type": "gradio.FileData"}}
        body = {
            "data": data,
            "event_data": None,
            "fn_index": fn_index,
            "trigger_id": trigger_id,
            "session_hash": session,
        }
        r = self.http.post("gradio_api/queue/join", json=body)
        r.raise_for_status()
        event_id = r.json().get("event_id")
        left = max(1.0, timeout_s - (time.monotonic() - t0))
        with self.http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}, timeout=left) as s:
            for line in s.iter_lines():
                if time.monotonic() - t0 > timeout_s:
                    raise TimeoutError(f"no result within {timeout_s:.0f} s")
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id):
                    continue
                if msg.get("msg") == "process_completed":
                    out = msg.get("output") or {}
                    if not msg.get("success", True) or "error" in out:
                        raise RuntimeError(f"event {fn_index} failed: {str(out.get('error') or out)[:300]}")
                    return out.get("data") or []
        raise RuntimeError("the event stream ended without a result")


def uploader_thread(uploader: Uploader, uploads: list[tuple[Upload, bytes]], run: Run, folder: Path, args) -> None:
    for up, data in uploads:
        if run.stop.is_set() or run.left() <= 0:
            up.error = "not started: the run's --timeout-s is spent"
        else:
            uploader.upload(up, data, folder, min(args.upload_timeout_s, run.left()))
        with run.lock:
            run.uploads.append(up)


def sampler_thread(server: Server, run: Run, period: float, t0: float) -> None:
    while not run.stop.wait(period):
        run.rss.append((time.monotonic() - t0, server.rss_mb()))


# ---------------------------------------------------------------- report


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def latency(reqs: list[Request]) -> dict[str, Any]:
    xs = [r.seconds for r in reqs if r.ok]
    return {
        "n": len(xs),
        "p50_s": pct(xs, 50),
        "p95_s": pct(xs, 95),
        "max_s": max(xs) if xs else None,
        "mean_s": statistics.fmean(xs) if xs else None,
    }


def during_uploads(req: Request, uploads: list[Upload]) -> bool:
    end = req.start + req.seconds
    return any(u.start and req.start < u.start + u.seconds and end > u.start for u in uploads)


def fmt(x: Any, unit: str = "", nd: int = 2) -> str:
    if x is None:
        return "—"
    return f"{x:.{nd}f}{unit}" if isinstance(x, float) else f"{x}{unit}"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the bench like Ctrl-C: the server is killed in main's finally


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    run = Run(deadline=started + args.timeout_s)
    tmp = Path(tempfile.mkdtemp(prefix="qa-loadbench-"))
    server = Server(args.port, tmp)
    report: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    code = 2
    try:
        questions = question_list(args.questions, args.seed)
        print(f"starting the server on {server.url} (corpus and index in {tmp}) ...", flush=True)
        report["startup_s"] = server.start(min(args.startup_timeout_s, run.left()))
        rss_before = server.rss_mb()
        print(f"server up in {report['startup_s']:.1f} s; RSS {rss_before:.0f} MB", flush=True)
        sampler = threading.Thread(target=sampler_thread, args=(server, run, args.sample_s, started), daemon=True)
        sampler.start()

        # 1. reference answers, one client
        ref_client = new_client(server.url, args.request_timeout_s)
        ref_before = {q: ask(ref_client, -1, q, run, args.request_timeout_s) for q in questions}
        with run.lock:
            run.requests.clear()
        ref_errors = [r for r in ref_before.values() if not r.ok]
        if ref_errors:
            raise BenchError(f"the reference client got errors: {ref_errors[0].question!r}: {ref_errors[0].error}")
        rss_after_ref = server.rss_mb()

        # 2. N clients asking while M uploads happen
        sentences = _sentences(args.seed) if args.uploads and args.upload_kind != "word" else []
        kinds = [
            args.upload_kind if args.upload_kind != "mixed" else ("text", "word")[i % 2] for i in range(args.uploads)
        ]
        files = [make_upload(k, args.upload_bytes, i, args.seed, sentences) for i, k in enumerate(kinds)]
        planned = [(Upload(name, k, len(data)), data) for (name, data), k in zip(files, kinds, strict=True)]
        uploader = Uploader(server.url, args.upload_timeout_s, tmp / "index") if planned else None
        report["upload_path"] = uploader.how if uploader else ""
        barrier = threading.Barrier(args.clients + 1)
        threads = [
            threading.Thread(
                target=client_thread,
                args=(server.url, i, questions, run, args.request_timeout_s, barrier),
                daemon=True,
            )
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        barrier_wait(barrier)  # every client connected: the questions and the uploads start together
        t_load = time.monotonic()
        up_thread = None
        if uploader:
            up_thread = threading.Thread(target=uploader_thread, args=(uploader, planned, run, tmp, args), daemon=True)
            up_thread.start()
        for t in [*threads, *([up_thread] if up_thread else [])]:
            t.join(max(0.0, run.left()))
        load_s = time.monotonic() - t_load
        timed_out = any(t.is_alive() for t in threads) or bool(up_thread and up_thread.is_alive())
        if timed_out:
            run.stop.set()

        # 3. reference after the uploads
        load_requests = list(run.requests)
        ref_after = {q: ask(ref_client, -1, q, run, args.request_timeout_s) for q in questions} if not timed_out else {}
        time.sleep(max(args.sample_s, 1.0))
        rss_after = server.rss_mb()
        run.stop.set()

        # report
        errors = [r for r in load_requests if not r.ok]
        differ = []
        for r in load_requests:
            if not r.ok:
                continue
            fp = fingerprint(r.answer)
            refs = [fingerprint(ref_before[r.question].answer)]
            if r.question in ref_after and ref_after[r.question].ok:
                refs.append(fingerprint(ref_after[r.question].answer))
            if fp not in refs:
                differ.append(r)
        changed_by_uploads = [
            q
            for q in questions
            if q in ref_after and fingerprint(ref_after[q].answer) != fingerprint(ref_before[q].answer)
        ]
        uploads = sorted(run.uploads, key=lambda u: u.start or float("inf"))
        during = [r for r in load_requests if during_uploads(r, uploads)]
        upload_errors = [u for u in uploads if u.error]
        rss_peak = max([rss_before, rss_after_ref, rss_after, *(v for _, v in run.rss)])
        report.update(
            {
                "questions": questions,
                "load_seconds": load_s,
                "timed_out": timed_out,
                "requests": len(load_requests),
                "errors": {
                    "count": len(errors) + len(upload_errors),
                    "questions": len(errors),
                    "uploads": len(upload_errors),
                    "first": [f"client {r.client}: {r.question!r}: {r.error}" for r in errors[:5]]
                    + [f"upload {u.name}: {u.error}" for u in upload_errors[:5]],
                },
                "latency": {"all": latency(load_requests), "during_uploads": latency(during)},
                "timeline": {  # seconds from the start of the load: when each question and upload began, and took
                    "questions": sorted(
                        (round(r.start - t_load, 3), round(r.seconds, 3), r.client) for r in load_requests
                    ),
                    "uploads": [(round(u.start - t_load, 3), round(u.seconds, 3), u.name) for u in uploads if u.start],
                },
                "differing_answers": {
                    "count": len(differ),
                    "first": [
                        {
                            "client": r.client,
                            "question": r.question,
                            "got": fingerprint(r.answer)[0],
                            "reference": fingerprint(ref_before[r.question].answer)[0],
                        }
                        for r in differ[:5]
                    ],
                    "questions_changed_by_uploads": changed_by_uploads,
                },
                "uploads": [
                    {
                        "name": u.name,
                        "kind": u.kind,
                        "bytes": u.bytes,
                        "seconds": u.seconds,
                        "request_seconds": u.request_seconds,
                        "accepted": u.accepted,
                        "message": u.message,
                        "error": u.error,
                    }
                    for u in uploads
                ],
                "rss_mb": {
                    "before": rss_before,
                    "after_reference": rss_after_ref,
                    "peak": rss_peak,
                    "after": rss_after,
                    "growth_peak": rss_peak - rss_before,
                    "growth_after": rss_after - rss_before,
                    "samples": [(round(t, 2), round(v, 1)) for t, v in run.rss],
                },
            }
        )
        p95_during = report["latency"]["during_uploads"]["p95_s"]
        targets = {
            "0 errors": report["errors"]["count"] == 0 and not timed_out,
            "answers identical to a single client": not differ,
            f"p95 during uploads <= {args.p95_target_s:g} s": (p95_during is None and not uploads)
            or (p95_during is not None and p95_during <= args.p95_target_s),
            f"RSS growth <= {args.rss_target_mb:g} MB": rss_peak - rss_before <= args.rss_target_mb,
        }
        report["targets"] = targets
        print_table(report, args, targets)
        code = 0 if all(targets.values()) else 1
    except BenchError as e:
        report["bench_error"] = str(e)
        print(f"loadbench: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        report["bench_error"] = "interrupted"
        print("loadbench: interrupted; stopping the server", file=sys.stderr)
        code = 130
    finally:
        run.stop.set()
        server.stop()
        signal.signal(signal.SIGTERM, old_term)
        report["total_seconds"] = time.monotonic() - started
        if code != 0 and server.log_path.exists():
            report["server_log_tail"] = server.log_tail(40)
        out = Path(args.out)
        if not out.is_absolute():
            out = ROOT / out
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
            print(f"report: {out}")
        except OSError as e:
            print(f"loadbench: cannot write {out}: {e}", file=sys.stderr)
        if args.keep_tmp:
            print(f"kept {tmp} (server log: {server.log_path})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code


def print_table(report: dict[str, Any], args: argparse.Namespace, targets: dict[str, bool]) -> None:
    lat, rss, err = report["latency"], report["rss_mb"], report["errors"]
    print()
    print(
        f"{args.clients} clients x {args.questions} questions, {args.uploads} uploads "
        f"({args.upload_kind}, {args.upload_bytes:,} bytes) in {report['load_seconds']:.1f} s"
        + (" — TIMED OUT" if report["timed_out"] else "")
    )
    if report.get("upload_path"):
        print(f"uploads via {report['upload_path']}")
    print(f"{'latency':<22}{'n':>6}{'p50':>9}{'p95':>9}{'max':>9}")
    for name, key in (("all questions", "all"), ("during uploads", "during_uploads")):
        v = lat[key]
        print(f"{name:<22}{v['n']:>6}{fmt(v['p50_s'], 's'):>9}{fmt(v['p95_s'], 's'):>9}{fmt(v['max_s'], 's'):>9}")
    print(f"errors: {err['count']} ({err['questions']} questions, {err['uploads']} uploads)")
    for line in err["first"]:
        print(f"  {line}")
    d = report["differing_answers"]
    print(f"answers differing from the single-client references: {d['count']}")
    for x in d["first"]:
        print(f"  client {x['client']}: {x['question']!r}: {str(x['got'])[:80]!r} vs {str(x['reference'])[:80]!r}")
    if d["questions_changed_by_uploads"]:
        print(f"  (answers changed by the uploads, before vs after: {d['questions_changed_by_uploads']})")
    for u in report["uploads"]:
        state = "accepted" if u["accepted"] else ("ERROR " + u["error"] if u["error"] else "refused")
        print(
            f"upload {u['name']} ({u['bytes']:,} bytes): {u['seconds']:.1f} s to indexed "
            f"({u['request_seconds']:.1f} s to the upload's reply), {state}"
            + (f" — {u['message'][:120]}" if u["message"] else "")
        )
    print(
        f"server RSS MB: before {rss['before']:.0f}, after reference {rss['after_reference']:.0f}, "
        f"peak {rss['peak']:.0f} (+{rss['growth_peak']:.0f}), after {rss['after']:.0f} (+{rss['growth_after']:.0f})"
    )
    for name, ok in targets.items():
        print(f"  [{'ok' if ok else 'MISSED'}] {name}")


if __name__ == "__main__":
    sys.exit(main())
