"""Build, update, save and load the index: FAISS + BM25 + chunk table + manifest.

Layout of ``index/``::

    CURRENT                 name of the live version folder (replaced atomically)
    v-<time>-<pid>/         one complete version
        manifest.json       format version, model id, dimension, chunking settings, per-file
                            content hashes, and the sha256 of every other file here
        chunks.jsonl        one chunk per line: source, start, end, text, sentence spans
        dense.faiss         IndexFlatIP over normalized chunk vectors (row i = chunk i)
        sentences.npy       normalized sentence vectors, chunk by chunk, sentence by sentence
        terms.json          document frequency of each stemmed term (for answer scoring)
        bm25/               bm25s index over the same chunks
    .lock                   held while a build runs

A build writes a new version folder and only then points CURRENT at it, so a build killed at
any moment leaves the previous version loadable. Unchanged files (same sha256) reuse their
chunks and vectors: nothing is embedded twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import lexical
from .chunking import chunk_document
from .corpus import load_corpus
from .embedding import Embedder
from .errors import IndexCorruptError, IndexStaleError
from .settings import Settings
from .types import BuildReport, Chunk, Document, Span

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"


@dataclass
class Index:
    """A loaded index, held in memory."""

    path: Path
    manifest: dict[str, Any]
    chunks: list[Chunk]
    dense: Any  # faiss.Index
    bm25: Any  # bm25s.BM25
    sentence_vectors: np.ndarray
    sentence_rows: list[int]  # first row in sentence_vectors of each chunk's sentences
    df: dict[str, int]
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def n_chunks(self) -> int:
        return len(self.chunks)

    def chunk_vectors(self, rows: list[int] | None = None) -> np.ndarray:
        if rows is None:
            return self.dense.reconstruct_n(0, self.dense.ntotal)
        return (
            np.stack([self.dense.reconstruct(int(r)) for r in rows])
            if rows
            else np.zeros((0, self.dense.d), np.float32)
        )

    def sentence_block(self, chunk_id: int) -> np.ndarray:
        first = self.sentence_rows[chunk_id]
        return self.sentence_vectors[first : first + len(self.chunks[chunk_id].sentences)]

    def document(self, source: str) -> dict[str, Any]:
        return self.documents[source]


# ---------------------------------------------------------------- loading


def current_version(index_dir: Path) -> Path | None:
    """The live version folder, or None when there is no index yet."""
    pointer = index_dir / CURRENT
    if not pointer.exists():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise IndexCorruptError(f"index pointer {str(pointer)!r} is unreadable: {e}") from e
    if not name or "/" in name or name.startswith("."):
        raise IndexCorruptError(f"index pointer {str(pointer)!r} holds {name!r}, not a version folder name")
    folder = index_dir / name
    if not folder.is_dir():
        raise IndexCorruptError(f"index pointer {str(pointer)!r} names {str(folder)!r}, which does not exist")
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexCorruptError(f"index manifest {str(path)!r} is missing or not valid JSON: {e}") from e
    if (
        not isinstance(manifest, dict)
        or "format_version" not in manifest
        or not isinstance(manifest.get("checksums"), dict)
        or not isinstance(manifest.get("documents"), dict)
    ):
        raise IndexCorruptError(f"index manifest {str(path)!r} lacks format_version, checksums or documents")
    return manifest


def check_compatible(manifest: dict[str, Any], settings: Settings, embedder: Embedder) -> None:
    """Raise IndexStaleError when the index was built another way than we would build it now."""
    expected = {
        "format_version": FORMAT_VERSION,
        "model_id": embedder.model_id,
        "dimension": embedder.dimension,
        "chunking": settings.chunking_fingerprint(),
    }
    for key, want in expected.items():
        if manifest.get(key) != want:
            raise IndexStaleError(f"index was built with {key}={manifest.get(key)!r}, now {want!r}")


def load_index(
    index_dir: str | Path, settings: Settings | None = None, embedder: Embedder | None = None
) -> Index | None:
    """The live index, verified against its checksums; None if there is none.

    Raises IndexCorruptError when any file is missing, altered or unreadable, and
    IndexStaleError (when settings and embedder are given) when it was built differently.
    """
    import faiss

    index_dir = Path(index_dir)
    folder = current_version(index_dir)
    if folder is None:
        return None
    manifest = read_manifest(folder)
    if settings is not None and embedder is not None:
        check_compatible(manifest, settings, embedder)
    for rel, want in manifest["checksums"].items():
        path = folder / rel
        if not path.is_file():
            raise IndexCorruptError(f"index file {str(path)!r} is missing")
        if _sha256(path) != want:
            raise IndexCorruptError(f"index file {str(path)!r} does not match its checksum (corrupt or altered)")
    try:
        chunks: list[Chunk] = []
        with open(folder / "chunks.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                chunks.append(
                    Chunk(
                        row["source"],
                        row["start"],
                        row["end"],
                        row["text"],
                        tuple(Span(s, e) for s, e in row["sentences"]),
                    )
                )
        dense = faiss.read_index(str(folder / "dense.faiss"))
        sentence_vectors = np.load(folder / "sentences.npy", allow_pickle=False)
        terms = json.loads((folder / "terms.json").read_text(encoding="utf-8"))
        bm25 = _load_bm25(folder / "bm25")
    except Exception as e:  # noqa: BLE001 - whatever broke, the index is not usable
        raise IndexCorruptError(f"index in {str(folder)!r} could not be read: {type(e).__name__}: {e}") from e
    rows, n = [], 0
    for c in chunks:
        rows.append(n)
        n += len(c.sentences)
    if dense.ntotal != len(chunks) or sentence_vectors.shape[0] != n:
        raise IndexCorruptError(
            f"index in {str(folder)!r} is inconsistent: {len(chunks)} chunks, {dense.ntotal} vectors, "
            f"{sentence_vectors.shape[0]} sentence vectors for {n} sentences"
        )
    return Index(
        path=folder,
        manifest=manifest,
        chunks=chunks,
        dense=dense,
        bm25=bm25,
        sentence_vectors=sentence_vectors,
        sentence_rows=rows,
        df=terms["df"],
        documents=manifest["documents"],
    )


def _load_bm25(folder: Path):
    import bm25s

    return bm25s.BM25.load(str(folder), show_progress=False, verbosity=0)


# ---------------------------------------------------------------- building


def build_index(settings: Settings, embedder: Embedder, *, force: bool = False) -> BuildReport:
    """Bring the index in ``settings.index_dir`` up to date with ``settings.corpus_dir``.

    Incremental: only new or changed files are chunked and embedded; deleted ones are dropped.
    A stale or corrupt index is rebuilt from scratch (the reason is in the report).
    """
    t0 = time.perf_counter()
    index_dir = settings.index_path
    index_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(index_dir):
        docs, skipped = load_corpus(settings.corpus_path, settings.max_file_bytes)
        previous, rebuilt = None, ""
        if force:
            rebuilt = "forced"
        else:
            try:
                previous = load_index(index_dir, settings, embedder)
            except IndexStaleError as e:
                rebuilt = f"stale: {e}"
            except IndexCorruptError as e:
                rebuilt = f"corrupt: {e}"
            if rebuilt:
                log.warning("rebuilding the index: %s", rebuilt)

        old_docs = previous.documents if previous else {}
        by_source: dict[str, list[int]] = {}
        if previous:
            for i, c in enumerate(previous.chunks):
                by_source.setdefault(c.source, []).append(i)

        added, updated, unchanged = [], [], []
        for d in docs:
            if d.source not in old_docs:
                added.append(d.source)
            elif old_docs[d.source]["sha256"] != d.sha256:
                updated.append(d.source)
            else:
                unchanged.append(d.source)
        current = {d.source for d in docs}
        removed = sorted(s for s in old_docs if s not in current)
        report_base = dict(
            index_dir=str(index_dir),
            added=added,
            updated=updated,
            removed=removed,
            unchanged=unchanged,
            skipped=[str(s) for s in skipped],
            rebuilt=rebuilt,
        )
        if previous and not (added or updated or removed):
            return BuildReport(
                documents=len(docs), chunks=previous.n_chunks, seconds=time.perf_counter() - t0, **report_base
            )

        # Chunk and embed what is new; reuse what is not.
        fresh = [d for d in docs if d.source in set(added) | set(updated)]
        new_chunks = {
            d.source: chunk_document(
                d, embedder.count_tokens, settings.chunk_max_tokens, settings.chunk_overlap_sentences
            )
            for d in fresh
        }
        flat_new = [c for d in fresh for c in new_chunks[d.source]]
        chunk_vecs_new = embedder.embed([c.text for c in flat_new], progress=True)
        sent_texts = [c.text[s.start - c.start : s.end - c.start] for c in flat_new for s in c.sentences]
        sent_vecs_new = embedder.embed(sent_texts, progress=True)

        chunks: list[Chunk] = []
        chunk_vecs: list[np.ndarray] = []
        sent_vecs: list[np.ndarray] = []
        new_chunk_row, new_sent_row = 0, 0
        for d in docs:
            if d.source in new_chunks:
                cs = new_chunks[d.source]
                n_sent = sum(len(c.sentences) for c in cs)
                chunk_vecs.append(chunk_vecs_new[new_chunk_row : new_chunk_row + len(cs)])
                sent_vecs.append(sent_vecs_new[new_sent_row : new_sent_row + n_sent])
                new_chunk_row += len(cs)
                new_sent_row += n_sent
            else:
                rows = by_source.get(d.source, [])
                cs = [previous.chunks[r] for r in rows]
                chunk_vecs.append(previous.chunk_vectors(rows))
                sent_vecs.extend(previous.sentence_block(r) for r in rows)
            chunks.extend(cs)
        dim = embedder.dimension
        all_chunk_vecs = np.concatenate(chunk_vecs) if chunk_vecs else np.zeros((0, dim), np.float32)
        all_sent_vecs = np.concatenate(sent_vecs) if sent_vecs else np.zeros((0, dim), np.float32)
        documents = {
            d.source: {
                "title": d.title,
                "date": d.date,
                "sha256": d.sha256,
                "body_start": d.body_start,
                "chars": len(d.text),
                "chunks": sum(1 for c in chunks if c.source == d.source),
            }
            for d in docs
        }
        manifest = {
            "format_version": FORMAT_VERSION,
            "model_id": embedder.model_id,
            "dimension": dim,
            "chunking": settings.chunking_fingerprint(),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "documents": documents,
            "counts": {"documents": len(docs), "chunks": len(chunks), "sentences": int(all_sent_vecs.shape[0])},
        }
        _write_version(index_dir, manifest, chunks, all_chunk_vecs, all_sent_vecs)
        return BuildReport(
            documents=len(docs),
            chunks=len(chunks),
            embedded_chunks=len(flat_new),
            seconds=time.perf_counter() - t0,
            **report_base,
        )


def _write_version(
    index_dir: Path, manifest: dict, chunks: list[Chunk], chunk_vecs: np.ndarray, sent_vecs: np.ndarray
) -> Path:
    import bm25s
    import faiss

    name = f"v-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}"
    tmp = index_dir / f".tmp-{name}"
    tmp.mkdir()
    try:
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
            for c in chunks:
                row = {
                    "source": c.source,
                    "start": c.start,
                    "end": c.end,
                    "text": c.text,
                    "sentences": [[s.start, s.end] for s in c.sentences],
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        dense = faiss.IndexFlatIP(manifest["dimension"])
        if len(chunk_vecs):
            dense.add(np.ascontiguousarray(chunk_vecs, dtype=np.float32))
        faiss.write_index(dense, str(tmp / "dense.faiss"))
        np.save(tmp / "sentences.npy", np.ascontiguousarray(sent_vecs, dtype=np.float32), allow_pickle=False)
        tokens = [lexical.tokenize(c.text) for c in chunks]
        df = Counter(t for toks in tokens for t in set(toks))
        (tmp / "terms.json").write_text(json.dumps({"n": len(chunks), "df": df}, ensure_ascii=False), encoding="utf-8")
        bm25 = bm25s.BM25()
        bm25.index(tokens, show_progress=False)
        bm25.save(str(tmp / "bm25"), show_progress=False)
        manifest = dict(
            manifest,
            checksums={p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        _fsync_tree(tmp)
        final = index_dir / name
        try:
            previous = current_version(index_dir)
        except IndexCorruptError:
            previous = None
        os.rename(tmp, final)
        pointer_tmp = index_dir / f".{CURRENT}.tmp"
        pointer_tmp.write_text(name + "\n", encoding="utf-8")
        _fsync(pointer_tmp)
        os.replace(pointer_tmp, index_dir / CURRENT)  # the commit point
        _fsync(index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _clean_old(index_dir, keep={name, previous.name if previous else name})
    return final


def _clean_old(index_dir: Path, keep: set[str]) -> None:
    """Remove old versions, keeping the new one and the one it replaced (a reader in another
    process may be loading that one right now)."""
    for p in index_dir.iterdir():
        if p.is_dir() and p.name not in keep and p.name.startswith("v-"):
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    with open(index_dir / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            # Leftovers of a killed build are safe to remove once we hold the lock.
            for p in index_dir.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        _fsync(p)
    _fsync(folder)


def document_from_index(index: Index, source: str, corpus_dir: Path) -> Document | None:
    """The corpus file behind a source, if it is still the one indexed (same hash)."""
    meta = index.documents.get(source)
    path = corpus_dir / source
    if meta is None or not path.is_file():
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        return None
    from .corpus import parse_document

    return parse_document(source, data)
