"""The Milvus store: one collection holds every chunk's text, dense vector and BM25 sparse vector,
in Milvus Lite (a local folder whose name ends in ".db") or on a Milvus server or cluster
(``http(s)://host:port``). ``MilvusStore.dense`` and ``MilvusStore.lexical`` are its two faces,
the ``DenseStore`` and the ``LexicalStore`` of ``qa.protocols``.

Collection schema: ``id`` INT64 (the caller's chunk id, primary key), ``source``, ``checksum``,
``text`` (the chunk), ``terms`` (its BM25 terms, analysed by Milvus's "standard" tokenizer),
``dense`` FLOAT_VECTOR (metric IP, FLAT or HNSW) and ``sparse``, made from ``terms`` by Milvus's
BM25 function (SPARSE_INVERTED_INDEX, k1=1.5, b=0.75: bm25s's defaults).

``terms`` are our own tokens (``qa.lexical.tokenize``: Milvus Lite has no English analyzer), each
written as a word every "standard" tokenizer keeps whole (``milvus_term``), so that Milvus counts
exactly the terms bm25s counts. BM25 scores are returned on bm25s's scale (Milvus multiplies
bm25s's score by k1 + 1; we divide it out), so they can be compared with the default store's.

The ``meta`` the collection was built with (model, dimension, chunking) is kept in the collection's
properties (``qa.meta``); a collection built with other meta is refused (``IndexStaleError``).

pymilvus is imported when a store is opened, so this module imports without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from .. import lexical
from ..errors import IndexCorruptError, IndexFolderError, IndexStaleError, InputError, show, show_path
from ..types import ChunkBatch

STORE_FILE = "store.json"
META_PROPERTY = "qa.meta"  # collection property holding the JSON of the meta the collection was built with
FORMAT_PROPERTY = "qa.format"  # collection property marking a collection as ours
FORMAT = "qa-chunks/1"
BM25_K1, BM25_B = 1.5, 0.75  # bm25s's defaults
MAX_VARCHAR_BYTES = 65535  # Milvus's VARCHAR limit (max_length counts UTF-8 bytes)
MAX_SOURCE_BYTES = 4096
MAX_TOPK = 16384  # Milvus's limit on the hits of one search (and the rows of one query)
UPSERT_ROWS = 1000  # rows per upsert call...
UPSERT_BYTES = 16 << 20  # ...and about this many bytes, well under gRPC's 64 MiB message limit
DELETE_IDS = 10_000  # ids per delete call
FILTER_VALUES = 1000  # sources per "source in [...]" filter
DENSE_INDEXES = ("FLAT", "HNSW")
HNSW_BUILD = {"M": 16, "efConstruction": 200}
INSTALL = 'the Milvus store needs pymilvus: pip install -e ".[milvus]"'
INSTALL_LITE = 'a Milvus Lite database (a ".db" path) needs milvus-lite: pip install -e ".[milvus]"'
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_SECRET_PARAM = re.compile(r"token|pass|pwd|secret|key|auth|cred|sig", re.IGNORECASE)
_PLAIN_TERM = re.compile(r"[a-z0-9]{1,40}")
_HASHED_TERM = re.compile(r"x[0-9a-f]{16}")
_FIELDS = {"id", "source", "checksum", "text", "terms", "dense", "sparse"}

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- helpers


def redact_uri(uri: str) -> str:
    """``uri`` safe to show and to save: no ``user:password@``, no query parameter whose name
    looks secret (token, password, key, ...), no fragment. A file path is returned unchanged."""
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        host = parts.netloc.rpartition("@")[2]
        query = urlencode(
            [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _SECRET_PARAM.search(k)]
        )
    except ValueError:  # a malformed URL: keep the scheme only
        return uri.split("://", 1)[0] + "://…"
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def is_lite(uri: str) -> bool:
    """Whether ``uri`` names a Milvus Lite database (a local path ending in ".db")."""
    return "://" not in uri and uri.endswith(".db")


def milvus_term(token: str) -> str:
    """A token of ``qa.lexical.tokenize`` as a word that any Milvus "standard" tokenizer keeps whole
    and unchanged: itself when it is 1-40 of ``[a-z0-9]``, otherwise (an apostrophe, a non-ASCII
    letter, a long word) "x" and 16 hex digits of its hash. Milvus Lite's tokenizer splits on
    ``\\W`` ("o'neil" -> "o", "neil") and a server's on Unicode word breaks (CJK runs split into
    characters), which would make its BM25 disagree with bm25s's over the same tokens. A plain
    token of the hashed form is hashed too, so two tokens share a term only if their 64-bit
    hashes collide."""
    if _PLAIN_TERM.fullmatch(token) and not _HASHED_TERM.fullmatch(token):
        return token
    return "x" + hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def milvus_terms(text: str) -> str:
    """The ``terms`` field of a chunk or a query: its BM25 tokens as Milvus words, space separated
    ("" when it has none: Milvus stores an empty sparse vector, counted as a chunk of no terms)."""
    return " ".join(milvus_term(t) for t in lexical.tokenize(text))


def string_literal(value: str) -> str:
    """``value`` as a double-quoted string of a Milvus filter expression (Milvus Lite takes no
    filter templates). Escapes what both Milvus Lite and a server unescape the same way."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t") + '"'


def _pymilvus():
    """pymilvus, imported (``InputError`` naming the extra to install when it is missing)."""
    try:
        import pymilvus
    except ImportError as e:
        raise InputError(INSTALL) from e
    return pymilvus


def _rpc_error() -> type[BaseException]:
    """grpc's error class (pymilvus lets some through unwrapped)."""
    try:
        import grpc
    except ImportError:  # pragma: no cover - pymilvus depends on grpcio
        return OSError
    return grpc.RpcError


def _reason(error: BaseException) -> str:
    """The one-line reason of a pymilvus (or other) error."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


def _normalized(meta: dict) -> dict:
    """``meta`` as it reads back from JSON (tuples become lists), for comparing."""
    try:
        return json.loads(json.dumps(meta, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise InputError(f"the Milvus store's meta must be JSON-able: {show(meta)} ({e})") from e


def _as_ids(ids: Iterable[Any]) -> list[int]:
    """Distinct int64 ids, in order (values out of the int64 range are never stored: dropped)."""
    out = []
    for i in dict.fromkeys(int(i) for i in ids):
        if -(1 << 63) <= i < (1 << 63):
            out.append(i)
    return out


def _slices(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class _Drop(logging.Filter):
    """Drops the log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


@contextlib.contextmanager
def _quiet(logger_name: str, prefix: str) -> Iterator[None]:
    """Silence one message of a library's logger meanwhile: one we replace by our own error, or
    a warning that does not apply (pymilvus's about Milvus Lite's query iterator)."""
    logger, drop = logging.getLogger(logger_name), _Drop(prefix)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _locked(folder: Path) -> bool:
    """Whether another process holds the lock of the Milvus Lite database ``folder``."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows
        return False
    try:
        with open(folder / "LOCK", "a+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


_LITE_LOCK = threading.Lock()
_LITE_USERS: dict[str, int] = {}  # open stores per Milvus Lite folder, to stop its server after the last


# ---------------------------------------------------------------- the store


class MilvusStore:
    """Chunks in one Milvus collection; ``dense`` and ``lexical`` are its DenseStore and LexicalStore.

    ``uri``: a Milvus Lite folder ending in ".db" (created, its parent folders too, when missing)
    or ``http(s)://host:port`` of a server; ``token``: its credentials (never stored nor shown).
    ``meta``: how the chunks were made, compared with the collection's (``IndexStaleError``).
    ``dense_index``: "FLAT" (exact) or "HNSW", used when the collection is created."""

    kind = "milvus"

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        dimension: int,
        meta: dict,
        token: str | None = None,
        dense_index: str = "FLAT",
    ) -> None:
        self._target(uri, collection, token)
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= 32768:
            raise InputError(f"the dense dimension must be an integer in [1, 32768], not {show(dimension)}")
        if str(dense_index).upper() not in DENSE_INDEXES:
            raise InputError(f"dense_index must be one of {', '.join(DENSE_INDEXES)}, not {show(dense_index)}")
        self.dimension = dimension
        self.meta = _normalized(meta)
        self._lock = threading.RLock()
        self._dirty = False  # Milvus Lite: changes not flushed yet (searches of unflushed rows are slow)
        self._last: tuple | None = None  # the last change made through a view, shared with the other view
        self._pymilvus = _pymilvus()
        self._client = self._connect(token)
        try:
            self.dense_index = self._open(str(dense_index).upper())
        except BaseException:
            self.close()
            raise
        self.dense = _DenseView(self)
        self.lexical = _LexicalView(self)

    # ------------------------------------------------------------ opening

    def _target(self, uri: str, collection: str, token: str | None) -> None:
        """Check and keep where the collection is: ``uri`` (a Lite path made absolute), its form
        for messages and files (``shown_uri``), and what never to show (``_secrets``)."""
        if not isinstance(uri, str) or not uri.strip():
            raise InputError(f"the Milvus URI must be a non-empty string, not {show(uri)}")
        if not isinstance(collection, str) or not _NAME.fullmatch(collection):
            raise InputError(
                f"bad Milvus collection name {show(collection)}: use letters, digits and '_' "
                "(not starting with a digit, at most 255)"
            )
        self._client = None
        self.lite = is_lite(uri)
        self.uri = os.path.abspath(os.path.expanduser(uri)) if self.lite else uri.strip()
        self.shown_uri = redact_uri(self.uri)
        self.collection = collection
        self._secrets = [s for s in (token, self.uri if self.uri != self.shown_uri else None) if s]

    def _connect(self, token: str | None):
        """A MilvusClient for ``self.uri`` (for Milvus Lite: its folder made, its server started)."""
        if self.lite:
            self._lite_folder()
        try:
            with _quiet("milvus_lite.server_manager", "Failed to start MilvusLite server"):
                client = self._pymilvus.MilvusClient(uri=self.uri, token=token or "")
        except Exception as e:  # noqa: BLE001 - pymilvus raises MilvusException and plain errors alike
            if self.lite:
                self._lite_stop_unused()
                if _locked(Path(self.uri)):
                    raise IndexFolderError(
                        f"cannot open the Milvus Lite database {show_path(self.uri)}: another process is using it "
                        "(Milvus Lite opens a database in one process at a time; use a Milvus server to share one)"
                    ) from e
            raise IndexFolderError(f"cannot reach Milvus at {self._where()}: {self._clean(e)}") from e
        if self.lite:
            with _LITE_LOCK:
                _LITE_USERS[self.uri] = _LITE_USERS.get(self.uri, 0) + 1
        return client

    def _lite_folder(self) -> None:
        """Check milvus-lite is installed and make the database folder's parent."""
        import importlib.util

        if importlib.util.find_spec("milvus_lite") is None:
            raise InputError(INSTALL_LITE)
        path = Path(self.uri)
        if path.exists() and not path.is_dir():
            raise IndexFolderError(
                f"cannot open the Milvus Lite database {show_path(path)}: it is a file (Milvus Lite keeps a folder)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise IndexFolderError(
                f"cannot create the folder of the Milvus Lite database {show_path(path)}: {e.strerror or e}"
            ) from e

    def _open(self, dense_index: str) -> str:
        """Check the collection (ours, same meta, same dimension) or create it; load it. Returns
        the dense index type in use."""
        with self._calls("open the collection"):
            exists = self._client.has_collection(self.collection)
        if not exists:
            self._create(dense_index)
        else:
            with self._calls("describe the collection"):
                description = self._client.describe_collection(self.collection)
            self._check(description)
        dense_index = self._indexes(dense_index)
        with self._calls("load the collection"):
            state = self._client.get_load_state(self.collection).get("state")
            if getattr(state, "name", str(state)) != "Loaded":
                self._client.load_collection(self.collection)
        return dense_index

    def _create(self, dense_index: str) -> None:
        """Create the collection with our schema, meta and Strong consistency (``_indexes`` adds
        its indexes)."""
        pm = self._pymilvus
        dt = pm.DataType
        schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", dt.INT64, is_primary=True)
        schema.add_field("source", dt.VARCHAR, max_length=MAX_SOURCE_BYTES)
        schema.add_field("checksum", dt.VARCHAR, max_length=128)
        schema.add_field("text", dt.VARCHAR, max_length=MAX_VARCHAR_BYTES)
        schema.add_field(
            "terms",
            dt.VARCHAR,
            max_length=MAX_VARCHAR_BYTES,
            enable_analyzer=True,
            analyzer_params={"tokenizer": "standard"},
        )
        schema.add_field("dense", dt.FLOAT_VECTOR, dim=self.dimension)
        schema.add_field("sparse", dt.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            pm.Function(
                name="bm25",
                function_type=pm.FunctionType.BM25,
                input_field_names=["terms"],
                output_field_names=["sparse"],
            )
        )
        properties = {FORMAT_PROPERTY: FORMAT, META_PROPERTY: json.dumps(self.meta, sort_keys=True)}
        with self._calls("create the collection"):
            self._client.create_collection(
                self.collection, schema=schema, properties=properties, consistency_level="Strong"
            )
        log.info("created Milvus collection %r at %s", self.collection, self.shown_uri)

    def _indexes(self, dense_index: str) -> str:
        """Create the indexes that are missing (all of them after ``_create``); the dense index
        type in use. Milvus Lite builds them at once: not waiting saves pymilvus's 0.5 s polls."""
        have = {field: self._index_type(field) for field in ("dense", "sparse")}
        index = self._client.prepare_index_params()
        if have["dense"] is None:
            build = HNSW_BUILD if dense_index == "HNSW" else {}
            index.add_index("dense", index_type=dense_index, metric_type="IP", params=build)
        if have["sparse"] is None:
            index.add_index(
                "sparse",
                index_type="SPARSE_INVERTED_INDEX",
                metric_type="BM25",
                params={"bm25_k1": BM25_K1, "bm25_b": BM25_B},
            )
        if len(index):
            with self._calls("index the collection"):
                self._client.create_index(self.collection, index, sync=not self.lite)
        return have["dense"] or dense_index

    def _check(self, description: dict) -> None:
        """Refuse a collection that is not ours (``InputError``) or was built with other meta or
        another dimension (``IndexStaleError``)."""
        fields = {f.get("name"): f for f in description.get("fields", [])}
        properties = description.get("properties") or {}
        if set(fields) != _FIELDS or properties.get(FORMAT_PROPERTY) != FORMAT or META_PROPERTY not in properties:
            raise InputError(
                f"the Milvus collection {self.collection!r} at {self.shown_uri} was not made by this program "
                f"(fields {', '.join(sorted(map(str, fields)))}; format {properties.get(FORMAT_PROPERTY)!r}): "
                "choose another collection name (QA_MILVUS_COLLECTION); it is left as it is"
            )
        try:
            stored = json.loads(properties[META_PROPERTY])
        except ValueError as e:
            raise IndexCorruptError(
                f"the Milvus collection {self.collection!r} at {self.shown_uri} has an unreadable "
                f"{META_PROPERTY} property: {e}"
            ) from e
        if stored != self.meta:
            raise IndexStaleError(self._stale_message(stored))
        dim = int((fields["dense"].get("params") or {}).get("dim", self.dimension))
        if dim != self.dimension:
            raise IndexStaleError(self._stale_message({"dimension": dim}, {"dimension": self.dimension}))

    def _stale_message(self, stored: Any, now: dict | None = None) -> str:
        """Which meta keys differ (both values), and what to do."""
        now = self.meta if now is None else now
        if not isinstance(stored, dict):
            stored = {"meta": stored}
            now = {"meta": now}
        keys = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
        diffs = "; ".join(f"{k}: {show(stored.get(k), 60)} in the collection, {show(now.get(k), 60)} now" for k in keys)
        return (
            f"the Milvus collection {self.collection!r} at {self.shown_uri} was built with other settings ({diffs}): "
            "use another collection name (QA_MILVUS_COLLECTION), or drop it and rebuild "
            "(python -m qa index --force, or MilvusStore.drop)"
        )

    def _index_type(self, field: str) -> str | None:
        """The index type on ``field`` ("FLAT", "HNSW", ...), None when it has none."""
        with self._calls("describe the indexes"):
            for name in self._client.list_indexes(self.collection, field_name=field) or []:
                found = self._client.describe_index(self.collection, name) or {}
                if found.get("field_name", field) == field and found.get("index_type"):
                    return str(found["index_type"]).upper()
        return None

    # ------------------------------------------------------------ protocol

    def add(self, batch: ChunkBatch) -> None:
        """Upsert ``batch`` (an id stored already is replaced); needs its vectors and texts."""
        rows = self._rows(batch)
        self._last = None
        with self._lock, self._calls("write chunks"):
            for part in self._parts(rows):
                self._dirty = True
                self._client.upsert(self.collection, part)

    def remove(self, sources: Iterable[str]) -> int:
        """Delete every chunk of these documents; how many chunks were removed."""
        if isinstance(sources, str):
            raise InputError(f"remove takes an iterable of document names, not the string {show(sources)}")
        names = []
        for name in dict.fromkeys(sources):
            if not isinstance(name, str):
                raise InputError(f"a document name must be a string, not {show(name)}")
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                continue  # never stored: add refuses names that are not valid UTF-8
            names.append(name)
        self._last = None
        removed = 0
        for part in _slices(names, FILTER_VALUES):
            removed += self._delete_where("source in [" + ", ".join(map(string_literal, part)) + "]")
        return removed

    def remove_ids(self, ids: Iterable[int]) -> int:
        """Delete these chunk ids; how many were stored."""
        self._last = None
        removed = 0
        for part in _slices(_as_ids(ids), DELETE_IDS):
            removed += self._delete_where(f"id in [{', '.join(map(str, part))}]")
        return removed

    def clear(self) -> None:
        """Delete every chunk (the collection, its schema and meta stay)."""
        self._last = None
        self._delete_where("")

    def count(self) -> int:
        """Chunks stored (exact: deletes and upserts accounted for)."""
        self._settle()
        with self._calls("count chunks"):
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def ids(self) -> set[int]:
        """Every chunk id stored (read with a query iterator)."""
        self._settle()
        found: set[int] = set()
        with self._calls("read chunk ids"), _quiet("pymilvus.client.iterator.query_iterator", "failed to get mvccTs"):
            iterator = self._client.query_iterator(
                self.collection, batch_size=MAX_TOPK // 2, filter="", output_fields=["id"]
            )
            try:
                while rows := iterator.next():
                    found.update(int(r["id"]) for r in rows)
            finally:
                iterator.close()
        return found

    def search_dense(self, vector: np.ndarray, n: int, ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """The ``n`` chunks of largest inner product with ``vector``, best first, ties by id; only
        among ``ids`` when given."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimension:
            raise InputError(f"the query vector has {query.shape[0]} dimensions, the Milvus store {self.dimension}")
        return self._search([query.tolist()], "dense", {"metric_type": "IP"}, n, ids, lambda d: d)

    def search_lexical(self, query: str, n: int, ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """The ``n`` chunks of best BM25 score (bm25s's scale, positive only) for the question text
        ``query``, best first, ties by id; only among ``ids`` when given."""
        if not isinstance(query, str):
            raise InputError(f"a lexical query must be a string, not {show(query)}")
        terms = milvus_terms(query)
        if not terms:
            return []
        # Milvus Lite returns BM25 scores negated (as distances), a server as they are; Milvus's
        # BM25 is bm25s's ('lucene') times k1 + 1
        return self._search([terms], "sparse", {"metric_type": "BM25"}, n, ids, lambda d: abs(d) / (BM25_K1 + 1))

    def save(self, folder: Path) -> None:
        """Flush the collection and write ``folder/store.json``: where the chunks are (the URI
        without credentials), the collection and its meta."""
        with self._lock, self._calls("flush the collection"):
            self._client.flush(self.collection)
            self._dirty = False
        folder = Path(folder)
        record = {
            "kind": self.kind,
            "uri": self.shown_uri,
            "collection": self.collection,
            "meta": self.meta,
            "dimension": self.dimension,
            "dense_index": self.dense_index,
        }
        tmp = folder / (STORE_FILE + ".tmp")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, folder / STORE_FILE)
        except OSError as e:
            raise IndexFolderError(f"cannot write {show_path(folder / STORE_FILE)}: {e.strerror or e}") from e

    def describe(self) -> dict:
        """Where the chunks are, for reports and the manifest (no credentials)."""
        return {"kind": self.kind, "uri": self.shown_uri, "collection": self.collection}

    @classmethod
    def load(cls, folder: Path, *, token: str | None = None, uri: str | None = None) -> MilvusStore:
        """The store that ``save`` recorded in ``folder`` (``uri`` replaces the recorded one, e.g.
        to give back credentials that were not saved)."""
        path = Path(folder) / STORE_FILE
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise IndexCorruptError(f"{show_path(path)} is missing: the Milvus store's record was not written") from e
        except OSError as e:
            raise IndexFolderError(f"cannot read {show_path(path)}: {e.strerror or e}") from e
        except ValueError as e:
            raise IndexCorruptError(f"{show_path(path)} is not valid JSON: {e}") from e
        try:
            if record["kind"] != cls.kind:
                raise ValueError(f"kind {record['kind']!r}, not {cls.kind!r}")
            meta = record["meta"]
            dimension = int(record.get("dimension", meta.get("dimension") if isinstance(meta, dict) else None))
            collection, saved_uri = str(record["collection"]), str(record["uri"])
            dense_index = str(record.get("dense_index", "FLAT"))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise IndexCorruptError(f"{show_path(path)} is not a Milvus store record: {show(e)}") from e
        return cls(uri or saved_uri, collection, dimension=dimension, meta=meta, token=token, dense_index=dense_index)

    @classmethod
    def drop(cls, uri: str, collection: str, *, token: str | None = None) -> bool:
        """Drop ``collection`` if it exists and was made by this program (any meta); whether it
        existed. A collection that is not ours is refused (``InputError``) and left as it is."""
        store = cls.__new__(cls)
        store._target(uri, collection, token)
        store._pymilvus = _pymilvus()
        store._client = store._connect(token)
        try:
            with store._calls("open the collection"):
                if not store._client.has_collection(collection):
                    return False
                properties = store._client.describe_collection(collection).get("properties") or {}
            if properties.get(FORMAT_PROPERTY) != FORMAT:
                raise InputError(
                    f"not dropping the Milvus collection {collection!r} at {store.shown_uri}: "
                    "it was not made by this program"
                )
            with store._calls("drop the collection"):
                store._client.drop_collection(collection)
            log.info("dropped Milvus collection %r at %s", collection, store.shown_uri)
            return True
        finally:
            store.close()

    def close(self) -> None:
        """Close the connection (and stop the Milvus Lite server when no other store uses it)."""
        client, self._client = getattr(self, "_client", None), None
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.close()
        if self.lite:
            self._lite_released()

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MilvusStore({self.shown_uri!r}, {self.collection!r})"

    # ------------------------------------------------------------ internals

    def _rows(self, batch: ChunkBatch) -> list[dict]:
        """The rows of ``batch``, checked (vectors present and of our dimension, texts and names
        within Milvus's VARCHAR limits)."""
        if batch.vectors is None:
            raise InputError("the Milvus store keeps a chunk's vector and text in one row: add a batch with vectors")
        vectors = np.asarray(batch.vectors, dtype=np.float32)
        if len(batch) and (vectors.ndim != 2 or vectors.shape[1] != self.dimension):
            raise InputError(f"vectors of shape {vectors.shape} for a Milvus store of dimension {self.dimension}")
        ids = np.asarray(batch.ids, dtype=np.int64).tolist()
        checksums = batch.checksums or [""] * len(ids)
        rows = []
        for k, i in enumerate(ids):
            text, source = batch.texts[k], batch.sources[k]
            terms = milvus_terms(text)
            for what, value, limit in (("text", text, MAX_VARCHAR_BYTES), ("source name", source, MAX_SOURCE_BYTES)):
                try:
                    size = len(value.encode("utf-8"))
                except (UnicodeEncodeError, AttributeError) as e:
                    raise InputError(f"chunk {i}: its {what} is not a valid UTF-8 string: {show(value)}") from e
                if size > limit:
                    raise InputError(
                        f"chunk {i}: its {what} is {size:,} bytes in UTF-8, over Milvus's limit of {limit:,} "
                        f"({show(value, 60)})"
                    )
            if len(terms) > MAX_VARCHAR_BYTES:
                raise InputError(f"chunk {i}: its BM25 terms are {len(terms):,} bytes, over Milvus's limit")
            rows.append(
                {
                    "id": i,
                    "source": source,
                    "checksum": checksums[k] or "",
                    "text": text,
                    "terms": terms,
                    "dense": vectors[k],
                }
            )
        return rows

    @staticmethod
    def _parts(rows: list[dict]) -> Iterator[list[dict]]:
        """``rows`` in slices of at most UPSERT_ROWS rows and about UPSERT_BYTES bytes."""
        part: list[dict] = []
        size = 0
        for row in rows:
            row_size = 4 * len(row["dense"]) + 2 * len(row["text"]) + len(row["terms"]) + len(row["source"]) + 100
            if part and (len(part) >= UPSERT_ROWS or size + row_size > UPSERT_BYTES):
                yield part
                part, size = [], 0
            part.append(row)
            size += row_size
        if part:
            yield part

    def _delete_where(self, where: str) -> int:
        """Delete the chunks matching the filter ``where`` ("" for all); how many there were."""
        self._settle()
        deleted: set[int] = set()
        with self._lock, self._calls("delete chunks"):
            while True:
                rows = self._client.query(self.collection, filter=where, output_fields=["id"], limit=MAX_TOPK)
                found = [int(r["id"]) for r in rows]
                if not found or not deleted.isdisjoint(found):  # the second: a server not showing its deletes
                    break
                deleted.update(found)
                for part in _slices(found, DELETE_IDS):
                    self._client.delete(self.collection, ids=list(part))
                self._dirty = True
                if len(found) < MAX_TOPK:
                    break
        return len(deleted)

    def _search(
        self, data: list, field: str, params: dict, n: int, ids: Sequence[int] | None, score
    ) -> list[tuple[int, float]]:
        """Search ``field``: the ``n`` best (id, score) with a positive score for lexical ones,
        best first, ties by smaller id. Asks for more hits while a tie crosses the n-th place."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise InputError(f"n must be an integer, not {show(n)}")
        n = int(n)
        where = ""
        cap = MAX_TOPK
        if ids is not None:
            wanted = _as_ids(ids)
            if not wanted:
                return []
            where = f"id in [{', '.join(map(str, wanted))}]"
            cap = min(cap, len(wanted))
        n = min(n, cap)
        if n <= 0:
            return []
        self._settle()
        limit = min(cap, n + 8)
        while True:
            if field == "dense" and self.dense_index == "HNSW":
                params = {**params, "params": {"ef": max(64, limit)}}  # HNSW needs ef >= limit
            with self._calls(f"search {field} vectors"):
                found = self._client.search(
                    self.collection,
                    data=data,
                    anns_field=field,
                    limit=limit,
                    filter=where,
                    output_fields=["id"],
                    search_params=params,
                )
            hits = [(int(h["id"]), float(score(h["distance"]))) for h in (found[0] if found else [])]
            if field == "sparse":
                hits = [h for h in hits if h[1] > 0 and math.isfinite(h[1])]
            hits.sort(key=lambda h: (-h[1], h[0]))
            if len(hits) <= n or len(hits) < limit or limit >= cap or hits[limit - 1][1] < hits[n - 1][1]:
                return hits[:n]
            limit = min(cap, limit * 4)

    def _settle(self) -> None:
        """Milvus Lite: flush pending changes before a read (it searches unflushed rows by brute
        force in Python: 0.3 s for a dense search of 10,000 rows, against 10 ms once flushed).
        A server needs nothing: the collection's consistency level is Strong."""
        if self.lite and self._dirty:
            with self._lock:
                if self._dirty:
                    with self._calls("flush the collection"):
                        self._client.flush(self.collection)
                    self._dirty = False

    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Turn pymilvus's errors into ``IndexFolderError`` naming the URI and the collection."""
        if self._client is None:
            raise IndexFolderError(f"the Milvus store at {self._where()} is closed: cannot {what}")
        try:
            yield
        except (self._pymilvus.exceptions.MilvusException, _rpc_error()) as e:
            raise IndexFolderError(f"Milvus at {self._where()}: cannot {what}: {self._clean(e)}") from e

    def _where(self) -> str:
        """The URI (redacted) and collection, for messages."""
        collection = getattr(self, "collection", None)
        return f"{self.shown_uri} (collection {collection!r})" if collection else self.shown_uri

    def _clean(self, error: BaseException) -> str:
        """The error's reason without the token or the unredacted URI."""
        text = _reason(error)
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, self.shown_uri if secret == self.uri else "***")
        return text

    def _lite_released(self) -> None:
        """One store less on this Milvus Lite folder; stop its server after the last."""
        with _LITE_LOCK:
            users = _LITE_USERS.get(self.uri, 0) - 1
            if users > 0:
                _LITE_USERS[self.uri] = users
                return
            _LITE_USERS.pop(self.uri, None)
        self._lite_stop_unused()

    def _lite_stop_unused(self) -> None:
        """Stop this folder's Milvus Lite server unless a store of this process still uses it."""
        with _LITE_LOCK:
            if _LITE_USERS.get(self.uri):
                return
        with contextlib.suppress(Exception):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)

    def _via(self, view: str, op: str, key: Any, run) -> Any:
        """Run a change asked through ``view``, unless the other view has just made the same one:
        ``dense.add(b); lexical.add(b)`` writes once, and ``dense.remove(s); lexical.remove(s)``
        deletes once and returns the same count to both, as two stores would."""
        last = self._last
        if last is not None and last[0] != view and last[1] == op and _same(last[2], key):
            self._last = None
            return last[3]
        result = run()
        self._last = (view, op, key, result)
        return result


def _batch_key(batch: ChunkBatch) -> tuple[bytes, bytes, bytes | None]:
    """Digests of a batch's ids, sources and texts, and of its vectors (None without), to tell
    the same chunks added through the other view without keeping the batch alive."""

    def digest(*parts: bytes) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for part in parts:
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
        return h.digest()

    def encoded(values: Sequence[str]) -> list[bytes]:
        return [str(v).encode("utf-8", "surrogatepass") for v in values]

    ids = np.ascontiguousarray(np.asarray(batch.ids, dtype=np.int64)).tobytes()
    vectors = None
    if batch.vectors is not None:
        vectors = digest(np.ascontiguousarray(np.asarray(batch.vectors, dtype=np.float32)).tobytes())
    return digest(ids), digest(*encoded(batch.sources), *encoded(batch.texts)), vectors


def _same(a: Any, b: Any) -> bool:
    """Whether two change keys are the same change: batch keys with the same ids, sources and
    texts, and the same vectors unless the second has none; equal source tuples."""
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 3 and isinstance(a[0], bytes):
        return a[:2] == b[:2] and (b[2] is None or a[2] == b[2])
    return a == b


class _View:
    """One face of a MilvusStore: changes and counts go to the store."""

    kind = "milvus"
    name = ""

    def __init__(self, store: MilvusStore) -> None:
        self.store = store

    def add(self, batch: ChunkBatch) -> None:
        """Upsert ``batch`` into the store (once, when the other view has just added it)."""
        store = self.store

        def run() -> None:
            store.add(batch)

        store._via(self.name, "add", _batch_key(batch), run)

    def remove(self, sources: Iterable[str]) -> int:
        names = tuple(sources) if not isinstance(sources, str) else sources
        store = self.store
        return store._via(self.name, "remove", names, lambda: store.remove(names))

    def count(self) -> int:
        return self.store.count()

    def save(self, folder: Path) -> None:
        self.store.save(folder)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"


class _DenseView(_View):
    """The store's DenseStore: chunk vectors searched by inner product."""

    name = "dense"

    def search(self, vector: np.ndarray, n: int, ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        return self.store.search_dense(vector, n, ids)


class _LexicalView(_View):
    """The store's LexicalStore: chunk texts searched by BM25."""

    name = "lexical"

    def search(self, query: str, n: int, ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        return self.store.search_lexical(query, n, ids)
