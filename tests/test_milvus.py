"""What is particular to the Milvus store (``qa/stores/milvus.py``), on Milvus Lite databases in
tmp_path: its meta check, filters built from hostile document names, BM25 scores against bm25s,
URIs without secrets, and its errors. The protocol behaviour shared with the default store is
the contract suite's (``tests/contracts/``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason='the Milvus store needs the extra: pip install -e ".[milvus]"')
pytest.importorskip("milvus_lite", reason='the Milvus store needs the extra: pip install -e ".[milvus]"')

from qa import lexical  # noqa: E402
from qa.errors import IndexCorruptError, IndexFolderError, IndexStaleError, InputError  # noqa: E402
from qa.protocols import DenseStore, LexicalStore  # noqa: E402
from qa.stores import milvus  # noqa: E402
from qa.stores.milvus import MilvusStore, milvus_term, redact_uri  # noqa: E402
from qa.types import ChunkBatch  # noqa: E402

DIM = 8
META = {"model_id": "test-model", "dimension": DIM, "chunking": {"max_tokens": 128, "overlap": 1}}
ROOT = Path(__file__).resolve().parents[1]


def vectors(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random unit vectors of DIM dimensions."""
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def batch(ids, sources, texts, vecs=None) -> ChunkBatch:
    ids = np.asarray(ids, dtype=np.int64)
    return ChunkBatch(
        ids=ids, sources=list(sources), texts=list(texts), vectors=vectors(len(ids)) if vecs is None else vecs
    )


def open_store(path: Path, meta: dict | None = None, collection: str = "chunks") -> MilvusStore:
    return MilvusStore(str(path), collection, dimension=DIM, meta=META if meta is None else meta)


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "milvus" / "qa.db"


@pytest.fixture
def store(db):
    s = open_store(db)
    yield s
    s.close()


# ---------------------------------------------------------------- meta, schema, opening


def test_meta_round_trips_and_a_mismatch_is_refused_after_reopening(db):
    s = open_store(db)
    s.add(batch([1, 2], ["a.txt", "a.txt"], ["first chunk", "second chunk"]))
    s.close()  # the last store on this database: its Lite server stops, so reopening reads the folder

    s = open_store(db, meta=json.loads(json.dumps(META)))  # equal after a JSON round trip
    assert s.count() == 2
    properties = s._client.describe_collection("chunks")["properties"]
    assert json.loads(properties[milvus.META_PROPERTY]) == META
    s.close()

    other = {**META, "model_id": "other-model"}
    with pytest.raises(IndexStaleError) as e:
        open_store(db, meta=other)
    message = str(e.value)
    for part in ("'chunks'", "model_id", "'test-model'", "'other-model'", "QA_MILVUS_COLLECTION", "--force"):
        assert part in message
    with pytest.raises(IndexStaleError, match="dimension"):
        open_store(db, meta={**META, "dimension": 16})
    s = open_store(db, collection="chunks_other_model", meta=other)  # another collection beside it
    assert s.count() == 0
    s.close()


def test_a_collection_not_made_by_us_is_refused_and_not_dropped(db):
    s = open_store(db)
    client = s._client
    client.create_collection("theirs", dimension=DIM)  # pymilvus's quick set-up: id and vector
    with pytest.raises(InputError, match="'theirs'.*not made by this program"):
        MilvusStore(str(db), "theirs", dimension=DIM, meta=META)
    with pytest.raises(InputError, match="not dropping"):
        MilvusStore.drop(str(db), "theirs")
    assert client.has_collection("theirs")
    assert MilvusStore.drop(str(db), "missing") is False
    s.close()
    assert MilvusStore.drop(str(db), "chunks") is True  # ours, whatever its meta
    s = open_store(db, meta={**META, "model_id": "new"})  # created afresh
    assert s.count() == 0
    s.close()


@pytest.mark.parametrize("name", ["", "1abc", "has-dash", "a b", "x" * 256, 7])
def test_bad_collection_names_are_refused_before_connecting(db, name):
    with pytest.raises(InputError, match="collection name"):
        MilvusStore(str(db), name, dimension=DIM, meta=META)
    assert not db.exists()


def test_the_lite_database_must_be_a_folder(tmp_path):
    path = tmp_path / "file.db"
    path.write_text("not a database")
    with pytest.raises(IndexFolderError, match="is a file"):
        open_store(path)


def test_a_lite_database_open_in_another_process_is_reported(store, db):
    code = (
        "import sys; from qa.stores.milvus import MilvusStore\n"
        "try:\n"
        f"    MilvusStore({str(db)!r}, 'chunks', dimension={DIM}, meta={META!r})\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.startswith("IndexFolderError"), out.stdout + out.stderr
    assert "another process" in out.stdout
    assert "Traceback" not in out.stderr  # milvus-lite's own log of the failure is replaced by our error


def test_unreachable_server_names_the_uri_without_secrets(db):
    with pytest.raises(IndexFolderError) as e:
        MilvusStore("http://alice:hunter2@127.0.0.1:1", "chunks", dimension=DIM, meta=META, token="tok-123")
    message = str(e.value)
    assert "http://127.0.0.1:1" in message and "'chunks'" in message
    assert "hunter2" not in message and "alice" not in message and "tok-123" not in message


def test_pymilvus_missing_gives_the_install_command():
    code = (
        "import sys; sys.modules['pymilvus'] = None\n"
        "import qa.stores.milvus as m\n"  # imports without pymilvus
        "try:\n"
        "    m.MilvusStore('x.db', 'chunks', dimension=4, meta={})\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == 'InputError the Milvus store needs pymilvus: pip install -e ".[milvus]"', out.stderr


def test_pymilvus_missing_in_process(monkeypatch, db):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(InputError, match=r'needs pymilvus: pip install -e "\.\[milvus\]"'):
        open_store(db)


# ---------------------------------------------------------------- URIs, save and load


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://localhost:19530", "http://localhost:19530"),
        ("https://user:p%40ss@milvus.example.com:443", "https://milvus.example.com:443"),
        ("https://milvus.example.com/db?token=abc&timeout=5", "https://milvus.example.com/db?timeout=5"),
        ("https://h:1/?api_key=1&password=2&Secret=3&db_name=x#frag", "https://h:1/?db_name=x"),
        ("/data/milvus/qa.db", "/data/milvus/qa.db"),
        ("relative/with:colon@at.db", "relative/with:colon@at.db"),
    ],
)
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown


def test_save_writes_where_the_chunks_are_and_load_reopens(store, db, tmp_path):
    store.add(batch([5, 6, 7], ["a", "a", "b"], ["one", "two", "three"]))
    store.save(tmp_path / "index")
    record = json.loads((tmp_path / "index" / "store.json").read_text(encoding="utf-8"))
    assert record["kind"] == "milvus" and record["collection"] == "chunks" and record["meta"] == META
    assert record["uri"] == str(db)
    assert store.describe() == {"kind": "milvus", "uri": str(db), "collection": "chunks"}
    again = MilvusStore.load(tmp_path / "index")
    assert again.count() == 3 and again.ids() == {5, 6, 7}
    again.close()
    moved = tmp_path / "elsewhere.db"
    other = MilvusStore.load(tmp_path / "index", uri=str(moved))  # uri replaces the recorded one
    assert other.describe()["uri"] == str(moved) and other.count() == 0
    other.close()


def test_load_of_a_bad_record_is_a_corrupt_index(tmp_path):
    folder = tmp_path / "index"
    with pytest.raises(IndexCorruptError, match="missing"):
        MilvusStore.load(folder)
    folder.mkdir()
    (folder / "store.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="not valid JSON"):
        MilvusStore.load(folder)
    (folder / "store.json").write_text(json.dumps({"kind": "faiss"}), encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="not a Milvus store record"):
        MilvusStore.load(folder)


def test_saved_record_holds_no_credentials(monkeypatch, tmp_path, store):
    monkeypatch.setattr(store, "shown_uri", redact_uri("https://bobuser:s3cr3t@host:19530?token=zzz-tok"))
    store.save(tmp_path / "index")
    text = (tmp_path / "index" / "store.json").read_text(encoding="utf-8")
    assert json.loads(text)["uri"] == "https://host:19530"
    assert "s3cr3t" not in text and "bobuser" not in text and "zzz-tok" not in text


# ---------------------------------------------------------------- writes


HOSTILE = ['a"b.txt', "c'd.txt", "e\\f.txt", 'g\\"h\\\\.txt', "ü✓/日本.txt", "x\ny.txt", "t\tz\r.txt", "plain.txt"]


def test_sources_with_quotes_backslashes_and_unicode_are_removed_exactly(store):
    ids = list(range(2 * len(HOSTILE)))
    sources = [HOSTILE[i // 2] for i in ids]
    store.add(batch(ids, sources, [f"chunk {i}" for i in ids]))
    left = set(ids)
    for k, name in enumerate(HOSTILE):
        assert store.remove([name]) == 2, name
        left -= {2 * k, 2 * k + 1}
        assert store.ids() == left
    assert store.remove(["absent.txt", HOSTILE[0]]) == 0
    assert store.count() == 0


def test_remove_takes_many_sources_at_once(store, monkeypatch):
    monkeypatch.setattr(milvus, "FILTER_VALUES", 3)  # several "source in [...]" filters
    store.add(batch(range(10), [f"doc{i}" for i in range(10)], ["t"] * 10))
    assert store.remove(f"doc{i}" for i in range(7)) == 7
    assert store.ids() == {7, 8, 9}
    with pytest.raises(InputError, match="not the string"):
        store.remove("doc7")


def test_upsert_replaces_the_chunk(store):
    e = np.eye(DIM, dtype=np.float32)
    store.add(batch([1, 2], ["a", "a"], ["alpha particle", "gamma ray"], e[[0, 2]]))
    store.add(batch([1], ["b"], ["beta decay"], e[[1]]))
    assert store.count() == 2
    assert store.lexical.search("alpha", 5) == []
    assert [i for i, _ in store.lexical.search("beta", 5)] == [1]
    assert store.dense.search(e[1], 1)[0][0] == 1
    assert store.remove(["a"]) == 1  # id 1 now belongs to document "b"
    assert store.ids() == {1}


def test_big_batches_are_written_in_slices(store, monkeypatch):
    monkeypatch.setattr(milvus, "UPSERT_ROWS", 3)
    store.add(batch(range(10), ["a"] * 10, [f"text {i}" for i in range(10)]))
    assert store.count() == 10


def test_count_ids_remove_ids_and_clear(store):
    assert store.count() == 0 and store.ids() == set()
    big = [(1 << 62) + 5, 3, 0]
    store.add(batch(big, ["a", "b", "c"], ["x", "y", "z"]))
    assert store.count() == 3 and store.ids() == set(big)
    assert store.remove_ids([3, 3, 99, 1 << 70]) == 1  # duplicates, absent and out-of-range ids
    assert store.ids() == {(1 << 62) + 5, 0}
    store.clear()
    assert store.count() == 0 and store.ids() == set()
    store.add(batch([4], ["d"], ["again"]))  # the collection is kept
    assert store.ids() == {4}


def test_texts_over_the_varchar_limit_name_the_chunk(store):
    text = "é" * 40_000  # 40,000 characters, 80,000 bytes in UTF-8
    with pytest.raises(InputError, match=r"chunk 77: its text is 80,000 bytes"):
        store.add(batch([1, 77], ["a", "a"], ["fine", text]))
    with pytest.raises(InputError, match="chunk 8: its source name"):
        store.add(batch([8], ["n" * 5000], ["fine"]))
    with pytest.raises(InputError, match="vectors"):
        store.add(ChunkBatch(ids=np.array([1]), sources=["a"], texts=["no vector"]))
    with pytest.raises(InputError, match="shape"):
        store.add(batch([1], ["a"], ["x"], np.ones((1, DIM + 1), np.float32)))
    assert store.count() == 0  # nothing of a refused batch was written


def test_a_chunk_without_terms_is_stored_and_never_found_by_bm25(store):
    v = vectors(2)
    store.add(batch([1, 2], ["a", "a"], ["", "the and of"], v))  # no terms: empty, only stop words
    assert store.count() == 2
    assert store.dense.search(v[1], 1)[0][0] == 2
    assert store.lexical.search("the", 5) == []
    assert store.lexical.search("anything", 5) == []


# ---------------------------------------------------------------- search


def test_search_edges_and_ties_by_smaller_id(store):
    same = np.tile(vectors(1), (30, 1))
    ids = list(range(100, 130))[::-1]
    store.add(batch(ids, ["a"] * 30, ["tie tie"] * 30, same))
    assert [i for i, _ in store.dense.search(same[0], 5)] == [100, 101, 102, 103, 104]
    assert [i for i, _ in store.lexical.search("tie", 4)] == [100, 101, 102, 103]
    assert len(store.dense.search(same[0], 10**9)) == 30
    assert store.dense.search(same[0], 0) == [] and store.lexical.search("tie", -1) == []
    assert store.lexical.search("", 5) == [] and store.lexical.search("the of", 5) == []
    with pytest.raises(InputError, match="dimensions"):
        store.dense.search(np.ones(DIM + 1, np.float32), 3)


def test_search_restricted_to_ids(store):
    v = vectors(6)
    store.add(batch(range(6), ["a"] * 6, ["red apple", "red car", "blue car", "red", "green", "red red"], v))
    dense = store.dense.search(v[0], 10, ids=[4, 2, 2, 999])
    assert [i for i, _ in dense] == sorted([4, 2], key=lambda i: -float(v[0] @ v[i]))
    assert dense[0][1] == pytest.approx(float(v[0] @ v[dense[0][0]]), abs=1e-5)
    lexical_hits = store.lexical.search("red", 10, ids=[1, 2, 3])
    assert [i for i, _ in lexical_hits] == [3, 1]  # 2 has no "red"
    assert store.dense.search(v[0], 10, ids=[]) == [] and store.lexical.search("red", 10, ids=[999]) == []
    assert len(store.dense.search(v[0], 1, ids=range(6))) == 1


def test_bm25_scores_equal_bm25s(store):
    """Milvus scores each term idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)) with
    idf = ln(1 + (N - df + 0.5) / (df + 0.5)): bm25s's 'lucene' formula times k1 + 1, which the
    store divides out. Over one flushed segment the statistics are the same, and the scores agree
    to float32 precision (about 1e-7 relative). Milvus Lite keeps N, df and avgdl per segment:
    after more writes (new segments, or replaced and removed rows, counted until compaction), its
    scores drift from a global bm25s as a server's do until it compacts."""
    import bm25s

    texts = [
        "The cat sat on the mat while the dog slept.",
        "Dogs and cats: O'Neil's café in Zürich serves crème brûlée.",
        "",
        "Stocks fell sharply as the market closed; the dog barked at the market.",
        "東京 market news: the yen rose against the dollar.",
        "cat cat cat dog dog",
        "Rock'n'roll never dies, said the rock'n'roll singer in 1969.",
        "a" * 60 + " supercalifragilisticexpialidociousnessesandmore words",
    ]
    ids = list(range(10, 10 + len(texts)))
    store.add(batch(ids, ["doc"] * len(texts), texts))
    tokens = [lexical.tokenize(t) for t in texts]
    reference = bm25s.BM25(k1=1.5, b=0.75)
    reference.index(tokens, show_progress=False)
    queries = ["cat", "market dog", "O'Neil café", "東京", "zürich crème news", "rock'n'roll 1969", "a" * 60, "cat cat"]
    for query in queries:
        terms = [t for t in lexical.tokenize(query) if t in reference.vocab_dict]
        scores = reference.get_scores(terms) if terms else np.zeros(len(texts))
        expected = sorted(((ids[k], float(s)) for k, s in enumerate(scores) if s > 0), key=lambda p: (-p[1], p[0]))
        found = store.lexical.search(query, 20)
        assert [i for i, _ in found] == [i for i, _ in expected], query
        for (_, got), (_, want) in zip(found, expected, strict=True):
            assert math.isclose(got, want, rel_tol=1e-5), (query, got, want)


def test_terms_are_words_every_standard_tokenizer_keeps_whole():
    assert milvus_term("market") == "market" and milvus_term("1969") == "1969"
    for token in ["o'neil", "zürich", "東京", "a" * 41, "x0123456789abcdef"]:
        term = milvus_term(token)
        assert term != token and len(term) == 17 and term.startswith("x")
        assert all(c in "0123456789abcdef" for c in term[1:])
    assert milvus_term("o'neil") != milvus_term("oneil")


def test_both_views_are_the_protocols_and_write_once(store):
    assert isinstance(store.dense, DenseStore) and isinstance(store.lexical, LexicalStore)
    assert store.dense.kind == store.lexical.kind == store.kind == "milvus"
    b = batch([1, 2, 3], ["a", "a", "b"], ["one", "two", "three"])
    calls = []
    real = store._client.upsert
    store._client.upsert = lambda *a, **k: calls.append(1) or real(*a, **k)
    store.dense.add(b)
    store.lexical.add(ChunkBatch(ids=b.ids, sources=b.sources, texts=b.texts))  # the same chunks, no vectors
    assert len(calls) == 1 and store.dense.count() == store.lexical.count() == 3
    assert store.dense.remove(["a"]) == 2 and store.lexical.remove(["a"]) == 2  # each view forgot 2
    assert store.lexical.remove(["a"]) == 0
    with pytest.raises(InputError, match="with vectors"):
        store.lexical.add(ChunkBatch(ids=np.array([9]), sources=["c"], texts=["new"]))


def test_deletes_and_reads_page_through_the_query_limit(store, monkeypatch):
    monkeypatch.setattr(milvus, "MAX_TOPK", 4)  # Milvus's 16,384 rows a query, made small
    store.add(batch(range(10), ["a"] * 7 + ["b"] * 3, [f"word{i} common" for i in range(10)]))
    assert store.ids() == set(range(10))
    assert len(store.lexical.search("common", 100)) == 4  # one search returns at most MAX_TOPK
    assert store.remove(["a"]) == 7
    assert store.ids() == {7, 8, 9}
    store.clear()
    assert store.count() == 0


def test_hnsw_index_is_recorded_and_searched(tmp_path):
    s = MilvusStore(str(tmp_path / "h.db"), "chunks", dimension=DIM, meta=META, dense_index="hnsw")
    e = np.eye(DIM, dtype=np.float32)
    s.add(batch(range(DIM), ["a"] * DIM, ["x"] * DIM, e))
    assert s.dense_index == "HNSW"
    assert s.dense.search(e[3], 2) == [(3, pytest.approx(1.0)), (0, pytest.approx(0.0))]
    s.save(tmp_path / "index")
    s.close()
    again = MilvusStore.load(tmp_path / "index")
    assert again.dense_index == "HNSW" and again.count() == DIM
    again.close()
