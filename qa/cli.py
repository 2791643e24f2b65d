"""Command line: ``python -m qa index | ask | eval``.

Exit codes: 0 success (an abstention is a success), 1 a QAError (bad corpus, corrupt index,
missing model), 2 bad usage or input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .errors import InputError, QAError
from .types import Answer


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m qa", description="Ask questions about a folder of news articles, offline."
    )
    p.add_argument("--corpus", metavar="DIR", help="corpus folder (default: $QA_CORPUS_DIR or ./corpus)")
    p.add_argument("--index", metavar="DIR", help="index folder (default: $QA_INDEX_DIR or ./index)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ix = sub.add_parser("index", help="build or update the index (only new or changed files are embedded)")
    ix.add_argument("--force", action="store_true", help="rebuild everything from scratch")
    ix.add_argument("--json", action="store_true", help="print the build report as JSON")

    ask = sub.add_parser("ask", help="answer a question with quotes and citations")
    ask.add_argument("question", help="the question (use quotes)")
    ask.add_argument("-k", type=int, default=5, help="passages to retrieve (default 5)")
    ask.add_argument("--json", action="store_true", help="print Answer.to_dict() as JSON")

    ev = sub.add_parser("eval", help="measure quality: the dev question set and the SQuAD closed-corpus benchmark")
    try:
        from .evaluation import add_arguments
    except ImportError:  # pragma: no cover - evaluation is part of the package
        add_arguments = None
    if add_arguments is not None:
        add_arguments(ev)
    return p


def format_answer(a: Answer) -> str:
    """An answer for a terminal: the extract, then the sources."""
    lines = []
    if a.query:
        lines.append(f"searched for: {a.query}")
    if a.abstained:
        lines.append("Not in the articles. " + (a.message or ""))
        if a.passages:
            lines.append("\nClosest passages (related, not an answer):")
            for p in a.passages[:3]:
                snippet = " ".join(p.text.split())[:160]
                lines.append(f"  - {p.title} ({p.date or 'undated'}, {p.source}:{p.start}-{p.end}): {snippet}…")
    else:
        lines.append(a.text)
        lines.append("")
        for c in a.citations:
            lines.append(f"[{c.number}] {c.title} — {c.date or 'undated'} — {c.source}, characters {c.start}-{c.end}")
    lines.append(f"confidence: {a.confidence:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        for noisy in ("bm25s", "sentence_transformers", "transformers", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    from . import engine as engine_mod

    try:
        eng = engine_mod.get_engine(args.corpus, args.index)
        if args.command == "index":
            report = eng.build_index(force=args.force)
            if args.json:
                print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
            else:
                print(
                    f"index {report.index_dir}: {report.documents} articles, {report.chunks} chunks; "
                    f"added {len(report.added)}, updated {len(report.updated)}, removed {len(report.removed)}, "
                    f"unchanged {len(report.unchanged)}; embedded {report.embedded_chunks} chunks in {report.seconds:.1f}s"
                )
                if report.rebuilt:
                    print(f"rebuilt from scratch: {report.rebuilt}")
                for s in report.skipped:
                    print(f"skipped {s}", file=sys.stderr)
            return 0
        if args.command == "ask":
            a = eng.answer(args.question, None, args.k)
            print(json.dumps(a.to_dict(), indent=2, ensure_ascii=False) if args.json else format_answer(a))
            return 0
        if args.command == "eval":
            from .evaluation import main as eval_main

            return eval_main(args, eng)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except QAError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
