"""`python app.py` as a subprocess with the real model, driven through gradio_client (the API endpoints)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from browser_util import copy_seed_corpus, import_app, running_app

app = import_app()
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
READER = ("reader", "correct horse battery")


def test_host_and_port_from_flags_then_env_then_defaults(monkeypatch):
    monkeypatch.delenv("QA_HOST", raising=False)
    monkeypatch.delenv("QA_PORT", raising=False)
    assert (app.parse_args([]).host, app.parse_args([]).port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("QA_HOST", "0.0.0.0")
    monkeypatch.setenv("QA_PORT", "8123")
    assert (app.parse_args([]).host, app.parse_args([]).port) == ("0.0.0.0", 8123)
    args = app.parse_args(["--host", "127.0.0.2", "--port", "9001"])
    assert (args.host, args.port) == ("127.0.0.2", 9001)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app-api")
    corpus = copy_seed_corpus(tmp / "corpus")
    with running_app(corpus, tmp / "index", tmp / "app.log") as url:
        yield url, corpus, tmp / "app.log"


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[0], verbose=False)


@pytest.mark.slow
def test_the_app_built_the_index_before_serving(served):
    log = served[2].read_text(errors="replace")
    assert "index: 3 articles" in log and "added 3" in log
    assert log.index("index: 3 articles") < log.index("serving on http://127.0.0.1:")


@pytest.mark.slow
def test_ask_answers_a_dev_question_with_citations(client):
    out = client.predict("Who plays Irving in Severance?", None, api_name="/ask")
    assert "Turturro" in out
    assert 'class="qa-marker"' in out and "<mark>" in out and "qa-refusal" not in out


@pytest.mark.slow
def test_ask_refuses_an_unanswerable_question(client):
    out = client.predict("What is the capital of France?", None, api_name="/ask")
    assert "Not in the articles" in out and "qa-refusal" in out and "qa-marker" not in out


@pytest.mark.slow
def test_answer_json_quotes_are_exact_slices_of_the_files(client, served):
    corpus = served[1]
    data = client.predict("Who plays Irving in Severance?", None, api_name="/answer_json")
    assert not data["abstained"] and data["confidence"] > 0.5 and "Turturro" in data["text"]
    assert data["citations"]
    for c in data["citations"]:
        assert f"[{c['number']}]" in data["text"]
        assert (corpus / c["source"]).read_text(encoding="utf-8")[c["start"] : c["end"]] == c["quote"]
    refusal = client.predict("What is the capital of France?", None, api_name="/answer_json")
    assert refusal["abstained"] and refusal["citations"] == [] and refusal["message"]


@pytest.mark.slow
def test_follow_up_with_history_is_rewritten(client):
    first = client.predict("Who plays Mark?", None, api_name="/answer_json")
    history = [{"role": "user", "content": "Who plays Mark?"}, {"role": "assistant", "content": first["text"]}]
    follow = client.predict("What did he caption his post?", history, api_name="/answer_json")
    assert follow["query"] != "What did he caption his post?" and "Mark" in follow["query"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "needle"), [("   ", "Please type a question"), ("x" * 100_000, "characters long")]
)
def test_bad_questions_get_a_polite_error(client, question, needle):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=needle) as err:
        client.predict(question, None, api_name="/ask")
    assert "Traceback" not in str(err.value)


@pytest.fixture(scope="module")
def read_only_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app-read-only")
    corpus = copy_seed_corpus(tmp / "corpus")
    env = {"QA_AUTH": ":".join(READER)}
    with running_app(corpus, tmp / "index", tmp / "app.log", args=["--read-only"], env=env) as url:
        yield url, tmp / "app.log"


@pytest.mark.slow
def test_read_only_app_with_a_password(read_only_app):
    from gradio_client import Client

    url, log = read_only_app
    with _DIRECT.open(url, timeout=10) as r:
        assert "img-src 'self' data: blob:" in r.headers["Content-Security-Policy"]
    upload = urllib.request.Request(
        url + "gradio_api/upload",
        data=b"--b\r\nContent-Disposition: form-data; name=files; filename=a.txt\r\n\r\nhello\r\n--b--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        _DIRECT.open(upload, timeout=10)
    assert err.value.code == 403
    with pytest.raises(Exception):  # noqa: B017 - no password: gradio_client cannot even read the app's config
        Client(url, verbose=False).predict("Who plays Irving in Severance?", None, api_name="/ask")
    client = Client(url, auth=READER, verbose=False)
    assert "Turturro" in client.predict("Who plays Irving in Severance?", None, api_name="/ask")
    text = log.read_text(errors="replace")
    assert "(read-only, password required (1 user))" in text and READER[1] not in text
