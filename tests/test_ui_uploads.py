"""Uploads from the browser: checked and saved at once, indexed one at a time by a background worker,
with queue positions and an index status panel (fake embedder, no browser)."""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path

import pytest

from qa import index as index_mod
from qa import ui

LIGHTHOUSE = (
    b"date 2025-03-02\n# The Gullwing lighthouse\n\n"
    b"The Gullwing lighthouse on Marrow Point is kept by Ottilie Brandvold, who repainted its lamp room cobalt blue.\n"
)
FERRY = b"# The Skarv ferry\n\nThe Skarv ferry to Marrow Point is skippered by Halvard Ness every Tuesday morning.\n"
BAKERY = b"# The harbour bakery\n\nThe harbour bakery in Marrow Point sells cardamom buns baked by Sunniva Lid.\n"


@pytest.fixture
def engine(make_engine, seed_corpus):
    e = make_engine(seed_corpus)
    e.build_index()
    return e


@pytest.fixture
def indexer(engine):
    ix = ui.Indexer(engine)
    yield ix
    ix.close()


class Gate:
    """Makes every index build wait until released, and records which articles each build saw."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.started = threading.Semaphore(0)
        self.seen: list[list[str]] = []

    def wait_started(self) -> None:
        assert self.started.acquire(timeout=10), "no build started"


@pytest.fixture
def gate(monkeypatch):
    g = Gate()
    real = index_mod.build_index

    def gated(settings, embedder, *, force=False):
        g.seen.append(sorted(p.name for p in settings.corpus_path.iterdir() if not p.name.startswith(".")))
        g.started.release()
        assert g.open.wait(20), "the test never opened the gate"
        return real(settings, embedder, force=force)

    monkeypatch.setattr(index_mod, "build_index", gated)
    yield g
    g.open.set()


def corpus_names(engine) -> list[str]:
    return sorted(p.name for p in engine.settings.corpus_path.iterdir() if not p.name.startswith("."))


def test_upload_returns_at_once_and_questions_are_answered_while_it_is_indexed(engine, indexer, gate):
    t0 = time.perf_counter()
    job = indexer.submit("lighthouse.txt", LIGHTHOUSE)
    assert time.perf_counter() - t0 < 1.0, "the upload waited for its indexing"
    gate.wait_started()
    assert job.state == "indexing" and job.saved == "lighthouse.txt"
    panel = indexer.status_html()
    assert "Indexing <b>lighthouse.txt</b> since" in panel

    t0 = time.perf_counter()
    answer = engine.answer("Who plays Irving in Severance?")  # from the current index, not waiting for the build
    assert time.perf_counter() - t0 < 5.0 and answer.passages

    gate.open.set()
    assert indexer.wait_idle(20)
    assert job.state == "added" and job.chunks >= 1
    top = engine.retrieve("Who keeps the Gullwing lighthouse on Marrow Point?", k=3)[0]
    assert top.source == "lighthouse.txt"
    panel = indexer.status_html()
    assert "Added <b>lighthouse.txt</b>" in panel and "4</b> articles" in panel and "Indexing" not in panel
    assert f"{job.chunks} chunk" in ui.render_job(job, indexer.ahead(job))


def test_uploads_wait_in_a_queue_and_are_indexed_one_at_a_time(engine, indexer, gate):
    seed = corpus_names(engine)
    first = indexer.submit("lighthouse.txt", LIGHTHOUSE)
    gate.wait_started()
    second = indexer.submit("ferry.txt", FERRY)
    third = indexer.submit("bakery.md", BAKERY)
    assert (indexer.ahead(first), indexer.ahead(second), indexer.ahead(third)) == (0, 1, 2)
    assert "queued: 2 ahead" in ui.render_job(third, indexer.ahead(third))
    assert "queued: 1 ahead" in ui.render_job(second, indexer.ahead(second))
    panel = indexer.status_html()
    assert "Queued (2): ferry.txt, bakery.md" in panel
    assert "ferry.txt" not in corpus_names(engine)  # saved, but not in the corpus until its turn

    gate.open.set()
    assert indexer.wait_idle(30)
    assert [j.state for j in (first, second, third)] == ["added"] * 3
    assert gate.seen == [  # each build had exactly one new article
        sorted([*seed, "lighthouse.txt"]),
        sorted([*seed, "lighthouse.txt", "ferry.txt"]),
        sorted([*seed, "lighthouse.txt", "ferry.txt", "bakery.md"]),
    ]
    assert engine.index.manifest["counts"]["documents"] == len(seed) + 3


def test_a_name_already_queued_or_in_the_corpus_is_refused_at_once(engine, indexer, gate):
    indexer.submit("lighthouse.txt", LIGHTHOUSE)
    gate.wait_started()
    indexer.submit("ferry.txt", FERRY)
    for name in ("lighthouse.txt", "ferry.txt"):
        with pytest.raises(ui.InputError, match=rf"{name} is already (queued|being indexed)"):
            indexer.submit(name, BAKERY)
    with pytest.raises(ui.InputError, match="002_e1a1f62939dbe07c.txt is already in the corpus"):
        indexer.submit("002_e1a1f62939dbe07c.txt", BAKERY)
    with pytest.raises(ui.InputError, match="not UTF-8"):
        indexer.submit("latin.txt", "Caf\u00e9".encode("latin-1"))


def test_an_upload_the_indexer_skips_is_taken_out_of_the_corpus(engine, indexer, gate):
    indexer.submit("lighthouse.txt", LIGHTHOUSE)
    gate.wait_started()
    job = indexer.submit("ferry.txt", FERRY)
    staged = [p for p in engine.settings.corpus_path.rglob("ferry.txt")]
    assert len(staged) == 1
    staged[0].write_bytes("Caf\u00e9 cr\u00e8me".encode("latin-1"))  # changed on disk while queued
    gate.open.set()
    assert indexer.wait_idle(20)
    assert job.state == "refused" and "not UTF-8" in job.detail
    assert "ferry.txt" not in corpus_names(engine) and not list(engine.settings.corpus_path.rglob("ferry.txt"))
    assert "ferry.txt" not in engine.index.manifest["documents"]
    assert "Not added" in ui.render_job(job, 0) and "not UTF-8" in indexer.status_html()


def test_the_worker_survives_a_failed_build(engine, indexer, monkeypatch):
    real = index_mod.build_index
    calls = []

    def flaky(settings, embedder, *, force=False):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return real(settings, embedder, force=force)

    monkeypatch.setattr(index_mod, "build_index", flaky)
    failed = indexer.submit("lighthouse.txt", LIGHTHOUSE)
    assert indexer.wait_idle(20)
    ok = indexer.submit("ferry.txt", FERRY)
    assert indexer.wait_idle(20)
    assert failed.state == "failed" and "disk on fire" not in failed.detail and "server log" in failed.detail
    assert "lighthouse.txt" not in corpus_names(engine)
    assert ok.state == "added"


def test_uploads_left_queued_by_a_previous_run_are_indexed(engine):
    first = ui.Indexer(engine)
    staging = first.staging
    staging.mkdir()
    (staging / "lighthouse.txt").write_bytes(LIGHTHOUSE)
    (staging / ".upload-x.part").write_bytes(b"half")  # a half-written temp file is not an upload
    ix = ui.Indexer(engine)
    try:
        assert [j.saved for j in ix.resume()] == ["lighthouse.txt"]
        assert ix.wait_idle(20)
        assert "lighthouse.txt" in engine.index.manifest["documents"]
    finally:
        ix.close()


def test_read_only_refuses_uploads(engine):
    ix = ui.Indexer(engine, read_only=True)
    with pytest.raises(ui.InputError, match="read-only"):
        ix.submit("lighthouse.txt", LIGHTHOUSE)
    assert ix.resume() == []
    assert "lighthouse.txt" not in corpus_names(engine)


def test_upload_handler_says_what_the_file_was_saved_as(engine, indexer, tmp_path: Path):
    # Gradio keeps an upload under the last part of its name: "x </b>.txt" arrives as .../b.txt
    path = tmp_path / "gradio" / "b.txt"
    path.parent.mkdir()
    path.write_bytes(LIGHTHOUSE)
    job, message = ui.receive_upload(indexer, str(path), "x </b>.txt")
    assert job is not None and job.saved == "b.txt"
    assert "x &lt;/b&gt;.txt" in message and "saved as <b>b.txt</b>" in message and "</b>.txt" not in message
    assert indexer.wait_idle(20)
    assert "saved as <b>b.txt</b>" in ui.render_job(job, 0)

    same = tmp_path / "gradio2" / "notes.txt"
    same.parent.mkdir()
    same.write_bytes(FERRY)
    job, message = ui.receive_upload(indexer, str(same), "notes.txt")
    assert "saved as" not in message and "<b>notes.txt</b>" in message


def test_refused_upload_message_names_the_file(engine, indexer, tmp_path: Path):
    bad = tmp_path / "bad" / "caf_e_.txt"
    bad.parent.mkdir()
    bad.write_bytes("caf\u00e9".encode("latin-1"))
    job, message = ui.receive_upload(indexer, str(bad), "caf<e>.txt")
    assert job is None and "qa-upload-refused" in message and "caf_e.txt was refused: not UTF-8" in message
    assert "<e>" not in message and html.escape("caf<e>.txt") in message
    assert ui.receive_upload(indexer, None) == (None, "")


def test_status_tick_sends_nothing_while_nothing_changes(engine, indexer, gate):
    version, job_id = indexer.version, None
    assert ui.status_tick(indexer, version, job_id) is None  # idle, nothing new: the tick is skipped
    job = indexer.submit("lighthouse.txt", LIGHTHOUSE)
    gate.wait_started()
    panel, message, seen = ui.status_tick(indexer, version, job.id)
    assert "Indexing <b>lighthouse.txt</b>" in panel and "indexing it now" in message and seen == indexer.version
    gate.open.set()
    assert indexer.wait_idle(20)
    panel, message, seen = ui.status_tick(indexer, seen, job.id)
    assert "Added <b>lighthouse.txt</b>" in panel and "you can ask about it now" in message
    assert ui.status_tick(indexer, seen, job.id) is None


def test_build_ui_in_read_only_mode_has_no_upload_control(engine):
    def kinds(demo) -> set[str]:
        return {c.get("type") for c in demo.config["components"]}

    assert "uploadbutton" in kinds(ui.build_ui(engine))
    demo = ui.build_ui(engine, read_only=True)
    assert "uploadbutton" not in kinds(demo) and "timer" not in kinds(demo)
    assert "read-only" in str(demo.config)


def test_an_upload_that_cannot_be_saved_is_reported(engine, indexer, tmp_path: Path):
    indexer.staging.write_text("not a folder")  # the staging folder cannot be made
    path = tmp_path / "lighthouse.txt"
    path.write_bytes(LIGHTHOUSE)
    job, message = ui.receive_upload(indexer, str(path), "lighthouse.txt")
    assert job is None and "lighthouse.txt could not be saved" in message and "qa-upload-refused" in message
    assert not indexer.busy


def test_upload_messages_are_one_line_of_html(engine, indexer, tmp_path: Path):
    path = tmp_path / "b.txt"
    path.write_bytes(LIGHTHOUSE)
    for name in ("two\n\n![x](http://host.example/x.png) lines.txt", "tab\there\r\n.exe"):
        _, message = ui.receive_upload(indexer, str(path), name)
        assert "\n" not in message and "\r" not in message and "\t" not in message


def test_a_feed_upload_queues_one_article_per_entry(make_engine, tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ferry.md").write_bytes(FERRY)
    engine = make_engine(corpus)
    engine.build_index()
    indexer = ui.Indexer(engine)
    feed = Path(__file__).parent / "fixtures" / "ingest" / "feed.xml"
    path = tmp_path / "gradio" / "feed.xml"
    path.parent.mkdir()
    path.write_bytes(feed.read_bytes())
    job, message = ui.receive_upload(indexer, str(path), "feed.xml")
    assert job is not None and "3 article(s) queued" in message
    assert indexer.wait_idle(30)
    dates = sorted(m["date"] for s, m in engine.index.documents.items() if m.get("url"))
    assert dates == ["2024-01-31", "2024-02-01", "2025-06-10"]
    again = tmp_path / "gradio2" / "feed.xml"
    again.parent.mkdir()
    again.write_bytes(feed.read_bytes())
    job, message = ui.receive_upload(indexer, str(again), "feed.xml")
    assert job is None and "0 article(s) queued (3 already in the corpus)" in message
    empty = tmp_path / "gradio3" / "empty.xml"
    empty.parent.mkdir()
    empty.write_bytes((feed.parent / "empty-feed.xml").read_bytes())
    job, message = ui.receive_upload(indexer, str(empty), "empty.xml")
    assert job is None and "qa-upload-refused" in message and "no entries" in message
    indexer.close()
