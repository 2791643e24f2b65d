"""qa.corpus: date header, body start, titles, skip-and-warn on bad files, offsets on disk text."""

from __future__ import annotations

import logging
import os
import socket
import stat
from pathlib import Path

import pytest

from qa import corpus as corpus_mod
from qa.corpus import derive_title, load_corpus, parse_document
from qa.errors import CorpusError

GOOD = "Severance season 2 is filming. Turturro says the wait is worth it.\n"


def write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_bytes(data.encode("utf-8"))
    else:
        path.write_bytes(data)
    return path


# ---------------------------------------------------------------- header and body


def test_date_header_parsed_and_body_starts_after_it():
    text = " date 2024-01-31 Severance season 2 may be months away."
    doc = parse_document("a.txt", text.encode())
    assert doc.date == "2024-01-31"
    assert doc.text == text
    assert doc.text[doc.body_start :] == "Severance season 2 may be months away."


def test_date_header_on_its_own_line():
    doc = parse_document("a.txt", b"date 2023-12-05\nFirst line of the article.\n")
    assert doc.date == "2023-12-05"
    assert doc.text[doc.body_start :].startswith("First line")


def test_no_header_means_no_date_and_body_from_start():
    doc = parse_document("a.txt", GOOD.encode())
    assert doc.date is None
    assert doc.body_start == 0


def test_invalid_header_date_is_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="qa.corpus"):
        doc = parse_document("bad-date.txt", b"date 2024-13-45 Some article text here.")
    assert doc.date is None
    assert doc.text[doc.body_start :] == "Some article text here."
    assert "bad-date.txt" in caplog.text


def test_header_without_body_is_refused():
    with pytest.raises(ValueError, match="no text"):
        parse_document("a.txt", b" date 2024-01-31   \n\n")


def test_sha256_is_of_the_file_bytes():
    import hashlib

    data = b" date 2024-01-31 Hello there.\r\n"
    assert parse_document("a.txt", data).sha256 == hashlib.sha256(data).hexdigest()


def test_seed_corpus_dates_and_bodies(seed_corpus):
    docs, skipped = load_corpus(seed_corpus)
    assert skipped == []
    by_source = {d.source: d for d in docs}
    assert by_source["002_e1a1f62939dbe07c.txt"].date == "2024-01-31"
    assert by_source["001_6f09f507c09e51e5.txt"].date == "2024-02-01"
    assert by_source["000_6db7c8a60c1e6205.txt"].date == "2025-06-10"
    for d in docs:
        assert "date" not in d.text[d.body_start : d.body_start + 10]
        assert d.text[d.body_start].isalpha()
        assert d.text == (seed_corpus / d.source).read_text(encoding="utf-8")


# ---------------------------------------------------------------- titles


def test_hash_like_name_gives_first_sentence_shortened():
    body = (
        "Severance season 2 may be months away, but series star John Turturro is teasing that it's "
        "worth the wait. Second sentence."
    )
    title = derive_title("002_e1a1f62939dbe07c.txt", body)
    assert title.endswith("…")
    assert len(title) <= 81
    assert body.startswith(title[:-1])
    assert not title[:-1].endswith(" ")
    # cut at a word boundary: the shortened title ends with a whole word of the body
    assert body[len(title) - 1] == " "


def test_hash_like_name_with_short_first_sentence():
    assert derive_title("6db7c8a60c1e6205.txt", "Irving meets Burt. Then more.") == "Irving meets Burt"


def test_readable_name_with_number_prefix():
    assert derive_title("03_Normans.txt", "The Normans were a people.") == "Normans"
    assert derive_title("12-apple_tv_news.md", "Body.") == "apple tv news"


def test_markdown_heading_wins():
    assert derive_title("03_Normans.md", "# The Norman Conquest\n\nIn 1066 ...") == "The Norman Conquest"
    assert derive_title("x.md", "\n## Closing hashes ##\ntext") == "Closing hashes"


def test_seed_titles_are_first_sentences(seed_corpus):
    docs, _ = load_corpus(seed_corpus)
    titles = {d.source: d.title for d in docs}
    assert titles["002_e1a1f62939dbe07c.txt"].startswith("Severance season 2 may be months away")
    assert all("6db7c8" not in t and "e1a1f6" not in t for t in titles.values())


# ---------------------------------------------------------------- bad files are skipped


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("latin1.txt", "Caf\xe9 society returns to the screen.".encode("latin-1"), "UTF-8"),
        ("empty.txt", b"", "empty"),
        ("blank.txt", b"  \n\n\t ", "empty"),
        ("binary.txt", b"Severance\x00\x01\x02\x00 season", "binary"),
    ],
)
def test_bad_file_skipped_with_warning_naming_it(tmp_path, caplog, name, data, reason):
    write(tmp_path, "good.txt", GOOD)
    write(tmp_path, name, data)
    with caplog.at_level(logging.WARNING, logger="qa.corpus"):
        docs, skipped = load_corpus(tmp_path)
    assert [d.source for d in docs] == ["good.txt"]
    assert [s.source for s in skipped] == [name]
    assert reason in skipped[0].reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(name in m and reason in m for m in warnings), warnings


def test_oversized_file_skipped_with_warning(tmp_path, caplog):
    write(tmp_path, "good.txt", GOOD)
    write(tmp_path, "huge.txt", "word " * 400)
    with caplog.at_level(logging.WARNING, logger="qa.corpus"):
        docs, skipped = load_corpus(tmp_path, max_file_bytes=1000)
    assert [d.source for d in docs] == ["good.txt"]
    assert [s.source for s in skipped] == ["huge.txt"]
    assert "huge.txt" in caplog.text and "max_file_bytes" in caplog.text


def test_other_extensions_and_hidden_files_are_ignored(tmp_path):
    write(tmp_path, "good.txt", GOOD)
    write(tmp_path, "notes.md", "# Notes\n\nA markdown article about Lumon.\n")
    write(tmp_path, "photo.jpg", b"\xff\xd8\xff\x00")
    write(tmp_path, ".hidden.txt", GOOD)
    write(tmp_path, ".git/HEAD.txt", GOOD)
    write(tmp_path, "sub/nested.txt", GOOD)
    docs, skipped = load_corpus(tmp_path)
    assert [d.source for d in docs] == ["good.txt", "notes.md", "sub/nested.txt"]
    assert skipped == []


def test_missing_folder_raises_corpus_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-corpus"
    with pytest.raises(CorpusError, match="no-such-corpus"):
        load_corpus(missing)


def test_a_file_instead_of_a_folder_raises(tmp_path):
    f = write(tmp_path, "a.txt", GOOD)
    with pytest.raises(CorpusError, match="a.txt"):
        load_corpus(f)


def test_folder_without_readable_article_raises_naming_folder_and_files(tmp_path):
    folder = tmp_path / "only-bad"
    write(folder, "empty.txt", b"")
    write(folder, "binary.txt", b"\x00\x00")
    with pytest.raises(CorpusError) as info:
        load_corpus(folder)
    msg = str(info.value)
    assert "only-bad" in msg and "empty.txt" in msg and "binary.txt" in msg


def test_empty_folder_raises(tmp_path):
    (tmp_path / "empty-corpus").mkdir()
    with pytest.raises(CorpusError, match="empty-corpus"):
        load_corpus(tmp_path / "empty-corpus")


# ---------------------------------------------------------------- newlines and offsets


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_crlf_offsets_match_open_read(tmp_path, newline):
    body = " date 2024-01-31 First paragraph here.\n\nSecond paragraph, with Mr. Smith.\nStill second.\n"
    path = write(tmp_path, "crlf.txt", body.replace("\n", newline).encode())
    docs, _ = load_corpus(tmp_path)
    doc = docs[0]
    on_disk = open(path, encoding="utf-8").read()
    assert doc.text == on_disk
    assert "\r" not in doc.text
    assert doc.date == "2024-01-31"
    i = on_disk.index("Second paragraph")
    assert doc.text[i : i + len("Second paragraph")] == "Second paragraph"
    assert doc.text[doc.body_start :].startswith("First paragraph")


def test_bom_is_kept_like_open_read(tmp_path):
    path = write(tmp_path, "bom.txt", "\ufeffdate 2024-01-31 Text after a BOM.".encode())
    doc = load_corpus(tmp_path)[0][0]
    assert doc.text == open(path, encoding="utf-8").read()
    assert doc.date == "2024-01-31"
    assert doc.text[doc.body_start :] == "Text after a BOM."


# ---------------------------------------------------------------- links and special files are never read


def skipped_reasons(folder: Path, caplog, **kw) -> tuple[list[str], dict[str, str]]:
    with caplog.at_level(logging.WARNING, logger="qa.corpus"):
        docs, skipped = load_corpus(folder, **kw)
    return [d.source for d in docs], {s.source: s.reason for s in skipped}


def test_symlink_to_a_file_outside_is_skipped_not_read(tmp_path, caplog):
    corpus = tmp_path / "corpus"
    write(corpus, "good.txt", GOOD)
    secret = write(tmp_path, "secret.txt", "Top secret launch codes are 1234 and 5678.\n")
    (corpus / "leak.txt").symlink_to(secret)
    (corpus / "passwd.txt").symlink_to("/etc/passwd")
    sources, skipped = skipped_reasons(corpus, caplog)
    assert sources == ["good.txt"]
    assert set(skipped) == {"leak.txt", "passwd.txt"}
    assert all("symbolic link" in r for r in skipped.values())
    assert "leak.txt" in caplog.text and "passwd.txt" in caplog.text


def test_symlink_to_proc_file_with_size_zero_is_skipped(tmp_path, caplog):
    write(tmp_path, "good.txt", GOOD)
    (tmp_path / "status.txt").symlink_to("/proc/self/status")
    sources, skipped = skipped_reasons(tmp_path, caplog)
    assert sources == ["good.txt"] and "symbolic link" in skipped["status.txt"]


def test_dangling_and_looping_symlinks_are_skipped_with_a_warning(tmp_path, caplog):
    write(tmp_path, "good.txt", GOOD)
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "no-such-file.txt")
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    sources, skipped = skipped_reasons(tmp_path, caplog)
    assert sources == ["good.txt"]
    assert set(skipped) == {"dangling.txt", "loop.txt"}
    assert "dangling.txt" in caplog.text and "loop.txt" in caplog.text


def test_linked_folder_is_not_descended(tmp_path, caplog):
    corpus = tmp_path / "corpus"
    write(corpus, "good.txt", GOOD)
    write(tmp_path / "elsewhere", "outside.txt", "An article outside the corpus folder entirely.\n")
    (corpus / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (corpus / "self").symlink_to(corpus, target_is_directory=True)
    sources, skipped = skipped_reasons(corpus, caplog)
    assert sources == ["good.txt"]
    assert set(skipped) == {"linked", "self"}
    assert all("symbolic link" in r for r in skipped.values())


def test_corpus_folder_given_as_a_link_is_read(tmp_path):
    write(tmp_path / "real", "good.txt", GOOD)
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    docs, skipped = load_corpus(tmp_path / "alias")
    assert [d.source for d in docs] == ["good.txt"] and skipped == []


def test_fifo_is_skipped_without_opening_it(tmp_path, caplog):
    write(tmp_path, "good.txt", GOOD)
    os.mkfifo(tmp_path / "pipe.txt")  # opening it for reading would block forever
    sources, skipped = skipped_reasons(tmp_path, caplog)
    assert sources == ["good.txt"]
    assert "not a regular file" in skipped["pipe.txt"] and "pipe.txt" in caplog.text


def test_socket_and_device_are_skipped(tmp_path, caplog):
    write(tmp_path, "good.txt", GOOD)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tmp_path / "s.txt"))
        names = {"s.txt"}
        try:
            os.mknod(tmp_path / "null.txt", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
            names.add("null.txt")
        except (PermissionError, OSError):  # no CAP_MKNOD here: the socket alone is checked
            pass
        sources, skipped = skipped_reasons(tmp_path, caplog)
    finally:
        sock.close()
    assert sources == ["good.txt"]
    assert set(skipped) == names
    assert all("not a regular file" in r for r in skipped.values())


def test_read_regular_file_checks_the_bytes_read_not_the_reported_size():
    # /proc files report a size of 0: the limit must apply to what is actually read
    assert os.stat("/proc/self/status").st_size == 0
    with pytest.raises(ValueError, match="over the limit"):
        corpus_mod.read_regular_file(Path("/proc/self/status"), max_bytes=10)
    assert corpus_mod.read_regular_file(Path("/proc/self/status"), max_bytes=1_000_000).startswith(b"Name:")


def test_read_regular_file_refuses_links_and_fifos(tmp_path):
    target = write(tmp_path, "t.txt", GOOD)
    (tmp_path / "l.txt").symlink_to(target)
    os.mkfifo(tmp_path / "p.txt")
    with pytest.raises(ValueError, match="symbolic link"):
        corpus_mod.read_regular_file(tmp_path / "l.txt", 1000)
    with pytest.raises(ValueError, match="not a regular file"):
        corpus_mod.read_regular_file(tmp_path / "p.txt", 1000)


@pytest.mark.parametrize(
    "data", [b"\x01\x02\x03\x1b\x7f\n\t\x0b\x0c", b"... --- !!! ???\n\n* * *\n", b"date 2024-01-31 \x01\x02 -- ..."]
)
def test_file_without_a_letter_or_digit_is_skipped(tmp_path, caplog, data):
    write(tmp_path, "good.txt", GOOD)
    write(tmp_path, "noise.txt", data)
    sources, skipped = skipped_reasons(tmp_path, caplog)
    assert sources == ["good.txt"]
    assert "no readable text" in skipped["noise.txt"]
    assert "noise.txt" in caplog.text


def test_one_digit_is_readable_text():
    assert parse_document("n.txt", b"42\n").text == "42\n"


def test_file_name_not_utf8_is_skipped_with_a_printable_name(tmp_path, caplog):
    write(tmp_path, "good.txt", GOOD)
    (tmp_path / os.fsdecode(b"caf\xe9.txt")).write_text(GOOD)
    sources, skipped = skipped_reasons(tmp_path, caplog)
    assert sources == ["good.txt"]
    assert skipped == {"caf\\xe9.txt": "file name is not valid UTF-8; rename it"}


def test_folders_nested_too_deep_are_skipped_not_recursed(tmp_path, caplog):
    from qa.corpus import MAX_DEPTH

    write(tmp_path, "good.txt", GOOD)
    deep = tmp_path.joinpath(*["d"] * (MAX_DEPTH + 3))
    write(deep, "deep.txt", GOOD)
    write(tmp_path.joinpath(*["d"] * MAX_DEPTH), "ok.txt", GOOD)
    sources, skipped = skipped_reasons(tmp_path, caplog)
    assert sources == ["/".join(["d"] * MAX_DEPTH) + "/ok.txt", "good.txt"]
    assert list(skipped) == ["/".join(["d"] * (MAX_DEPTH + 1))]
