"""qa.index: build and load, the manifest, incremental updates by content hash, atomic versions
(interrupted and killed builds), corrupt and stale indexes."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, FakeEmbedder

from qa import chunking, retrieval
from qa import index as index_mod
from qa.errors import IndexCorruptError, IndexStaleError
from qa.index import CURRENT, FORMAT_VERSION, build_index, current_version, load_index
from qa.settings import Settings

SOURCES = ["000_6db7c8a60c1e6205.txt", "001_6f09f507c09e51e5.txt", "002_e1a1f62939dbe07c.txt"]
NEW_BODY = "Zanzibar cartographers joined the Lumon wellness session."
NEW_ARTICLE = f" date 2024-03-03 {NEW_BODY}\n"


@pytest.fixture
def settings(seed_corpus, tmp_path) -> Settings:
    return Settings(corpus_dir=str(seed_corpus), index_dir=str(tmp_path / "index"))


_pysbd_spans = functools.lru_cache(maxsize=None)(chunking._pysbd_spans)


@pytest.fixture(autouse=True)
def memo_sentence_splitting(monkeypatch):
    """The same seed texts are split again at every rebuild here: remember pysbd's answers
    (a pure function of its arguments) to keep this file fast."""
    monkeypatch.setattr(chunking, "_pysbd_spans", lambda *args: list(_pysbd_spans(*args)))


@pytest.fixture(scope="module")
def seed_index(tmp_path_factory):
    """The seed corpus indexed once per module; tests get a copy (built from the same bytes)."""
    from conftest import SEED_CORPUS

    folder = tmp_path_factory.mktemp("seed-index") / "index"
    report = build_index(Settings(corpus_dir=str(SEED_CORPUS), index_dir=str(folder)), FakeEmbedder())
    return folder, report


@pytest.fixture
def built(settings, seed_index):
    """The seed corpus indexed in ``settings.index_dir``; its BuildReport."""
    folder, report = seed_index
    shutil.copytree(folder, settings.index_path)
    return dataclasses.replace(report, index_dir=str(settings.index_path))


def version_folder(settings: Settings) -> Path:
    folder = current_version(settings.index_path)
    assert folder is not None
    return folder


def segment_folder(settings: Settings) -> Path:
    """The one segment of a small index (small indexes are always rewritten as one segment)."""
    segments = sorted(p for p in version_folder(settings).iterdir() if p.is_dir())
    assert len(segments) == 1, segments
    return segments[0]


def loaded(settings: Settings, embedder=None):
    return load_index(settings.index_path, settings, embedder or FakeEmbedder())


def assert_consistent(idx, corpus: Path) -> None:
    """Chunks match the files on disk and every vector is the embedding of its text."""
    fake = FakeEmbedder()
    vecs = idx.chunk_vectors()
    assert vecs.shape == (idx.n_chunks, fake.dimension)
    np.testing.assert_allclose(vecs, fake.embed([c.text for c in idx.chunks]), atol=1e-6)
    sent_texts = [c.text[s.start - c.start : s.end - c.start] for c in idx.chunks for s in c.sentences]
    np.testing.assert_allclose(idx.sentence_vectors, fake.embed(sent_texts), atol=1e-3)  # stored as float16
    for c in idx.chunks:
        text = open(corpus / c.source, encoding="utf-8").read()
        assert text[c.start : c.end] == c.text


# ---------------------------------------------------------------- build and load


def test_build_then_load(settings, fake_embedder, seed_corpus):
    report = build_index(settings, fake_embedder)
    assert sorted(report.added) == SOURCES
    assert report.updated == report.removed == report.unchanged == report.skipped == []
    assert report.rebuilt == "" and report.changed
    assert report.documents == 3
    assert report.embedded_chunks == report.chunks > 3
    idx = loaded(settings)
    assert idx.n_chunks == report.chunks
    assert sorted({c.source for c in idx.chunks}) == SOURCES
    assert_consistent(idx, seed_corpus)
    folder = version_folder(settings)
    assert folder.name.startswith("v-")
    assert (settings.index_path / CURRENT).read_text().split()[0] == folder.name
    assert (folder / "manifest.json").exists()
    for name in ["chunks.jsonl", "dense.faiss", "sentences.npy", "terms.json", "bm25"]:
        assert (segment_folder(settings) / name).exists(), name


def test_load_without_index_is_none(tmp_path):
    assert load_index(tmp_path / "nothing-here") is None


def test_manifest_fields(settings, fake_embedder, seed_corpus, built):
    folder = version_folder(settings)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["model_id"] == "fake/hash-embedder"
    assert manifest["dimension"] == 64
    assert manifest["chunking"] == settings.chunking_fingerprint()
    assert manifest["chunking"]["chunk_max_tokens"] == 200
    assert sorted(manifest["documents"]) == SOURCES
    for source, meta in manifest["documents"].items():
        data = (seed_corpus / source).read_bytes()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest()
        assert meta["date"] and meta["title"] and meta["chunks"] >= 1
    assert manifest["counts"]["chunks"] == built.chunks
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["checksums"]) == files
    seg = segment_folder(settings).name
    assert f"{seg}/chunks.jsonl" in files and f"{seg}/dense.faiss" in files
    assert any(f.startswith(f"{seg}/bm25/") for f in files)
    assert set(manifest["sizes"]) == files
    assert all((folder / rel).stat().st_size == size for rel, size in manifest["sizes"].items())
    for rel, digest in manifest["checksums"].items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest


def test_report_lists_skipped_files(settings, fake_embedder, seed_corpus):
    (seed_corpus / "broken.txt").write_bytes(b"\x00\x01binary")
    report = build_index(settings, fake_embedder)
    assert len(report.skipped) == 1 and report.skipped[0].startswith("broken.txt: ")
    assert report.documents == 3


# ---------------------------------------------------------------- incremental


def test_rebuild_with_nothing_changed_embeds_nothing(settings, fake_embedder, built):
    before = version_folder(settings)
    report = build_index(settings, fake_embedder)
    assert fake_embedder.calls == 0 and fake_embedder.texts == []
    assert sorted(report.unchanged) == SOURCES
    assert report.added == report.updated == report.removed == []
    assert report.embedded_chunks == 0 and report.rebuilt == "" and not report.changed
    assert report.chunks == built.chunks and report.documents == 3
    assert version_folder(settings) == before


def test_fresh_engine_on_existing_index_embeds_nothing_but_the_question(make_engine, seed_corpus, fake_embedder):
    make_engine(seed_corpus).build_index()
    fake_embedder.calls, fake_embedder.texts = 0, []
    engine = make_engine(seed_corpus)
    passages = engine.retrieve("Who plays Irving?", k=3)
    assert passages
    assert fake_embedder.texts == ["Who plays Irving?"]


def test_changing_one_file_embeds_only_its_chunks(settings, fake_embedder, seed_corpus, built):
    old = loaded(settings)
    changed = seed_corpus / SOURCES[1]
    changed.write_text(
        changed.read_text(encoding="utf-8") + "\nA zanzibar pelican visited the set.\n", encoding="utf-8"
    )
    report = build_index(settings, fake_embedder)
    assert report.updated == [SOURCES[1]]
    assert sorted(report.unchanged) == [SOURCES[0], SOURCES[2]]
    assert report.added == report.removed == [] and report.rebuilt == ""
    idx = loaded(settings)
    new_chunks = [c for c in idx.chunks if c.source == SOURCES[1]]
    assert report.embedded_chunks == len(new_chunks)
    n_sentences = sum(len(c.sentences) for c in new_chunks)
    assert len(fake_embedder.texts) == len(new_chunks) + n_sentences
    changed_text = changed.read_text(encoding="utf-8")
    assert all(t in changed_text for t in fake_embedder.texts)
    assert any("zanzibar pelican" in t for t in fake_embedder.texts)
    # the other files' chunks and vectors are carried over as they were
    for source in (SOURCES[0], SOURCES[2]):
        old_rows = [i for i, c in enumerate(old.chunks) if c.source == source]
        new_rows = [i for i, c in enumerate(idx.chunks) if c.source == source]
        assert [old.chunks[i] for i in old_rows] == [idx.chunks[i] for i in new_rows]
        np.testing.assert_array_equal(old.chunk_vectors(old_rows), idx.chunk_vectors(new_rows))
    assert_consistent(idx, seed_corpus)
    assert idx.documents[SOURCES[1]]["sha256"] == hashlib.sha256(changed.read_bytes()).hexdigest()


def test_adding_one_file_embeds_only_it(settings, fake_embedder, seed_corpus, built):
    (seed_corpus / "003_new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    report = build_index(settings, fake_embedder)
    assert report.added == ["003_new.txt"] and sorted(report.unchanged) == SOURCES
    assert report.embedded_chunks == 1
    assert fake_embedder.texts == [NEW_BODY] * 2  # the chunk, then its one sentence
    idx = loaded(settings)
    assert report.chunks == idx.n_chunks == built.chunks + 1
    assert idx.documents["003_new.txt"]["date"] == "2024-03-03"
    assert_consistent(idx, seed_corpus)


def test_deleting_one_file_drops_its_chunks(settings, fake_embedder, seed_corpus, built):
    (seed_corpus / SOURCES[0]).unlink()
    report = build_index(settings, fake_embedder)
    assert report.removed == [SOURCES[0]] and report.embedded_chunks == 0
    assert fake_embedder.texts == []
    idx = loaded(settings)
    assert SOURCES[0] not in {c.source for c in idx.chunks}
    assert SOURCES[0] not in idx.documents
    assert report.documents == 2 and report.chunks == idx.n_chunks < built.chunks
    assert_consistent(idx, seed_corpus)


def test_file_turned_binary_is_removed_and_reported_skipped(settings, fake_embedder, seed_corpus, built):
    (seed_corpus / SOURCES[2]).write_bytes(b"\x00garbage")
    report = build_index(settings, fake_embedder)
    assert report.removed == [SOURCES[2]]
    assert report.skipped and report.skipped[0].startswith(SOURCES[2])


def test_incremental_index_equals_a_fresh_build(settings, fake_embedder, seed_corpus, built, tmp_path):
    (seed_corpus / SOURCES[0]).unlink()
    (seed_corpus / "003_new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    p = seed_corpus / SOURCES[2]
    p.write_text(p.read_text(encoding="utf-8").replace("Turturro", "Turturo"), encoding="utf-8")
    build_index(settings, fake_embedder)
    fresh_settings = settings.replace(index_dir=str(tmp_path / "fresh"))
    build_index(fresh_settings, FakeEmbedder())
    a, b = loaded(settings), loaded(fresh_settings)
    assert a.chunks == b.chunks
    np.testing.assert_allclose(a.chunk_vectors(), b.chunk_vectors(), atol=1e-6)
    np.testing.assert_allclose(a.sentence_vectors, b.sentence_vectors, atol=1e-6)
    assert a.df == b.df


def test_retrieval_follows_updates(make_engine, seed_corpus):
    engine = make_engine(seed_corpus)
    engine.build_index()
    assert not any("zanzibar" in p.text.lower() for p in engine.retrieve("zanzibar cartographers", k=5))
    (seed_corpus / "003_new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    report = engine.build_index()
    assert report.added == ["003_new.txt"]
    top = engine.retrieve("zanzibar cartographers", k=3)[0]
    assert top.source == "003_new.txt" and top.date == "2024-03-03"
    (seed_corpus / "003_new.txt").unlink()
    engine.build_index()
    assert all(p.source != "003_new.txt" for p in engine.retrieve("zanzibar cartographers", k=10))


def test_force_rebuilds_everything(settings, fake_embedder, built):
    report = build_index(settings, fake_embedder, force=True)
    assert report.rebuilt == "forced" and report.embedded_chunks == built.chunks


# ---------------------------------------------------------------- interrupted builds


class Boom(RuntimeError):
    pass


def _raise(*args, **kwargs):
    raise Boom("killed mid-build")


def _interrupt_points():
    import bm25s
    import faiss

    return {
        "faiss.write_index": (faiss, "write_index"),
        "bm25.save": (bm25s.BM25, "save"),
        "np.save": (np, "save"),
        "os.replace": (os, "replace"),
    }


@pytest.mark.parametrize("point", ["faiss.write_index", "bm25.save", "np.save", "os.replace", "embedder"])
def test_build_interrupted_midway_keeps_the_old_index(point, monkeypatch, settings, fake_embedder, seed_corpus, built):
    before = version_folder(settings)
    (seed_corpus / "003_new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    with monkeypatch.context() as m:
        if point == "embedder":
            m.setattr(fake_embedder, "embed", _raise)
        else:
            owner, name = _interrupt_points()[point]
            m.setattr(owner, name, _raise)
        with pytest.raises(Boom):
            build_index(settings, fake_embedder)
    assert version_folder(settings) == before
    assert not list(settings.index_path.glob(".tmp-*"))
    idx = loaded(settings)
    assert idx.n_chunks == built.chunks and "003_new.txt" not in idx.documents
    assert retrieval.search(idx, fake_embedder, settings, "Who plays Irving?", 2).passages
    # the next build finishes the job
    report = build_index(settings, fake_embedder)
    assert report.added == ["003_new.txt"]
    assert "003_new.txt" in loaded(settings).documents


def test_leftover_tmp_folders_are_cleaned_by_next_build(settings, fake_embedder, built):
    junk = settings.index_path / ".tmp-v-20240101T000000000000-1"
    junk.mkdir()
    (junk / "chunks.jsonl").write_text("half a line")
    (settings.index_path / "v-19990101T000000000000-1").mkdir()  # an old version nobody points at
    build_index(settings, fake_embedder)
    assert not junk.exists()
    assert loaded(settings) is not None


KILL_SCRIPT = """
import sys, time
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from conftest import FakeEmbedder
from qa.index import build_index
from qa.settings import Settings

marker = Path({marker!r})
where = {where!r}

class SlowEmbedder(FakeEmbedder):
    def embed(self, texts, *, progress=False):
        if where == "embed":
            marker.touch()
            time.sleep(60)
        return super().embed(texts)

if where == "write":
    import faiss
    real = faiss.write_index
    def slow_write(index, path):
        real(index, path)
        marker.touch()
        time.sleep(60)
    faiss.write_index = slow_write

build_index(Settings(corpus_dir={corpus!r}, index_dir={index!r}), SlowEmbedder())
"""


@pytest.mark.parametrize("where", ["embed", "write"])
def test_build_killed_with_sigkill_keeps_the_old_index(where, settings, fake_embedder, seed_corpus, built, tmp_path):
    before = version_folder(settings)
    (seed_corpus / "003_new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    marker = tmp_path / "reached"
    script = tmp_path / "build.py"
    script.write_text(
        KILL_SCRIPT.format(
            root=str(ROOT),
            tests=str(ROOT / "tests"),
            marker=str(marker),
            where=where,
            corpus=str(seed_corpus),
            index=str(settings.index_path),
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the build never reached the kill point"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    leftovers = list(settings.index_path.glob(".tmp-*"))
    if where == "write":
        assert leftovers and list(leftovers[0].rglob("dense.faiss"))
    # the old index is still the live one, loads and answers
    assert version_folder(settings) == before
    idx = loaded(settings)
    assert idx.n_chunks == built.chunks and "003_new.txt" not in idx.documents
    assert retrieval.search(idx, fake_embedder, settings, "Who plays Irving?", 2).passages
    # the next build (the lock was released by the kill) cleans up and adds the new file
    report = build_index(settings, fake_embedder)
    assert report.added == ["003_new.txt"]
    assert not list(settings.index_path.glob(".tmp-*"))
    versions = {p.name for p in settings.index_path.iterdir() if p.name.startswith("v-")}
    assert versions == {version_folder(settings).name, before.name}, "the new version and the one it replaced"


# ---------------------------------------------------------------- corrupt indexes


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_chunk_text(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace("Turturro", "Turtorro", 1), encoding="utf-8")


def _drop_manifest_key(key: str):
    def drop(path: Path) -> None:
        manifest = json.loads(path.read_text())
        del manifest[key]
        path.write_text(json.dumps(manifest))

    return drop


CORRUPTIONS = {
    "chunks truncated": ("chunks.jsonl", _truncate),
    "chunk text altered": ("chunks.jsonl", _edit_chunk_text),
    "faiss byte flipped": ("dense.faiss", _flip_byte),
    "faiss truncated": ("dense.faiss", _truncate),
    "sentences missing": ("sentences.npy", Path.unlink),
    "terms emptied": ("terms.json", lambda p: p.write_text("")),
    "manifest not json": ("manifest.json", lambda p: p.write_text("{not json")),
    "manifest empty": ("manifest.json", lambda p: p.write_text("")),
    "manifest without checksums": ("manifest.json", _drop_manifest_key("checksums")),
    "manifest without documents": ("manifest.json", _drop_manifest_key("documents")),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_file_is_reported_naming_it_and_rebuilt(case, settings, fake_embedder, built, make_engine, seed_corpus):
    rel, corrupt = CORRUPTIONS[case]
    folder = version_folder(settings) if rel == "manifest.json" else segment_folder(settings)
    corrupt(folder / rel)
    with pytest.raises(IndexCorruptError) as info:
        loaded(settings)
    assert rel in str(info.value), str(info.value)
    engine = make_engine(seed_corpus, settings.index_path)
    report = engine.build_index()
    assert report.rebuilt.startswith("corrupt"), report.rebuilt
    assert report.embedded_chunks == built.chunks
    assert_consistent(loaded(settings), seed_corpus)
    assert engine.retrieve("Who plays Irving?", k=2)


@pytest.mark.parametrize("garbage", ["", "nonsense-version", "../elsewhere", ".hidden", "v-1\nv-2", "\udcff"])
def test_current_pointing_to_garbage(garbage, settings, fake_embedder, built, make_engine, seed_corpus):
    (settings.index_path / CURRENT).write_text(garbage, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(IndexCorruptError, match=CURRENT):
        loaded(settings)
    report = make_engine(seed_corpus, settings.index_path).build_index()
    assert report.rebuilt.startswith("corrupt")
    assert loaded(settings).n_chunks == built.chunks


def test_version_folder_removed_under_current(settings, fake_embedder, built):
    folder = version_folder(settings)
    shutil.rmtree(folder)
    with pytest.raises(IndexCorruptError, match=folder.name):
        loaded(settings)
    assert build_index(settings, fake_embedder).rebuilt.startswith("corrupt")


# ---------------------------------------------------------------- stale indexes


def test_other_chunk_size_is_stale_and_rebuilt(settings, fake_embedder, built, seed_corpus, make_engine):
    other = settings.replace(chunk_max_tokens=60)
    with pytest.raises(IndexStaleError, match="chunk"):
        load_index(settings.index_path, other, fake_embedder)
    report = make_engine(seed_corpus, settings.index_path, chunk_max_tokens=60).build_index()
    assert report.rebuilt.startswith("stale") and "chunk_max_tokens" in report.rebuilt
    assert report.chunks > built.chunks
    assert load_index(settings.index_path, other, fake_embedder).manifest["chunking"]["chunk_max_tokens"] == 60


class OtherModel(FakeEmbedder):
    model_id = "fake/another-model"


class WiderModel(FakeEmbedder):
    dimension = 32


@pytest.mark.parametrize("embedder_cls, key", [(OtherModel, "model_id"), (WiderModel, "dimension")])
def test_other_embedder_is_stale_and_rebuilt(embedder_cls, key, settings, built):
    embedder = embedder_cls()
    with pytest.raises(IndexStaleError, match=key):
        load_index(settings.index_path, settings, embedder)
    report = build_index(settings, embedder)
    assert report.rebuilt.startswith("stale") and key in report.rebuilt
    assert report.embedded_chunks == built.chunks
    idx = load_index(settings.index_path, settings, embedder)
    assert idx.manifest["model_id"] == embedder.model_id and idx.chunk_vectors().shape[1] == embedder.dimension


def test_other_format_version_is_stale(settings, fake_embedder, built, monkeypatch):
    monkeypatch.setattr(index_mod, "FORMAT_VERSION", FORMAT_VERSION + 1)
    with pytest.raises(IndexStaleError, match="format_version"):
        load_index(settings.index_path, settings, fake_embedder)
    assert build_index(settings, fake_embedder).rebuilt.startswith("stale")


def test_an_index_split_into_sentences_by_other_rules_is_stale(settings, fake_embedder, built, monkeypatch):
    monkeypatch.setattr(index_mod, "SENTENCE_RULES", index_mod.SENTENCE_RULES + 1)
    with pytest.raises(IndexStaleError, match="sentence_rules"):
        load_index(settings.index_path, settings, fake_embedder)
    assert build_index(settings, fake_embedder).rebuilt.startswith("stale")


# ---------------------------------------------------------------- the manifest is protected by CURRENT


def pointer_fields(settings: Settings) -> list[str]:
    return (settings.index_path / CURRENT).read_text(encoding="utf-8").split()


def rewrite_manifest(settings: Settings, edit, *, fix_pointer: bool) -> None:
    """Edit the live manifest (valid JSON); with fix_pointer, also update CURRENT's checksum, as
    an attacker who knows the format would."""
    folder = version_folder(settings)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    if fix_pointer:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (settings.index_path / CURRENT).write_text(f"{folder.name} {digest}\n", encoding="utf-8")


def test_current_holds_the_version_and_the_manifest_checksum(settings, built):
    folder = version_folder(settings)
    name, digest = pointer_fields(settings)
    assert name == folder.name
    assert digest == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


def _retitle(manifest):
    for meta in manifest["documents"].values():
        meta["title"], meta["date"] = "Forged title", "1999-01-01"


@pytest.mark.parametrize("edit", [_retitle, lambda m: m["counts"].update(chunks=1)])
def test_edited_manifest_is_corrupt_and_rebuilt(edit, settings, fake_embedder, built, make_engine, seed_corpus):
    rewrite_manifest(settings, edit, fix_pointer=False)
    with pytest.raises(IndexCorruptError, match="manifest.json"):
        loaded(settings)
    engine = make_engine(seed_corpus, settings.index_path)
    report = engine.build_index()
    assert report.rebuilt.startswith("corrupt") and report.embedded_chunks == built.chunks
    assert all(d["title"] != "Forged title" for d in loaded(settings).documents.values())
    assert all(p.title != "Forged title" for p in engine.retrieve("Who plays Irving?", k=3))


@pytest.mark.parametrize("dropped", ["chunks.jsonl", "dense.faiss", "sentences.npy", "terms.json", "bm25/"])
def test_manifest_must_list_every_index_file(dropped, settings, fake_embedder, built):
    seg = segment_folder(settings)
    if dropped == "chunks.jsonl":
        _edit_chunk_text(seg / "chunks.jsonl")
    dropped = f"{seg.name}/{dropped}"

    def drop(manifest):
        for rel in [
            r for r in manifest["checksums"] if r == dropped or (dropped.endswith("/") and r.startswith(dropped))
        ]:
            del manifest["checksums"][rel]

    rewrite_manifest(settings, drop, fix_pointer=True)
    with pytest.raises(IndexCorruptError, match="checksum") as info:
        loaded(settings)
    assert dropped.rstrip("/") in str(info.value)
    assert build_index(settings, fake_embedder).rebuilt.startswith("corrupt")
    assert "Turtorro" not in (segment_folder(settings) / "chunks.jsonl").read_text(encoding="utf-8")


def test_unlisted_extra_file_is_corrupt(settings, fake_embedder, built):
    (segment_folder(settings) / "bm25" / "extra.json").write_text("{}")
    with pytest.raises(IndexCorruptError, match="extra.json"):
        loaded(settings)


def test_index_written_by_the_previous_format_is_rebuilt_not_used(
    settings, fake_embedder, built, make_engine, seed_corpus
):
    """The previous code wrote CURRENT as the version name alone (no manifest checksum)."""
    folder = version_folder(settings)
    (settings.index_path / CURRENT).write_text(folder.name + "\n", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match=CURRENT):
        loaded(settings)
    engine = make_engine(seed_corpus, settings.index_path)
    report = engine.build_index()
    assert report.rebuilt.startswith("corrupt") and report.embedded_chunks == built.chunks
    assert len(pointer_fields(settings)) == 2
    assert engine.retrieve("Who plays Irving?", k=2)


@pytest.mark.parametrize("garbage", ["v-1 nothex", "v-1 " + "0" * 63, "v-1 " + "0" * 64 + " extra"])
def test_current_with_a_malformed_checksum_is_corrupt(garbage, settings, built):
    (settings.index_path / CURRENT).write_text(garbage, encoding="utf-8")
    with pytest.raises(IndexCorruptError, match=CURRENT):
        loaded(settings)


def test_corpus_symlink_is_reported_skipped_and_never_indexed(settings, fake_embedder, seed_corpus, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("The vault combination is zanzibar-4242.\n")
    (seed_corpus / "leak.txt").symlink_to(secret)
    report = build_index(settings, fake_embedder)
    assert report.documents == 3
    assert len(report.skipped) == 1 and report.skipped[0].startswith("leak.txt: ")
    assert not any("zanzibar" in c.text for c in loaded(settings).chunks)


def test_document_from_index_does_not_follow_a_link(settings, fake_embedder, seed_corpus, built):
    idx = loaded(settings)
    assert index_mod.document_from_index(idx, SOURCES[0], seed_corpus) is not None
    real = seed_corpus / SOURCES[0]
    moved = seed_corpus.parent / "moved.txt"
    real.rename(moved)
    real.symlink_to(moved)  # same bytes, but through a link
    assert index_mod.document_from_index(idx, SOURCES[0], seed_corpus) is None


# ---------------------------------------------------------------- the index folder itself


@pytest.mark.parametrize(
    "make_bad, why",
    [
        (lambda p: p.write_text("a file, not a folder"), "exists"),
        (lambda p: None, "parent"),
        (lambda p: (p / ".lock").mkdir(parents=True), ".lock"),
        (lambda p: (p.mkdir(), os.mkfifo(p / ".lock")), ".lock"),
        (lambda p: (p.mkdir(), (p / ".lock").symlink_to(p / "elsewhere")), ".lock"),
    ],
    ids=["file", "parent-missing", "lock-is-dir", "lock-is-fifo", "lock-is-link"],
)
def test_unusable_index_folder_raises_index_folder_error(make_bad, why, seed_corpus, tmp_path, fake_embedder):
    from qa.errors import IndexFolderError

    index = tmp_path / ("missing-parent/index" if why == "parent" else "index")
    make_bad(index)
    with pytest.raises(IndexFolderError) as info:
        build_index(Settings(corpus_dir=str(seed_corpus), index_dir=str(index)), fake_embedder)
    assert str(index) in str(info.value)
    assert why in str(info.value)


def test_index_folder_name_too_long(seed_corpus, tmp_path, fake_embedder):
    from qa.errors import IndexFolderError

    index = tmp_path / ("x" * 300)
    with pytest.raises(IndexFolderError, match="too long"):
        build_index(Settings(corpus_dir=str(seed_corpus), index_dir=str(index)), fake_embedder)


@pytest.mark.parametrize("field", ["corpus_dir", "index_dir"])
def test_empty_folder_setting_is_an_input_error(field, seed_corpus, tmp_path, fake_embedder, monkeypatch):
    from qa.errors import InputError

    monkeypatch.chdir(tmp_path)  # an empty path means the current folder: never build there

    values = {"corpus_dir": str(seed_corpus), "index_dir": str(tmp_path / "index"), field: ""}
    with pytest.raises(InputError, match=field):
        build_index(Settings(**values), fake_embedder)


@pytest.mark.parametrize("field", ["corpus_dir", "index_dir"])
def test_folder_name_not_utf8_is_an_input_error(field, seed_corpus, tmp_path, fake_embedder, monkeypatch):
    from qa.errors import InputError

    monkeypatch.chdir(tmp_path)
    values = {"corpus_dir": str(seed_corpus), "index_dir": str(tmp_path / "index"), field: "bad-\udcff"}
    with pytest.raises(InputError, match=field):
        build_index(Settings(**values), fake_embedder)
    assert not (tmp_path / "bad-\udcff").exists()


@pytest.mark.parametrize("body", ["a" * 5000, "The and of it. Was it? It was.", "x" * 150 + " " + "y" * 150])
def test_corpus_without_a_single_bm25_term_builds_and_answers(body, tmp_path, fake_embedder, make_engine):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text(body)
    engine = make_engine(corpus, tmp_path / "ix")
    report = engine.build_index()
    assert report.documents == 1 and report.chunks >= 1
    assert engine.retrieve("Who plays Irving?", k=2) is not None


def test_text_with_unicode_line_separators_round_trips(tmp_path, fake_embedder, make_engine):
    """JSON leaves U+2028, U+2029 and U+0085 unescaped: chunks.jsonl must be split on "\\n" only."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Irving met Burt\u2028at the gallery.\x85Mark\u2029waved at Helly in the hall.\n")
    engine = make_engine(corpus, tmp_path / "ix")
    engine.build_index()
    idx = load_index(tmp_path / "ix", engine.settings, fake_embedder)
    assert "\u2028" in "".join(c.text for c in idx.chunks)
    assert not engine.build_index().rebuilt
