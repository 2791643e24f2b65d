"""Serve the chat on http://127.0.0.1:7860: `python app.py [--host H] [--port P]`.

Builds or updates the index first (incremental), then launches the Gradio app from qa/ui.py.
Host and port also come from QA_HOST / QA_PORT. Everything stays on this machine: analytics off,
system fonts, no share link, the model loaded from disk.
"""

from __future__ import annotations

import os

# Before gradio or huggingface libraries are imported: no analytics, no version checks, no hub.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

log = logging.getLogger("app")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the question-answering chat over the articles.")
    parser.add_argument(
        "--host", default=os.environ.get("QA_HOST", "127.0.0.1"), help="address to listen on (env QA_HOST)"
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("QA_PORT", "7860")), help="port (env QA_PORT)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from qa import QAError, get_engine, ui

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
    demo = ui.build_ui(engine)
    log.info("serving on http://%s:%d", args.host, args.port)
    demo.launch(server_name=args.host, server_port=args.port, share=False, **ui.launch_kwargs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
