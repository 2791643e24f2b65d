"""Segmented index: an incremental build writes only what changed (a new segment; the old ones
hard-linked), deletions are masked, term statistics stay global, merges happen when due, a file
whose size and mtime are unchanged is not even read, and big indexes are verified by size at load
and in full by ``qa index --verify``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeEmbedder

from qa import index as index_mod
from qa import retrieval
from qa.errors import IndexCorruptError
from qa.index import build_index, current_version, load_index, verify_index
from qa.settings import Settings

ARTICLES = {
    "a_ferry.txt": " date 2024-03-01 The harbour ferry to Gullwing Island was cancelled after the storm. "
    "Captain Mira Holt said the crossing would resume on Friday.\n",
    "b_bridge.txt": " date 2024-03-02 The old stone bridge over the Tarn river reopened to cyclists. "
    "Engineers replaced three arches and the council paid for new railings.\n",
    "c_mill.txt": " date 2024-03-03 The paper mill in Ostby will close in June, the owners announced. "
    "Two hundred workers are offered jobs at the new plant in Varna.\n",
}
NEW = " date 2024-03-04 A lighthouse keeper on Gullwing Island rescued two kayakers in the fog.\n"


@pytest.fixture
def segmented(monkeypatch):
    """Every build appends a segment (the small-index rule rewrites one segment otherwise)."""
    monkeypatch.setattr(index_mod, "SINGLE_SEGMENT_BELOW", 0)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in ARTICLES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def make_settings(corpus: Path, tmp_path: Path, name: str = "index", **kw) -> Settings:
    return Settings(corpus_dir=str(corpus), index_dir=str(tmp_path / name), reader="picker", **kw)


def manifest_of(settings: Settings) -> dict:
    return json.loads((current_version(settings.index_path) / "manifest.json").read_text(encoding="utf-8"))


def search_sources(idx, embedder, settings, q, k=3) -> list[str]:
    return [p.source for p in retrieval.search(idx, embedder, settings, q, k).passages]


def test_adding_an_article_writes_one_new_segment_and_links_the_old(segmented, corpus, tmp_path):
    s = make_settings(corpus, tmp_path)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    first = current_version(s.index_path)
    (corpus / "d_lighthouse.txt").write_text(NEW, encoding="utf-8")
    embedder.texts.clear()
    report = build_index(s, embedder)
    assert report.added == ["d_lighthouse.txt"] and report.segments == 2
    assert all("lighthouse" in t.lower() or "kayakers" in t for t in embedder.texts), "only the new article embedded"
    second = current_version(s.index_path)
    m = manifest_of(s)
    assert [seg["name"] for seg in m["segments"]] == ["s-000001", "s-000002"]
    assert m["documents"]["d_lighthouse.txt"]["segment"] == "s-000002"
    old, linked = first / "s-000001" / "dense.faiss", second / "s-000001" / "dense.faiss"
    assert os.stat(old).st_ino == os.stat(linked).st_ino, "the old segment is linked, not copied"
    idx = load_index(s.index_path, s, embedder)
    assert idx.n_chunks == report.chunks == len(idx.chunks)
    assert search_sources(idx, embedder, s, "lighthouse keeper kayakers fog", 1) == ["d_lighthouse.txt"]
    assert search_sources(idx, embedder, s, "paper mill Ostby workers", 1) == ["c_mill.txt"]


def test_changed_and_deleted_articles_are_masked_in_their_old_segment(segmented, monkeypatch, corpus, tmp_path):
    monkeypatch.setattr(index_mod, "MAX_DELETED_SHARE", 0.9)  # two of three deleted: no merge yet
    s = make_settings(corpus, tmp_path)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    (corpus / "b_bridge.txt").write_text(" date 2024-03-02 The Tarn bridge stays closed until May.\n", encoding="utf-8")
    (corpus / "c_mill.txt").unlink()
    report = build_index(s, embedder)
    assert report.updated == ["b_bridge.txt"] and report.removed == ["c_mill.txt"]
    m = manifest_of(s)
    first = m["segments"][0]
    assert sorted(first["deleted"]) == ["b_bridge.txt", "c_mill.txt"] and first["deleted_chunks"] == 2
    idx = load_index(s.index_path, s, embedder)
    assert idx.n_chunks == 2 and len(idx.chunks) == 4
    for q in ("paper mill Ostby", "stone bridge arches railings cyclists", "Tarn bridge closed May"):
        for p in retrieval.search(idx, embedder, s, q, 5).passages:
            assert p.source != "c_mill.txt" and "arches" not in p.text, "a deleted chunk was found"
    assert search_sources(idx, embedder, s, "Tarn bridge closed until May", 1) == ["b_bridge.txt"]
    assert idx.bm25_scores(["ostbi"]).max() == 0.0  # the stem of Ostby: only in the deleted article


def test_bm25_over_segments_uses_the_statistics_of_the_whole_index(segmented, corpus, tmp_path):
    """Scores of a term rescaled from each segment's idf to the global one: a term frequent in
    one segment and rare in another scores as in one index over everything (within the
    segments' different average lengths)."""
    s = make_settings(corpus, tmp_path)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    (corpus / "d_lighthouse.txt").write_text(NEW, encoding="utf-8")
    build_index(s, embedder)
    split = load_index(s.index_path, s, embedder)
    one = make_settings(corpus, tmp_path, "one")
    index_mod.SINGLE_SEGMENT_BELOW = 10**9
    try:
        build_index(one, embedder)
    finally:
        index_mod.SINGLE_SEGMENT_BELOW = 0
    whole = load_index(one.index_path, one, embedder)
    assert len(split.segments) == 2 and len(whole.segments) == 1
    assert split.df == whole.df and split.n_stats == whole.n_stats
    by_text = lambda idx, scores: {c.text: float(scores[i]) for i, c in enumerate(idx.chunks)}  # noqa: E731
    for terms in (["gullwing"], ["island", "ferri"], ["bridg"]):
        a, b = by_text(split, split.bm25_scores(terms)), by_text(whole, whole.bm25_scores(terms))
        assert a.keys() == b.keys()
        for text in a:
            assert a[text] == pytest.approx(b[text], rel=0.25, abs=1e-6), (terms, text[:40])
            assert (a[text] > 0) == (b[text] > 0)


def test_too_many_segments_are_merged_into_one(segmented, monkeypatch, corpus, tmp_path):
    monkeypatch.setattr(index_mod, "MAX_SEGMENTS", 2)
    s = make_settings(corpus, tmp_path)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    (corpus / "d_lighthouse.txt").write_text(NEW, encoding="utf-8")
    assert build_index(s, embedder).segments == 2
    (corpus / "e_more.txt").write_text(" date 2024-03-05 Fishermen in Ostby caught record herring.\n", encoding="utf-8")
    embedder.texts.clear()
    report = build_index(s, embedder)
    assert report.segments == 1
    assert all("herring" in t or "Fishermen" in t for t in embedder.texts), "a merge embeds nothing old again"
    idx = load_index(s.index_path, s, embedder)
    assert [c.source for c in idx.chunks] == sorted(c.source for c in idx.chunks), "corpus order"
    fresh = make_settings(corpus, tmp_path, "fresh")
    build_index(fresh, FakeEmbedder())
    ref = load_index(fresh.index_path, fresh, embedder)
    assert idx.chunks == ref.chunks and idx.df == ref.df
    np.testing.assert_allclose(idx.chunk_vectors(), ref.chunk_vectors(), atol=1e-6)


def test_a_quarter_deleted_is_merged_away(segmented, corpus, tmp_path):
    s = make_settings(corpus, tmp_path)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    (corpus / "a_ferry.txt").unlink()
    (corpus / "b_bridge.txt").unlink()
    report = build_index(s, embedder)
    assert report.segments == 1 and manifest_of(s)["segments"][0]["deleted"] == []
    assert load_index(s.index_path, s, embedder).n_chunks == report.chunks == 1


def test_a_loaded_index_takes_only_the_new_segment_from_disk(segmented, corpus, tmp_path, make_engine):
    engine = make_engine(corpus, tmp_path / "index")
    engine.build_index()
    before = engine.index.segments[0]
    (corpus / "d_lighthouse.txt").write_text(NEW, encoding="utf-8")
    engine.build_index()
    assert engine.index.segments[0].chunks is before.chunks, "the old segment was not read again"
    assert len(engine.index.segments) == 2
    assert engine.answer("Who rescued the kayakers?").citations[0].source == "d_lighthouse.txt"


def test_files_with_the_same_size_and_mtime_are_not_read(corpus, tmp_path, monkeypatch):
    s = make_settings(corpus, tmp_path)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    # a build just after the files were written reads them again (their mtime is too recent to trust)
    m = manifest_of(s)
    reads: list[str] = []
    real = index_mod.scan_documents.__globals__["read_corpus_file"]

    def counting(folder, source, limit):
        reads.append(source)
        return real(folder, source, limit)

    monkeypatch.setattr("qa.corpus.read_corpus_file", counting)
    monkeypatch.setattr(index_mod, "RACY_SECONDS", -10.0)  # trust every recorded mtime
    monkeypatch.setattr(index_mod, "STAT_REFRESH_MIN", 1)  # one touched file is enough to record
    report = build_index(s, embedder)
    assert reads == [] and sorted(report.unchanged) == sorted(ARTICLES)
    # touched, not changed: read once, still unchanged, stat data refreshed
    path = corpus / "a_ferry.txt"
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    report = build_index(s, embedder)
    assert reads == ["a_ferry.txt"] and report.unchanged and not report.changed
    assert manifest_of(s)["documents"]["a_ferry.txt"]["mtime_ns"] == path.stat().st_mtime_ns
    assert m["documents"]["a_ferry.txt"]["sha256"] == manifest_of(s)["documents"]["a_ferry.txt"]["sha256"]
    reads.clear()
    build_index(s, embedder)
    assert reads == []
    # replaced with the same size and its old mtime put back (as cp -p does): the change time tells
    before = path.stat()
    time.sleep(0.01)
    path.write_text(path.read_text(encoding="utf-8").replace("Friday", "Monday"), encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    assert build_index(s, embedder).updated == ["a_ferry.txt"]


def test_big_index_is_checked_by_size_at_load_and_in_full_by_verify(corpus, tmp_path):
    s = make_settings(corpus, tmp_path, verify_max_bytes=1)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    seg = current_version(s.index_path) / "s-000001"
    path = seg / "chunks.jsonl"
    data = path.read_text(encoding="utf-8")
    path.write_text(data.replace("ferry", "fermy", 1), encoding="utf-8")  # same size
    assert load_index(s.index_path, s, embedder) is not None  # by size: not seen at load
    with pytest.raises(IndexCorruptError, match=r"s-000001/chunks\.jsonl.*does not match its checksum"):
        verify_index(s.index_path, s, embedder)
    path.write_text(data[:-10], encoding="utf-8")  # half-written
    with pytest.raises(IndexCorruptError, match=r"chunks\.jsonl.*bytes, the manifest says"):
        load_index(s.index_path, s, embedder)
    assert build_index(s, embedder).rebuilt.startswith("corrupt")
    assert verify_index(s.index_path, s, embedder)["segments"] == 1


def test_hnsw_from_the_size_setting_on(corpus, tmp_path):
    s = make_settings(corpus, tmp_path, hnsw_min_chunks=2)
    embedder = FakeEmbedder()
    report = build_index(s, embedder)
    assert report.dense == "hnsw" and manifest_of(s)["segments"][0]["dense"]["type"] == "hnsw"
    idx = load_index(s.index_path, s, embedder)
    assert search_sources(idx, embedder, s, "paper mill Ostby workers", 1) == ["c_mill.txt"]
    flat = make_settings(corpus, tmp_path, "flat")
    assert build_index(flat, embedder).dense == "flat"


def test_cli_index_shows_segments_and_search_kind(corpus, tmp_path, monkeypatch, capsys):
    from qa import cli
    from qa import engine as engine_mod

    monkeypatch.setattr(engine_mod, "default_embedder", lambda settings: FakeEmbedder())
    monkeypatch.setattr(engine_mod, "_ENGINES", {})
    args = ["--corpus", str(corpus), "--index", str(tmp_path / "cli-index")]
    assert cli.main([*args, "index"]) == 0
    assert "1 segment, search: exact (flat)" in capsys.readouterr().out
    assert cli.main([*args, "index", "--verify"]) == 0
    assert "all match their sha256" in capsys.readouterr().out
    (current_version(tmp_path / "cli-index") / "s-000001" / "terms.json").write_text("{}", encoding="utf-8")
    assert cli.main([*args, "index", "--verify"]) == 1
    assert "terms.json" in capsys.readouterr().err


def test_an_index_loaded_by_size_reads_the_same_vectors(corpus, tmp_path):
    """Above verify_max_bytes, sentence vectors stay on disk and are read block by block."""
    s = make_settings(corpus, tmp_path)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    whole = load_index(s.index_path, s, embedder)
    lazy = load_index(s.index_path, s.replace(verify_max_bytes=1), embedder)
    assert isinstance(lazy.segments[0].sentence_vectors, index_mod.RowFile)
    for row in range(len(whole.chunks)):
        np.testing.assert_array_equal(lazy.sentence_block(row), whole.sentence_block(row))
    np.testing.assert_array_equal(lazy.sentence_vectors, whole.sentence_vectors)
    a = retrieval.search(whole, embedder, s, "paper mill Ostby workers", 3).passages
    b = retrieval.search(lazy, embedder, s, "paper mill Ostby workers", 3).passages
    assert a == b


def test_without_hard_links_segments_are_copied(segmented, corpus, tmp_path, monkeypatch):
    """A file system without hard links (EXDEV, EPERM): the old segment is copied, same result."""
    import errno

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    s = make_settings(corpus, tmp_path)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    monkeypatch.setattr(index_mod.os, "link", no_links)
    (corpus / "d_lighthouse.txt").write_text(NEW, encoding="utf-8")
    assert build_index(s, embedder).segments == 2
    idx = load_index(s.index_path, s, embedder, verify=True)
    assert search_sources(idx, embedder, s, "lighthouse keeper kayakers fog", 1) == ["d_lighthouse.txt"]


def test_merging_hnsw_segments_reuses_their_vectors(segmented, monkeypatch, corpus, tmp_path):
    monkeypatch.setattr(index_mod, "MAX_SEGMENTS", 1)
    s = make_settings(corpus, tmp_path, hnsw_min_chunks=2)
    embedder = FakeEmbedder()
    build_index(s, embedder)
    (corpus / "d_lighthouse.txt").write_text(NEW, encoding="utf-8")
    embedder.texts.clear()
    report = build_index(s, embedder)
    assert report.segments == 1 and report.dense == "hnsw"
    assert all("kayakers" in t or "lighthouse" in t.lower() for t in embedder.texts)
    idx = load_index(s.index_path, s, embedder)
    fresh = make_settings(corpus, tmp_path, "fresh", hnsw_min_chunks=2)
    build_index(fresh, FakeEmbedder())
    np.testing.assert_allclose(
        idx.chunk_vectors(), load_index(fresh.index_path, fresh, embedder).chunk_vectors(), atol=1e-6
    )


def test_chunk_table_gives_back_the_chunks_it_was_made_of(corpus, tmp_path):
    """A loaded segment keeps its chunks as arrays; the Chunks it gives back are the ones written."""
    from qa.chunking import chunk_document
    from qa.corpus import load_corpus

    docs, _ = load_corpus(corpus)
    embedder = FakeEmbedder()
    written = [c for d in docs for c in chunk_document(d, embedder.count_tokens, 200, 1, max_chars=1200)]
    table = index_mod.ChunkTable.of(written)
    assert len(table) == len(written) and list(table) == written and table == written
    assert table[-1] == written[-1] and table[1:3] == written[1:3]
    s = make_settings(corpus, tmp_path)
    build_index(s, embedder)
    idx = load_index(s.index_path, s, embedder)
    assert isinstance(idx.segments[0].chunks, index_mod.ChunkTable)
    assert list(idx.chunks) == written
