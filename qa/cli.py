"""Command line: ``python -m qa index | ask | eval | bench | train-reader | calibrate-reader | fit-rerank | train-cross-rerank |
export-embedder``.

Exit codes: 0 success (an abstention is a success), 1 a problem of the environment (bad corpus,
unusable or corrupt index, missing model, an OS error, or any unexpected error), 2 bad usage or
input, 130 interrupted. Errors are one line ``error: ...`` on stderr, never a traceback (with
``-v`` an unexpected error's traceback is logged too).

stderr stays quiet on success: warnings only (``-v``: INFO logs too); library DEBUG lines never.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .errors import InputError, QAError, shorten
from .types import Answer

log = logging.getLogger(__name__)
# Libraries whose INFO logs are noise for a command-line user (shown with -v).
NOISY_LOGGERS = (
    "bm25s",
    "sentence_transformers",
    "transformers",
    "huggingface_hub",
    "httpx",
    "faiss",
    "pymilvus",
    "milvus_lite",
    "ray",
    "pypdf",
)
CHATTY_LOGGERS = ("trafilatura", "htmldate", "courlan")


def _folder(value: str) -> str:
    """argparse type of --corpus / --index: an empty path would silently mean the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path is not a folder; name one")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ``error: ...`` (exit 2), not the usage text;
    ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see: {self.prog} --help)"
        self.exit(2, f"error: {shorten(message, 300 - len(hint))}{hint}\n")


def _build(eng, args):
    """``python -m qa index``: the engine's build, its new chunks embedded by Ray when asked."""
    if args.ray is None:
        return eng.build_index(force=args.force, load=False)
    from .embedders.ray_embed import RayEmbedder

    ray_embedder = RayEmbedder(eng.embedder, address=None if args.ray == "local" else args.ray)
    try:
        return eng.build_index(force=args.force, load=False, embedder=ray_embedder)
    finally:
        ray_embedder.close()


def _add(eng, args) -> int:
    """``python -m qa add``: convert and write the articles (all or nothing), then index them."""
    from .ingest.add import add

    s = eng.settings
    options = {"timeout": s.fetch_timeout, "max_bytes": s.fetch_max_bytes, "allow_private": s.fetch_private}
    report = add(args.inputs, s.corpus_dir, follow_links=args.follow_links, fetch_options=options)
    build = None if args.no_index or not report.added else eng.build_index(load=False)
    if args.json:
        out = {"added": report.added, "duplicates": [list(d) for d in report.duplicates]}
        out["index"] = build.to_dict() if build is not None else None
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    for name in report.added:
        print(f"added {name}")
    for given, twin in report.duplicates:
        print(f"duplicate, not added: {given} (already in the corpus as {twin})")
    if build is not None:
        print(
            f"index {build.index_dir}: {build.chunks} chunks; embedded {build.embedded_chunks} in {build.seconds:.1f}s"
        )
    return 0


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m qa", description="Ask questions about a folder of news articles, offline.")
    p.add_argument("--corpus", metavar="DIR", type=_folder, help="corpus folder (default: $QA_CORPUS_DIR or ./corpus)")
    p.add_argument("--index", metavar="DIR", type=_folder, help="index folder (default: $QA_INDEX_DIR or ./index)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    p.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a setting for this run (over its QA_NAME variable), e.g. --set store=milvus; repeatable",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ix = sub.add_parser("index", help="build or update the index (only new or changed files are embedded)")
    ix.add_argument("--force", action="store_true", help="rebuild everything from scratch")
    ix.add_argument("--json", action="store_true", help="print the build report as JSON")
    ix.add_argument(
        "--verify", action="store_true", help="check every byte of the index against its sha256 (builds nothing)"
    )
    ix.add_argument(
        "--ray",
        metavar="ADDRESS",
        nargs="?",
        const="local",
        help="embed the new chunks with Ray Data over a pool of embedder actors: on a local Ray (no ADDRESS) or the "
        "cluster at ADDRESS (ray://head:10001, or auto); needs pip install -e '.[ray]'",
    )

    add = sub.add_parser(
        "add",
        help="add web pages, RSS/Atom feeds, PDFs or text files (paths or http(s) URLs) to the corpus, then index",
    )
    add.add_argument("inputs", nargs="+", metavar="PATH|URL", help="files or http(s) URLs")
    add.add_argument(
        "--follow-links",
        action="store_true",
        help="feeds: fetch each entry's page for its full text (never by default)",
    )
    add.add_argument("--no-index", action="store_true", help="write the articles but do not update the index")
    add.add_argument("--json", action="store_true", help="print what was added as JSON")

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

    tr = sub.add_parser(
        "train-reader",
        help="train the span reader on SQuAD v1.1 train (../shared/data/squad-train); seeded, resumable",
    )
    from .reading.train import add_arguments as train_arguments

    train_arguments(tr)

    bench = sub.add_parser(
        "bench",
        help="speed and size at 10k, 50k and 200k chunks (synthetic corpora of SQuAD train paragraphs); prints a table",
    )
    from .bench import add_arguments as bench_arguments

    bench_arguments(bench)

    sub.add_parser(
        "export-embedder",
        help="export the packaged model as the int8 ONNX graph the default embedder runs "
        "(development: needs torch and onnx, pip install -e '.[dev]')",
    )

    cal = sub.add_parser(
        "calibrate-reader",
        help="fit the trained reader's confidence model on held-out SQuAD train articles (prints it)",
    )
    from .reading.calibrate import add_arguments as calibrate_arguments

    calibrate_arguments(cal)

    fit = sub.add_parser(
        "fit-rerank",
        help="fit the learned rerank of the fused results (rerank_model) on SQuAD train articles (prints it)",
    )
    from .rerank_fit import add_arguments as rerank_arguments

    rerank_arguments(fit)

    cross = sub.add_parser(
        "train-cross-rerank",
        help="train the cross-encoder that reorders the results near the top-k edge, on SQuAD train articles",
    )
    from .rerankers.train import add_arguments as cross_arguments

    cross_arguments(cross)
    return p


def format_answer(a: Answer) -> str:
    """An answer for a terminal: the extract, then the sources."""
    lines = []
    if a.query:
        lines.append(f"searched for: {a.query}")
    if a.filter:
        lines.append(f"searched in: {a.filter}")
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
            where = f"{c.source}, characters {c.start}-{c.end}" + (f", p. {c.page}" if c.page else "")
            lines.append(
                f"[{c.number}] {c.title} — "
                + (f"{c.outlet} — " if c.outlet else "")
                + f"{c.date or 'undated'} — {where}"
                + (f" — {c.url}" if c.url else "")
            )
        if a.span is not None:
            n = next(
                (
                    c.number
                    for c in a.citations
                    if c.source == a.span.source and c.start <= a.span.start and a.span.end <= c.end
                ),
                None,
            )
            where = f"in [{n}], " if n else ""
            lines.append(f"short answer: {a.span.text} ({where}characters {a.span.start}-{a.span.end})")
    lines.append(f"confidence: {a.confidence:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return _run(args)
    except InputError as e:
        return _fail(e, 2)
    except QAError as e:
        return _fail(e, 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the library turns the ones it expects into QAErrors; a last net
        return _fail(e, 1)
    except Exception as e:  # noqa: BLE001 - the last resort: one line, never a traceback
        if args.verbose:
            log.error("unexpected error", exc_info=True)
        return _fail(f"unexpected {type(e).__name__}: {e}", 1)


def _run(args: argparse.Namespace) -> int:
    if args.command == "train-reader":
        from .reading.train import main as train_main

        return train_main(args)
    if args.command == "bench":
        from .bench import main as bench_main

        return bench_main(args)
    if args.command == "export-embedder":
        from .embedders.onnx import WEIGHTS_DIR, export

        card = export()
        entry = card["files"]["int8"]
        print(f"wrote {WEIGHTS_DIR / entry['file']} ({entry['bytes']:,} bytes, sha256 {entry['sha256'][:12]}…)")
        return 0
    from . import engine as engine_mod
    from .settings import Settings

    overrides = dict(Settings.parse(a) for a in args.set)
    corpus, index = overrides.pop("corpus_dir", args.corpus), overrides.pop("index_dir", args.index)
    eng = engine_mod.get_engine(corpus, index, **overrides)
    if args.command == "index" and args.verify:
        done = eng.verify_index()
        print(
            f"index {eng.settings.index_dir}: verified {done['files']} files ({done['bytes'] / 1e6:,.1f} MB) of "
            f"{done['segments']} segment(s), {done['chunks']} chunks, in {done['seconds']:.1f}s: all match their sha256"
        )
        return 0
    if args.command == "index":
        report = _build(eng, args)
        if args.json:
            print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        else:
            print(
                f"index {report.index_dir}: {report.documents} articles, {report.chunks} chunks; "
                f"added {len(report.added)}, updated {len(report.updated)}, removed {len(report.removed)}, "
                f"unchanged {len(report.unchanged)}; embedded {report.embedded_chunks} chunks in {report.seconds:.1f}s; "
                f"{report.segments} segment{'s' if report.segments != 1 else ''}, search: "
                + {"flat": "exact (flat)", "hnsw": "HNSW", "flat+hnsw": "HNSW and exact"}.get(
                    report.dense, report.dense
                )
            )
            if report.rebuilt:
                print(f"rebuilt from scratch: {report.rebuilt}")
            for s in report.skipped:
                print(f"skipped {s}", file=sys.stderr)
        return 0
    if args.command == "add":
        return _add(eng, args)
    if args.command == "ask":
        a = eng.answer(args.question, None, args.k)
        print(json.dumps(a.to_dict(), indent=2, ensure_ascii=False) if args.json else format_answer(a))
        return 0
    if args.command == "calibrate-reader":
        from .reading.calibrate import main as calibrate_main

        return calibrate_main(args, eng)
    if args.command == "fit-rerank":
        from .rerank_fit import main as rerank_main

        return rerank_main(args, eng)
    if args.command == "train-cross-rerank":
        from .rerankers.train import main as cross_main

        return cross_main(args, eng)
    if args.command == "eval":
        from .evaluation import main as eval_main

        return eval_main(args, eng)
    return 2


def _fail(error: object, code: int) -> int:
    """One line on stderr (line breaks joined, at most about 300 characters), and the exit code."""
    print("error: " + shorten(error, 300), file=sys.stderr)
    return code


def _configure_logging(verbose: bool) -> None:
    """Warnings (and INFO with -v) to stderr. The handler's own level drops everything below it,
    whatever level a library sets on its logger (bm25s sets DEBUG on import)."""
    level = logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if not verbose:
        for noisy in NOISY_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        for chatty in CHATTY_LOGGERS:  # their warnings repeat what our error says ("discarding data: None")
            logging.getLogger(chatty).setLevel(logging.ERROR)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
