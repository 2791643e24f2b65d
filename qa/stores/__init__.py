"""Stores of chunk vectors (``DenseStore``) and chunk texts (``LexicalStore``), chosen by name
with the ``store`` setting:

- ``faiss``: the default. FAISS (exact, or HNSW for big segments) and bm25s, one pair per index
  segment, kept as files in the index version folder (``faiss_dense.py``, ``bm25_lexical.py``).
- ``milvus``: one Milvus collection holds text, dense vector and a BM25 sparse vector for every
  chunk; Milvus Lite (a local file) or a Milvus server or cluster given by URI (``milvus.py``,
  ``pip install -e ".[milvus]"``).

Both run the same contract suite (``tests/contracts/``)."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

STORES = ("faiss", "milvus")
_ID_MASK = (1 << 63) - 1


def chunk_id(source: str, checksum: str, ordinal: int) -> int:
    """The stable int64 key of a document's ``ordinal``-th chunk: the same for the same file name,
    text (``checksum``: its sha256) and position, whatever index version or segment holds it, so a
    server store can be updated incrementally (a changed document's chunks get new ids)."""
    digest = hashlib.blake2b(f"{source}\0{checksum}\0{ordinal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _ID_MASK


_OPEN: dict[tuple[str, str], Any] = {}
_OPEN_LOCK = threading.Lock()


def open_milvus(uri: str, collection: str, *, dimension: int, meta: dict[str, Any]):
    """The MilvusStore of ``collection`` at ``uri``, opened once per process (a build and the
    searches of the same engine share one client; Milvus Lite allows one per file). The token,
    if any, comes from ``QA_MILVUS_TOKEN`` and is never recorded."""
    from .milvus import MilvusStore, _normalized

    with _OPEN_LOCK:
        store = _OPEN.get((uri, collection))
        if store is not None and (store.meta != _normalized(meta) or store.dimension != dimension):
            store.close()  # opened for other chunks: opening again checks the collection's own record
            store = None
        if store is None:
            token = os.environ.get("QA_MILVUS_TOKEN") or None
            store = MilvusStore(uri, collection, dimension=dimension, meta=meta, token=token)
            _OPEN[(uri, collection)] = store
        return store


def close_all() -> None:
    """Close every store opened by ``open_milvus`` (tests; the end of a process)."""
    with _OPEN_LOCK:
        for store in _OPEN.values():
            store.close()
        _OPEN.clear()
