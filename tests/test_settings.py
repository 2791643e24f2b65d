"""Every setting is checked when Settings are made (from code, QA_* and the CLI alike): a bad
value is an InputError naming the setting and what it may be. Settings are grouped by stage."""

from __future__ import annotations

import dataclasses
import math

import pytest

from qa.errors import InputError
from qa.settings import SECTIONS, Settings, describe, section_of

# One bad value per setting, by name (type errors are tried for every setting besides).
BAD = {
    "corpus_dir": "news\x00",
    "index_dir": "\x00",
    "model_path": "models/\x00x",
    "reader_weights": "w\x00",
    "cross_rerank_weights": "c\x00",
    "milvus_uri": "ftp://milvus.example.com",
    "milvus_collection": "my-collection!",
    "model_id": " ",
    "embedder": "word2vec",
    "store": "elasticsearch",
    "fusion": "max",
    "reader": "llm",
    "reader_backend": "cuda",
    "abstain_model": "1,2,3",
    "reader_abstain_model": "nan,1",
    "reader_rank_model": "1,2,x",
    "rerank_model": "0.5,1",
    "dense_weight": 1.5,
    "reader_window_tokens": 50,
    "fetch_timeout": 0,
    "fetch_private": "yes",
}


def _bad_value(f: dataclasses.Field):
    if f.name in BAD:
        return BAD[f.name]
    if f.type in ("int", int):
        return -1
    if f.type in ("float", float):
        return math.inf
    raise AssertionError(f"no bad value for the string setting {f.name}: add one to BAD")


@pytest.mark.parametrize("f", dataclasses.fields(Settings), ids=lambda f: f.name)
def test_every_setting_refuses_a_bad_value_naming_itself(f):
    with pytest.raises(InputError) as info:
        Settings(**{f.name: _bad_value(f)})
    msg = str(info.value)
    assert f.name in msg and f"QA_{f.name.upper()}" in msg and "must be" in msg


@pytest.mark.parametrize("f", dataclasses.fields(Settings), ids=lambda f: f.name)
def test_every_setting_refuses_a_value_of_the_wrong_type(f):
    wrong = "ten" if f.type in ("int", "float", "bool", int, float, bool) else 10
    with pytest.raises(InputError, match=f.name):
        Settings(**{f.name: wrong})


@pytest.mark.parametrize("name", ["store", "fusion", "candidates", "milvus_collection"])
def test_bad_environment_values_are_refused_at_creation(monkeypatch, name):
    monkeypatch.setenv(f"QA_{name.upper()}", "-1!")
    with pytest.raises(InputError, match=f"QA_{name.upper()}"):
        Settings.from_env()


def test_every_setting_is_in_exactly_one_stage():
    names = [n for n, _, _ in describe()]
    grouped = [n for stage in SECTIONS.values() for n in stage]
    assert sorted(grouped) == sorted(names)
    assert section_of("candidates") == "retrieval" and section_of("store") == "store"
    assert Settings().section("store") == {"store": "faiss", "milvus_uri": "", "milvus_collection": "qa_chunks"}
    with pytest.raises(InputError, match="no section"):
        Settings().section("nope")


def test_good_values_are_accepted():
    s = Settings(store="milvus", milvus_uri="http://user:secret@db:19530", milvus_collection="news_2025")
    assert s.store == "milvus"
    assert Settings(milvus_uri="/data/milvus.db").milvus_uri.endswith(".db")


@pytest.mark.parametrize(
    "assignment, named",
    [
        ("store=solr", "setting store (env QA_STORE) must be one of"),
        ("candidates=many", "setting candidates (env QA_CANDIDATES) must be an integer"),
        ("stor=milvus", "did you mean store"),
        ("store", "NAME=VALUE"),
        ("milvus_collection=a-b", "setting milvus_collection"),
    ],
)
def test_command_line_settings_are_checked_before_anything_runs(capsys, tmp_path, assignment, named):
    from qa.cli import main

    assert main(["--index", str(tmp_path / "never"), "--set", assignment, "index"]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_command_line_settings_reach_the_engine(monkeypatch, tmp_path):
    from qa import cli
    from qa import engine as engine_mod

    seen = {}

    def fake_get_engine(corpus, index, **overrides):
        seen.update(overrides, corpus=corpus, index=index)
        raise InputError("stop here")

    monkeypatch.setattr(engine_mod, "get_engine", fake_get_engine)
    argv = ["--set", "candidates=7", "--set", "fusion=weighted", "--set", f"index_dir={tmp_path}", "ask", "Who?"]
    assert cli.main(argv) == 2
    assert seen == {"candidates": 7, "fusion": "weighted", "corpus": None, "index": str(tmp_path)}
