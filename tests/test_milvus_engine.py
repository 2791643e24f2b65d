"""The engine on the Milvus store (Milvus Lite in the index folder): the same passages as the
default FAISS + bm25s store, incremental builds kept in sync, the manifest's record of the
collection, a collection made another way refused, and a killed build completed by the next."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("pymilvus", reason='the Milvus store needs its extra: pip install -e ".[milvus]"')

from qa import index as index_mod  # noqa: E402
from qa.errors import IndexStaleError  # noqa: E402
from qa.index import load_index  # noqa: E402
from qa.stores import close_all  # noqa: E402

QUESTIONS = [
    "Who plays Irving in Severance?",
    "When did the second season premiere?",
    "Who are the stars of the Mr. & Mrs. Smith series?",
    "How old is John Turturro?",
    "What is Lumon?",
]


@pytest.fixture(autouse=True)
def _close_stores():
    yield
    close_all()


def _passages(engine, k=5):
    return {q: [(p.source, p.start, p.end) for p in engine.retrieve(q, k)] for q in QUESTIONS}


def _scores(engine, k=5):
    return {q: [(round(p.dense_score, 4), round(p.bm25_score, 3)) for p in engine.retrieve(q, k)] for q in QUESTIONS}


def test_same_passages_as_the_default_store(seed_corpus, make_engine, tmp_path):
    faiss_engine = make_engine(seed_corpus, tmp_path / "faiss")
    milvus_engine = make_engine(seed_corpus, tmp_path / "milvus", store="milvus")
    assert milvus_engine.build_index().chunks == faiss_engine.build_index().chunks
    assert _passages(milvus_engine) == _passages(faiss_engine)
    assert _scores(milvus_engine) == _scores(faiss_engine)
    assert milvus_engine.index.store.count() == milvus_engine.index.n_chunks
    files = {p.name for p in (milvus_engine.index.path).rglob("*") if p.is_file()}
    assert "dense.faiss" not in files and "sentences.npy" in files  # vectors and BM25 live in Milvus
    a = milvus_engine.answer(QUESTIONS[0])
    b = faiss_engine.answer(QUESTIONS[0])
    assert a.text == b.text and a.citations == b.citations


def test_incremental_builds_keep_the_collection_in_sync(seed_corpus, make_engine, tmp_path):
    engine = make_engine(seed_corpus, tmp_path / "milvus", store="milvus")
    engine.build_index()
    first = sorted(seed_corpus.iterdir())
    text = first[0].read_text(encoding="utf-8")
    first[0].write_text(text.replace("Severance", "Severance (the Apple TV+ series)", 1), encoding="utf-8")
    first[1].unlink()
    (seed_corpus / "new.txt").write_text(
        "date 2025-07-01\n\nThe Lumon archive opened to visitors on Monday, a spokesperson said.\n", encoding="utf-8"
    )
    report = engine.build_index()
    assert report.updated == [first[0].name] and report.removed == [first[1].name] and report.added == ["new.txt"]
    index = engine.index
    assert index.store.count() == index.n_chunks == len(index.chunk_ids())
    assert index.store.ids() == set(index.chunk_ids())
    removed = first[1].name
    assert all(p.source != removed for q in QUESTIONS for p in engine.retrieve(q, 10))
    # Milvus keeps counting deleted rows in its BM25 statistics (as Lucene does until a merge), so
    # scores drift a little from a fresh build's: the same passages, not always in the same order
    reference = make_engine(seed_corpus, tmp_path / "reference")
    reference.build_index()
    ours, theirs = _passages(engine), _passages(reference)
    for q in QUESTIONS:
        assert ours[q][0] == theirs[q][0] and len(set(ours[q]) & set(theirs[q])) >= 4, q
    assert engine.retrieve("When did the Lumon archive open to visitors?", 1)[0].source == "new.txt"


def test_manifest_names_the_collection_without_secrets_and_switching_stores_rebuilds(
    seed_corpus, make_engine, tmp_path, monkeypatch
):
    engine = make_engine(seed_corpus, tmp_path / "ix", store="milvus", milvus_collection="news_2025")
    engine.build_index()
    entry = engine.index.manifest["store"]
    assert entry == {"kind": "milvus", "uri": "index_dir/milvus.db", "collection": "news_2025"}
    server = make_engine(seed_corpus, tmp_path / "ix", store="milvus", milvus_uri="http://root:pw@db.example:19530")
    assert index_mod.store_entry(server.settings)["uri"] == "http://db.example:19530"  # no secrets recorded
    close_all()
    assert load_index(tmp_path / "ix").store.count() == engine.index.n_chunks  # no settings: found in the folder
    back = make_engine(seed_corpus, tmp_path / "ix")  # the default store again: rebuilt, not misread
    report = back.build_index()
    assert "stale" in report.rebuilt and "store" in report.rebuilt
    assert "store" not in back.index.manifest or back.index.manifest["store"] == {"kind": "faiss"}
    from qa.stores.milvus import redact_uri

    assert redact_uri("http://root:Milvus@db.example:19530?token=abc") == "http://db.example:19530"


def test_a_collection_made_with_other_chunking_is_refused(seed_corpus, make_engine, tmp_path):
    make_engine(seed_corpus, tmp_path / "a", store="milvus", milvus_uri=str(tmp_path / "shared.db")).build_index()
    close_all()
    other = make_engine(
        seed_corpus, tmp_path / "b", store="milvus", milvus_uri=str(tmp_path / "shared.db"), chunk_max_tokens=120
    )
    with pytest.raises(IndexStaleError) as info:
        other.build_index()
    msg = str(info.value)
    assert "qa_chunks" in msg and "chunk_max_tokens" in msg


def test_a_build_killed_after_the_collection_changed_is_completed_by_the_next(
    seed_corpus, make_engine, tmp_path, monkeypatch
):
    engine = make_engine(seed_corpus, tmp_path / "ix", store="milvus")
    engine.build_index()
    before = _passages(engine)
    (seed_corpus / "new.txt").write_text("The Lumon archive opened on Monday.\n", encoding="utf-8")
    shutil.move(str(seed_corpus / sorted(p.name for p in seed_corpus.iterdir())[0]), str(tmp_path / "gone.txt"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(index_mod, "_write_version", killed)
    with pytest.raises(KeyboardInterrupt):
        engine.build_index()
    monkeypatch.undo()
    # the live version still answers; ids it does not know (the new article's) are skipped
    live = index_mod.load_index(engine.settings.index_path, engine.settings, engine.embedder)
    assert json.dumps(sorted(live.documents)) == json.dumps(sorted(engine.index.documents))
    assert engine.retrieve(QUESTIONS[1], 5)
    report = engine.build_index()
    assert report.added == ["new.txt"] and len(report.removed) == 1
    assert engine.index.store.ids() == set(engine.index.chunk_ids())
    assert _passages(engine) != before


def test_filters_restrict_a_milvus_search_like_the_default(seed_corpus, make_engine, tmp_path):
    faiss_engine = make_engine(seed_corpus, tmp_path / "faiss")
    milvus_engine = make_engine(seed_corpus, tmp_path / "milvus", store="milvus")
    for kw in ({"since": "2025"}, {"until": "2024-01-31"}, {"sources": ["001_6f09f507c09e51e5.txt"]}):
        a = [(p.source, p.start) for p in milvus_engine.retrieve(QUESTIONS[0], 10, **kw)]
        b = [(p.source, p.start) for p in faiss_engine.retrieve(QUESTIONS[0], 10, **kw)]
        assert a == b and len({s for s, _ in a}) == 1, kw
