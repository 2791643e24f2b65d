"""Build, update, save and load the index: FAISS + BM25 + chunk table + manifest.

Layout of ``index/``::

    CURRENT                 "<version folder> <sha256 of its manifest.json>" (replaced atomically)
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

Integrity: CURRENT holds the manifest's sha256, the manifest holds the sha256 of every other
file (and must list every one of them), so no file of a version can be altered, dropped or added
without the load noticing (IndexCorruptError; the next build rebuilds). Problems with the folder
itself (a file in its place, a missing parent, no permission, a full disk) are IndexFolderError.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import lexical
from .chunking import MAX_CHARS_PER_TOKEN, chunk_document
from .corpus import load_corpus, read_corpus_file, read_regular_file
from .embedding import Embedder
from .errors import IndexCorruptError, IndexFolderError, IndexStaleError, InputError, shorten, show_path
from .files import sha256_file
from .settings import Settings
from .types import BuildReport, Chunk, Document, Span

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: CURRENT holds the manifest's sha256; chunks bounded in characters
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
LOCK = ".lock"
# Files every version holds besides the manifest (and bm25s's files under bm25/); the manifest's
# checksums must list each of them, and every file present.
REQUIRED_FILES = ("chunks.jsonl", "dense.faiss", "sentences.npy", "terms.json")
BM25_DIR = "bm25"
# bm25s cannot index a corpus without a single term (only stop words, only words over
# lexical.MAX_WORD_CHARS): it then gets this one, which no query can hold (the tokenizer never
# yields a NUL), so BM25 finds nothing, as it should.
NO_TERMS = "\x00"
_MAX_POINTER_BYTES = 4096
_MAX_INDEX_FILE_BYTES = 1 << 40  # index files are read whole; this only keeps read_regular_file's contract
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")


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


def read_pointer(index_dir: Path) -> tuple[Path, str] | None:
    """(live version folder, sha256 of its manifest) from CURRENT; None when there is no index yet.

    Raises IndexCorruptError when CURRENT is unreadable, not a regular file, or does not hold
    exactly a version folder name and a sha256 (an index written before format 2 holds the name
    alone: it is reported corrupt, so the next build rebuilds it).
    """
    pointer = index_dir / CURRENT
    try:
        raw = read_regular_file(pointer, _MAX_POINTER_BYTES)
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # the index "folder" is a file: there is no index in it
        return None
    except (OSError, ValueError) as e:
        raise IndexCorruptError(f"index pointer {show_path(pointer)} is unreadable: {_reason(e)}") from e
    try:
        fields = raw.decode("utf-8").split()
    except UnicodeDecodeError as e:
        raise IndexCorruptError(f"index pointer {show_path(pointer)} is not UTF-8 text") from e
    name = fields[0] if fields else ""
    if not name or "/" in name or name.startswith("."):
        raise IndexCorruptError(
            f"index pointer {show_path(pointer)} holds {shorten(repr(name), 80)}, not a version folder name"
        )
    if len(fields) == 1:
        raise IndexCorruptError(
            f"index pointer {show_path(pointer)} holds no manifest checksum "
            "(an index written by an older version of qa, or altered)"
        )
    if len(fields) != 2 or not _SHA256.match(fields[1]):
        raise IndexCorruptError(
            f"index pointer {show_path(pointer)} must hold a version folder name and a sha256; it holds {shorten(repr(raw), 80)}"
        )
    folder = index_dir / name
    if not folder.is_dir():
        raise IndexCorruptError(f"index pointer {show_path(pointer)} names {show_path(name)}, which does not exist")
    return folder, fields[1]


def current_version(index_dir: Path) -> Path | None:
    """The live version folder, or None when there is no index yet (see ``read_pointer``)."""
    pointer = read_pointer(Path(index_dir))
    return pointer[0] if pointer else None


def read_manifest(folder: Path, sha256: str | None = None) -> dict[str, Any]:
    """The version's manifest, checked against ``sha256`` (from CURRENT) when given."""
    path = folder / MANIFEST
    try:
        data = read_regular_file(path, _MAX_INDEX_FILE_BYTES)
    except (OSError, ValueError) as e:
        raise IndexCorruptError(f"index manifest {show_path(path)} is missing or unreadable: {_reason(e)}") from e
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise IndexCorruptError(
            f"index manifest {show_path(path)} does not match the checksum in {CURRENT} (corrupt or altered)"
        )
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise IndexCorruptError(f"index manifest {show_path(path)} is not valid JSON: {shorten(e, 80)}") from e
    if (
        not isinstance(manifest, dict)
        or "format_version" not in manifest
        or not isinstance(manifest.get("checksums"), dict)
        or not isinstance(manifest.get("documents"), dict)
    ):
        raise IndexCorruptError(f"index manifest {show_path(path)} lacks format_version, checksums or documents")
    return manifest


def _check_listing(folder: Path, checksums: dict[str, Any]) -> None:
    """Every file the version needs is listed in the manifest's checksums, and every file there is."""
    manifest = folder / MANIFEST
    for rel in REQUIRED_FILES:
        if rel not in checksums:
            raise IndexCorruptError(f"index manifest {show_path(manifest)} lacks a checksum for {rel}")
    if not any(rel.startswith(BM25_DIR + "/") for rel in checksums):
        raise IndexCorruptError(f"index manifest {show_path(manifest)} lacks checksums for the {BM25_DIR}/ files")
    try:
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    except OSError as e:
        raise IndexCorruptError(f"index in {show_path(folder)} cannot be listed: {_reason(e)}") from e
    for rel in sorted(present - set(checksums) - {MANIFEST}):
        raise IndexCorruptError(f"index file {show_path(folder / rel)} is not listed in the manifest's checksums")


def _verified_bytes(folder: Path, rel: str, want: Any) -> bytes:
    path = folder / rel
    if not isinstance(want, str) or not _SHA256.match(want) or rel.startswith("/") or ".." in rel.split("/"):
        raise IndexCorruptError(
            f"index manifest {show_path(folder / MANIFEST)} has a bad checksum entry for {show_path(rel, 60)}"
        )
    try:
        data = read_regular_file(path, _MAX_INDEX_FILE_BYTES)
    except FileNotFoundError:
        raise IndexCorruptError(f"index file {show_path(path)} is missing") from None
    except (OSError, ValueError) as e:
        raise IndexCorruptError(f"index file {show_path(path)} is unreadable: {_reason(e)}") from e
    if hashlib.sha256(data).hexdigest() != want:
        raise IndexCorruptError(f"index file {show_path(path)} does not match its checksum (corrupt or altered)")
    return data


def _reason(e: BaseException) -> str:
    """The operating system's reason (``strerror``), or the error's message, shortened."""
    if isinstance(e, OSError) and e.strerror:
        return shorten(e.strerror, 100)
    return shorten(e, 100)


def check_compatible(manifest: dict[str, Any], settings: Settings, embedder: Embedder) -> None:
    """Raise IndexStaleError when the index was built another way than we would build it now."""
    expected = {
        "format_version": FORMAT_VERSION,
        "model_id": embedder.model_id,
        "dimension": embedder.dimension,
        "chunking": settings.chunking_fingerprint(),
        "chunk_max_chars_per_token": MAX_CHARS_PER_TOKEN,
    }
    for key, want in expected.items():
        if manifest.get(key) != want:
            raise IndexStaleError(
                f"index was built with {key}={shorten(repr(manifest.get(key)), 100)}, now {shorten(repr(want), 100)}"
            )


def load_index(
    index_dir: str | Path, settings: Settings | None = None, embedder: Embedder | None = None
) -> Index | None:
    """The live index, verified against its checksums; None if there is none.

    Raises IndexCorruptError when any file is missing, altered, unlisted or unreadable (the
    manifest is checked against the sha256 in CURRENT, every other file against the manifest),
    and IndexStaleError (when settings and embedder are given) when it was built differently.
    """
    import io

    import faiss

    index_dir = Path(index_dir)
    pointer = read_pointer(index_dir)
    if pointer is None:
        return None
    folder, manifest_sha256 = pointer
    manifest = read_manifest(folder, manifest_sha256)
    if settings is not None and embedder is not None:
        check_compatible(manifest, settings, embedder)
    _check_listing(folder, manifest["checksums"])
    # Each file is parsed from the very bytes whose checksum was verified (bm25s reads its own).
    data = {rel: _verified_bytes(folder, rel, want) for rel, want in manifest["checksums"].items()}
    try:
        chunks: list[Chunk] = []
        # split("\n"), not splitlines(): the JSON keeps U+2028 and U+0085 of the text unescaped
        for line in data["chunks.jsonl"].decode("utf-8").split("\n"):
            if not line:
                continue
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
        dense = faiss.deserialize_index(np.frombuffer(data["dense.faiss"], dtype=np.uint8))
        sentence_vectors = np.load(io.BytesIO(data["sentences.npy"]), allow_pickle=False)
        terms = json.loads(data["terms.json"].decode("utf-8"))
        bm25 = _load_bm25(folder / BM25_DIR)
    except Exception as e:  # noqa: BLE001 - whatever broke, the index is not usable
        raise IndexCorruptError(
            f"index in {show_path(folder)} could not be read: {type(e).__name__}: {shorten(e, 100)}"
        ) from e
    rows, n = [], 0
    for c in chunks:
        rows.append(n)
        n += len(c.sentences)
    if dense.ntotal != len(chunks) or sentence_vectors.shape[0] != n:
        raise IndexCorruptError(
            f"index in {show_path(folder)} is inconsistent: {len(chunks)} chunks, {dense.ntotal} vectors, "
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


def _bm25s():
    """bm25s, imported; its import sets its own logger to DEBUG (printing "Building index from
    tokens" under any logging set-up): we put it back under the application's configuration."""
    import bm25s

    logger = logging.getLogger("bm25s")
    if logger.level == logging.DEBUG:
        logger.setLevel(logging.NOTSET)
    return bm25s


def _load_bm25(folder: Path):
    return _bm25s().BM25.load(str(folder), show_progress=False, verbosity=0)


# ---------------------------------------------------------------- building


def build_index(settings: Settings, embedder: Embedder, *, force: bool = False) -> BuildReport:
    """Bring the index in ``settings.index_dir`` up to date with ``settings.corpus_dir``.

    Incremental: only new or changed files are chunked and embedded; deleted ones are dropped.
    A stale or corrupt index is rebuilt from scratch (the reason is in the report).
    """
    t0 = time.perf_counter()
    for name in ("corpus_dir", "index_dir"):
        value = str(getattr(settings, name))
        if not value.strip():
            raise InputError(f"{name} is an empty path. Name a folder (an empty path is not the current one).")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # from undecodable bytes in argv or the environment
            raise InputError(f"{name} {show_path(value)} is not valid UTF-8. Name a folder in UTF-8.") from None
    index_dir = settings.index_path
    _make_folder(index_dir)
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
                d,
                embedder.count_tokens,
                settings.chunk_max_tokens,
                settings.chunk_overlap_sentences,
                max_chars=settings.chunk_max_tokens * MAX_CHARS_PER_TOKEN,
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
            "chunk_max_chars_per_token": MAX_CHARS_PER_TOKEN,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "documents": documents,
            "counts": {"documents": len(docs), "chunks": len(chunks), "sentences": int(all_sent_vecs.shape[0])},
        }
        try:
            _write_version(index_dir, manifest, chunks, all_chunk_vecs, all_sent_vecs)
        except OSError as e:
            raise IndexFolderError(
                f"index folder {show_path(index_dir)} cannot be written"
                + (f" ({show_path(e.filename, 80)})" if e.filename else "")
                + f": {_reason(e)}"
            ) from e
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
    import faiss

    bm25s = _bm25s()
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
        bm25.index(tokens if any(tokens) else [[NO_TERMS] for _ in tokens], show_progress=False)
        bm25.save(str(tmp / "bm25"), show_progress=False)
        manifest = dict(
            manifest,
            checksums={p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
        )
        manifest_bytes = json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8")
        (tmp / MANIFEST).write_bytes(manifest_bytes)
        _fsync_tree(tmp)
        final = index_dir / name
        previous = _pointer_name(index_dir)
        os.rename(tmp, final)
        pointer_tmp = index_dir / f".{CURRENT}.tmp"
        pointer_tmp.write_text(f"{name} {hashlib.sha256(manifest_bytes).hexdigest()}\n", encoding="utf-8")
        _fsync(pointer_tmp)
        os.replace(pointer_tmp, index_dir / CURRENT)  # the commit point
        _fsync(index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _clean_old(index_dir, keep={name, previous or name})
    return final


def _pointer_name(index_dir: Path) -> str | None:
    """The version folder CURRENT names, checked or not (a reader may be loading it right now)."""
    try:
        fields = read_regular_file(index_dir / CURRENT, _MAX_POINTER_BYTES).decode("utf-8").split()
    except (OSError, ValueError):
        return None
    return fields[0] if fields and "/" not in fields[0] and fields[0].startswith("v-") else None


def _make_folder(index_dir: Path) -> None:
    """Create the index folder (not its parents: a missing parent is more likely a typo)."""
    try:
        index_dir.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise IndexFolderError(
            f"index folder {show_path(index_dir)} cannot be created: its parent folder does not exist "
            "(create it, or choose another index folder)"
        ) from None
    except FileExistsError:
        raise IndexFolderError(f"index folder {show_path(index_dir)} exists but is not a folder") from None
    except OSError as e:
        raise IndexFolderError(f"index folder {show_path(index_dir)} cannot be created: {_reason(e)}") from None


def _clean_old(index_dir: Path, keep: set[str]) -> None:
    """Remove old versions, keeping the new one and the one it replaced (a reader in another
    process may be loading that one right now)."""
    for p in index_dir.iterdir():
        if p.is_dir() and p.name not in keep and p.name.startswith("v-"):
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    """Held while a build runs. The lock file must be a regular file: a link is not followed,
    a FIFO is not waited on."""
    path = index_dir / LOCK
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        reason = "it is a symbolic link" if e.errno == errno.ELOOP else _reason(e)
        raise IndexFolderError(f"index lock {show_path(path)} cannot be opened: {reason}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise IndexFolderError(f"index lock {show_path(path)} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            raise IndexFolderError(f"index lock {show_path(path)} cannot be locked: {_reason(e)}") from None
        try:
            # Leftovers of a killed build are safe to remove once we hold the lock.
            for p in index_dir.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
    """The corpus file behind a source, if it is still the one indexed (same hash) and still a
    regular file inside the corpus folder (links are not followed)."""
    meta = index.documents.get(source)
    if meta is None:
        return None
    try:
        data = read_corpus_file(corpus_dir, source, _MAX_INDEX_FILE_BYTES)
    except (OSError, ValueError):
        return None
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        return None
    from .corpus import parse_document

    return parse_document(source, data)
