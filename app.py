"""Serve the chat on http://127.0.0.1:7860: `python app.py [--host H] [--port P] [--read-only] [--no-auth]`.

Builds or updates the index first (incremental), then launches the Gradio app from qa/ui.py.
Host and port also come from QA_HOST / QA_PORT, read-only mode from QA_READ_ONLY=1. Everything
stays on this machine: analytics off, system fonts, no share link, the model loaded from disk.

On an address other than loopback (127.x, localhost, ::1) the app asks for a user name and
password, taken from QA_AUTH="user:password" and/or QA_AUTH_FILE (a file of user:password lines),
never from the command line; without them it refuses to start (exit code 2) unless --no-auth says
to serve it to anyone who can reach it.
"""

from __future__ import annotations

import os

# Before gradio or huggingface libraries are imported: no analytics, no version checks, no hub.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402

log = logging.getLogger("app")
SWITCH_INTERVAL_S = 0.0005  # see serve()

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class StartupError(Exception):
    """A setting that keeps the app from starting: reported as one line, exit code 2."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 65535, not {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 1 to 65535, not {port}")
    return port


def parse_args(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> argparse.Namespace:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        description="Serve the question-answering chat over the articles.",
        epilog="Credentials for a non-loopback address come from QA_AUTH=user:password or QA_AUTH_FILE "
        "(lines user:password), never from the command line.",
    )
    parser.add_argument("--host", default=env.get("QA_HOST", "127.0.0.1"), help="address to listen on (env QA_HOST)")
    parser.add_argument("--port", type=_port, default=env.get("QA_PORT", "7860"), help="port (env QA_PORT)")
    read_only = env.get("QA_READ_ONLY", "").strip().lower()
    if read_only not in _TRUE + _FALSE:
        parser.error(f"QA_READ_ONLY must be 1 or 0 (true/false, yes/no, on/off), not {read_only[:40]!r}")
    parser.add_argument(
        "--read-only",
        action="store_true",
        default=read_only in _TRUE,
        help="no uploads: the upload control is left out and upload requests are refused (env QA_READ_ONLY=1)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve a non-loopback address without asking for a password (anyone who can reach it can use it)",
    )
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _credential(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    user = user.strip()
    if not sep or not user or not password:
        raise StartupError(f"{where} must be user:password (a user name, a colon, a password that is not empty)")
    return user, password


def credentials(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(user, password) pairs from QA_AUTH and from the lines of QA_AUTH_FILE (blank lines and
    lines starting with # are skipped). Raises StartupError, without showing any password."""
    pairs = []
    if env.get("QA_AUTH"):
        pairs.append(_credential(env["QA_AUTH"], "QA_AUTH"))
    path = env.get("QA_AUTH_FILE", "")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or type(e).__name__
            raise StartupError(f"cannot read QA_AUTH_FILE {path}: {reason}") from None
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                pairs.append(_credential(line, f"QA_AUTH_FILE {path} line {n}"))
    return pairs


def auth_for(args: argparse.Namespace, env: Mapping[str, str]) -> list[tuple[str, str]] | None:
    """The credentials to ask for, or None for an open app. Raises StartupError when a
    non-loopback address would be served open without an explicit --no-auth."""
    if args.no_auth:
        return None
    pairs = credentials(env)
    if pairs:
        return pairs
    if is_loopback(args.host):
        return None
    raise StartupError(
        f"refusing to serve on {args.host} without a password: set QA_AUTH=user:password or "
        "QA_AUTH_FILE=<file of user:password lines>, or pass --no-auth to let anyone who can reach it in"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        auth = auth_for(args, os.environ)
    except StartupError as e:
        print(f"app.py: {e}", file=sys.stderr)
        return 2
    return serve(args, auth)


def _import_gradio() -> None:
    try:
        import gradio  # noqa: F401
    except Exception:  # noqa: BLE001 - the main thread's own import reports it
        pass


def serve(args: argparse.Namespace, auth: list[tuple[str, str]] | None) -> int:
    """Build or update the index, then serve the chat until interrupted."""
    # gradio's import (~2.2 s, the most of a start) runs from here on, beside importing this
    # package, the index check and the model loading (~0.5 s, much of it native code that lets go
    # of the GIL). Only gradio itself is imported there, no module of this package, so the two
    # threads never wait on each other's import locks.
    gradio_import = threading.Thread(target=_import_gradio, name="import-gradio", daemon=True)
    gradio_import.start()
    # An upload's chunking is pure Python and holds the GIL; a question's every torch, numpy or
    # FAISS call gives the GIL up and then waits the switch interval to get it back (5 ms by
    # default), so questions crawled while an upload was being chunked.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from qa import QAError, get_engine

    engine = get_engine()
    log.info("corpus %s, index %s", engine.settings.corpus_dir, engine.settings.index_dir)
    try:
        report = engine.build_index()
    except QAError as e:
        log.error("cannot build the index: %s", e)
        return 2
    log.info(
        "index: %d articles, %d chunks; added %d, updated %d, removed %d, unchanged %d, skipped %d; "
        "embedded %d chunks in %.1f s%s",
        report.documents, report.chunks, len(report.added), len(report.updated), len(report.removed),
        len(report.unchanged), len(report.skipped), report.embedded_chunks, report.seconds,
        f" (rebuilt: {report.rebuilt})" if report.rebuilt else "",
    )  # fmt: skip
    for skipped in report.skipped:
        log.warning("skipped %s", skipped)

    engine.warm_up()  # the model loads now, not on the first question
    from qa import ui  # gradio is imported by build_ui, not here

    examples = ui.example_questions(engine)  # answers a few questions: done while gradio still imports
    gradio_import.join()
    demo = ui.build_ui(engine, read_only=args.read_only, examples=examples)
    mode = [
        "read-only" if args.read_only else "uploads on",
        f"password required ({len(auth)} user{'s' if len(auth) != 1 else ''})" if auth else "no password",
    ]
    if auth is None and not is_loopback(args.host):
        log.warning("serving %s without a password (--no-auth): anyone who can reach it can use it", args.host)
    log.info("serving on http://%s:%d (%s)", args.host, args.port, ", ".join(mode))
    demo.launch(
        server_name=args.host, server_port=args.port, share=False, auth=auth, **ui.launch_kwargs(args.read_only)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
