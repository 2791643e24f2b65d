"""qa.engine and the public API: bad inputs raise InputError naming the value, bad corpus files are
skipped, the folders come from arguments or QA_CORPUS_DIR / QA_INDEX_DIR."""

from __future__ import annotations

import pytest
from conftest import FakeEmbedder

import qa
from qa import engine as engine_mod
from qa.errors import CorpusError, InputError

BAD_QUESTIONS = [
    pytest.param("", "empty", id="empty"),
    pytest.param("   \n\t  ", "empty", id="whitespace"),
    pytest.param("Who plays Irving?" + "x" * 99_983, "100,000", id="100KB"),
    pytest.param(42, "int", id="int"),
    pytest.param(None, "NoneType", id="None"),
    pytest.param(b"Who plays Irving?", "bytes", id="bytes"),
    pytest.param(["Who plays Irving?"], "list", id="list"),
]
BAD_KS = [
    pytest.param(0, "0", id="zero"),
    pytest.param(-1, "-1", id="negative"),
    pytest.param("5", "'5'", id="string"),
    pytest.param(10**9, "1000000000", id="huge"),
    pytest.param(101, "101", id="max_k+1"),
    pytest.param(2.5, "2.5", id="float"),
    pytest.param(True, "True", id="bool"),
    pytest.param(None, "None", id="None"),
]


@pytest.fixture
def engine(make_engine, seed_corpus):
    return make_engine(seed_corpus)


@pytest.fixture
def fresh_globals(monkeypatch, fake_embedder):
    """The module-level API with the fake embedder and an empty engine cache."""
    monkeypatch.setattr(engine_mod, "default_embedder", lambda settings: fake_embedder)
    monkeypatch.setattr(engine_mod, "_ENGINES", {})
    for name in ("QA_CORPUS_DIR", "QA_INDEX_DIR"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("method", ["retrieve", "answer"])
@pytest.mark.parametrize("question, named", BAD_QUESTIONS)
def test_bad_question_is_refused_naming_it(engine, fake_embedder, method, question, named):
    with pytest.raises(InputError) as info:
        getattr(engine, method)(question)
    assert named in str(info.value)
    assert "question" in str(info.value)
    assert fake_embedder.calls == 0, "refused before anything was embedded or built"
    assert not engine.settings.index_path.exists()


@pytest.mark.parametrize("method", ["retrieve", "answer"])
@pytest.mark.parametrize("k, named", BAD_KS)
def test_bad_k_is_refused_naming_it(engine, fake_embedder, method, k, named):
    with pytest.raises(InputError) as info:
        getattr(engine, method)("Who plays Irving?", k=k)
    msg = str(info.value)
    assert f"Currently, it is {named}." in msg and "k must be" in msg
    assert fake_embedder.calls == 0


def test_input_error_is_a_value_error_and_a_qa_error(engine):
    with pytest.raises(ValueError):
        engine.retrieve("")
    with pytest.raises(qa.QAError):
        engine.retrieve("")


def test_long_question_message_is_short(engine):
    with pytest.raises(InputError) as info:
        engine.answer("x" * 100_000)
    assert len(str(info.value)) < 300
    assert "2,000" in str(info.value) and "max_question_chars" in str(info.value)


def test_question_at_the_limit_is_accepted(make_engine, seed_corpus):
    engine = make_engine(seed_corpus, max_question_chars=30)
    assert engine.retrieve("  Irving and Burt work at Lumon?\n", k=1)  # 30 characters once stripped
    with pytest.raises(InputError, match="31 characters"):
        engine.retrieve("Irving and Burt work at Lumon??", k=1)


def test_k_bounds_are_accepted(make_engine, seed_corpus):
    engine = make_engine(seed_corpus, max_k=3)
    assert len(engine.retrieve("Irving", k=1)) == 1
    assert len(engine.retrieve("Irving", k=3)) == 3
    with pytest.raises(InputError, match="from 1 to 3"):
        engine.retrieve("Irving", k=4)


def test_history_must_be_a_list(engine):
    with pytest.raises(InputError, match="history"):
        engine.answer("Who plays Irving?", history="the earlier chat")


def test_history_entries_must_be_messages(engine):
    with pytest.raises(InputError, match="history"):
        engine.answer("And who plays him?", history=["Who plays Irving?", "John Turturro"])


@pytest.mark.parametrize("call", ["retrieve", "answer"])
def test_public_api_refuses_bad_input_without_loading_anything(call, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_mod, "_ENGINES", {})
    monkeypatch.setattr(engine_mod, "_EMBEDDERS", {})
    kwargs = dict(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    with pytest.raises(InputError, match="empty"):
        getattr(qa, call)("  ", **kwargs)
    with pytest.raises(InputError, match="'five'"):
        getattr(qa, call)("Who plays Irving?", k="five", **kwargs)
    assert engine_mod._EMBEDDERS == {}, "the model was not loaded"
    assert not (tmp_path / "index").exists()


# ---------------------------------------------------------------- corpus problems


def test_binary_file_in_corpus_is_skipped_and_the_rest_answers(engine, seed_corpus):
    (seed_corpus / "zz_binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (seed_corpus / "yy_latin1.txt").write_bytes("Caf\xe9 Lumon".encode("latin-1"))
    report = engine.build_index()
    assert report.documents == 3
    assert sorted(s.split(":")[0] for s in report.skipped) == ["yy_latin1.txt", "zz_binary.txt"]
    answer = engine.answer("Who plays Irving?")
    assert answer.passages
    assert all(p.source not in ("zz_binary.txt", "yy_latin1.txt") for p in answer.passages)
    for c in answer.citations:
        text = open(seed_corpus / c.source, encoding="utf-8").read()
        assert text[c.start : c.end] == c.quote
    assert engine.retrieve("Who plays Irving?", k=2)


def test_missing_corpus_folder_raises_corpus_error(make_engine, tmp_path):
    engine = make_engine(tmp_path / "no-corpus-here")
    with pytest.raises(CorpusError, match="no-corpus-here"):
        engine.build_index()
    with pytest.raises(CorpusError, match="no-corpus-here"):
        engine.retrieve("Who plays Irving?")


def test_index_is_built_on_first_question(engine, fake_embedder):
    from qa.index import load_index

    assert load_index(engine.settings.index_path) is None
    engine.retrieve("Who plays Irving?", k=1)
    assert load_index(engine.settings.index_path) is not None
    n = len(fake_embedder.texts)
    engine.retrieve("Who plays Burt?", k=1)
    assert fake_embedder.texts[n:] == ["Who plays Burt?"]


# ---------------------------------------------------------------- folders and the module-level API


def test_env_vars_choose_the_folders(monkeypatch, tmp_path, fresh_globals):
    monkeypatch.setenv("QA_CORPUS_DIR", str(tmp_path / "env-corpus"))
    monkeypatch.setenv("QA_INDEX_DIR", str(tmp_path / "env-index"))
    engine = qa.get_engine()
    assert engine.settings.corpus_dir == str(tmp_path / "env-corpus")
    assert engine.settings.index_dir == str(tmp_path / "env-index")
    assert qa.get_engine() is engine
    other = qa.get_engine(corpus_dir=tmp_path / "arg-corpus")
    assert other.settings.corpus_dir == str(tmp_path / "arg-corpus")
    assert other.settings.index_dir == str(tmp_path / "env-index")
    assert other is not engine


def test_defaults_without_env(fresh_globals):
    engine = qa.get_engine()
    assert (engine.settings.corpus_dir, engine.settings.index_dir) == ("corpus", "index")


def test_bad_env_value_is_an_input_error_naming_it(monkeypatch, fresh_globals):
    monkeypatch.setenv("QA_MAX_K", "lots")
    with pytest.raises(InputError, match="QA_MAX_K.*'lots'"):
        qa.get_engine()


def test_module_api_end_to_end_with_env_folders(monkeypatch, tmp_path, seed_corpus, fake_embedder, fresh_globals):
    monkeypatch.setenv("QA_CORPUS_DIR", str(seed_corpus))
    monkeypatch.setenv("QA_INDEX_DIR", str(tmp_path / "env-index"))
    report = qa.build_index()
    assert report.documents == 3 and report.index_dir == str(tmp_path / "env-index")
    assert (tmp_path / "env-index" / "CURRENT").is_file()
    passages = qa.retrieve("microdata refinement", k=2)
    assert "microdata" in passages[0].text
    answer = qa.answer("Who plays Irving?")
    assert isinstance(answer, qa.Answer)
    assert qa.build_index().embedded_chunks == 0
    assert isinstance(fake_embedder, FakeEmbedder) and fake_embedder.calls > 0


def test_a_version_published_by_another_process_is_followed(seed_corpus, make_engine, tmp_path, monkeypatch):
    """An app replica (engine B) picks up what a builder (engine A, another process in real
    life) publishes, without a restart; a broken new version is not taken."""
    from qa import engine as engine_mod

    monkeypatch.setattr(engine_mod, "FOLLOW_SECONDS", 0.0)
    builder, replica = make_engine(seed_corpus), make_engine(seed_corpus)
    builder.build_index()
    first = replica.index
    (seed_corpus / "new.txt").write_text("The Lumon archive opened to visitors on Monday.\n", encoding="utf-8")
    builder.build_index()
    assert replica.index is not first and "new.txt" in replica.index.documents
    assert replica.retrieve("When did the Lumon archive open to visitors?", 1)[0].source == "new.txt"
    good = replica.index
    (seed_corpus / "more.txt").write_text("Another short article about nothing much.\n", encoding="utf-8")
    builder.build_index()
    current = tmp_path / "index" / "CURRENT"
    name, _ = current.read_text().split()
    current.write_text(f"{name} {'0' * 64}")  # the new version's manifest no longer matches
    assert replica.index is good
