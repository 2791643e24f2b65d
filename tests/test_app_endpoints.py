"""The Gradio endpoints over HTTP, in this process with the fake embedder (fast): inputs they cannot
use give a clear message and no traceback, the pages carry the CSP, read-only refuses uploads."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import pytest
from browser_util import free_port

from qa import ui

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def launch(engine, read_only: bool = False):
    demo = ui.build_ui(engine, read_only=read_only)
    demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True, **ui.launch_kwargs(read_only))
    return demo


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from conftest import SEED_CORPUS, FakeEmbedder

    from qa.engine import Engine
    from qa.settings import Settings

    tmp = tmp_path_factory.mktemp("endpoints")
    shutil.copytree(SEED_CORPUS, tmp / "corpus")
    engine = Engine(
        Settings(corpus_dir=str(tmp / "corpus"), index_dir=str(tmp / "index"), reader="picker"), embedder=FakeEmbedder()
    )
    engine.build_index()
    demo = launch(engine)
    try:
        yield demo.local_url, engine
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[0], verbose=False)


BAD = [
    (1, None, "question must be text. Currently, it is int 1"),
    (True, None, "question must be text. Currently, it is bool True"),
    (["Who plays Irving?"], None, "question must be text. Currently, it is list"),
    ({"q": 1}, None, "question must be text. Currently, it is dict"),
    ("Who plays Irving?", 5, "history must be a list of {'role', 'content'} messages. Currently, it is int 5"),
    ("Who plays Irving?", 1.5, "Currently, it is float 1.5"),
    ("Who plays Irving?", True, "Currently, it is bool True"),
    ("Who plays Irving?", [{"role": "user"}], "history[0] must be a {'role', 'content'} message"),
    ("   ", None, "Please type a question"),
]


@pytest.mark.parametrize("api_name", ["/ask", "/answer_json"])
@pytest.mark.parametrize(("question", "history", "needle"), BAD)
def test_inputs_it_cannot_use_give_a_clear_error_and_no_traceback(client, capfd, api_name, question, history, needle):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict(question, history, api_name=api_name)
    assert needle in str(err.value) and "something went wrong" not in str(err.value)
    assert "Traceback" not in capfd.readouterr().err


def test_a_good_question_still_works(client):
    assert 'class="qa-turn"' in client.predict("Who plays Irving in Severance?", None, api_name="/ask")
    data = client.predict("Who plays Irving in Severance?", None, api_name="/answer_json")
    assert isinstance(data, dict) and "citations" in data


def test_a_huge_history_is_refused_and_not_echoed(served, capfd):
    body = json.dumps({"data": ["Who plays Irving?", [{"role": "user", "content": "x" * 3_000_000}]]}).encode()
    req = urllib.request.Request(
        served[0] + "gradio_api/call/ask", data=body, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        _DIRECT.open(req, timeout=10)
    assert err.value.code == 413
    reply = err.value.read()
    assert len(reply) < 500 and b"xxxx" not in reply
    assert "Traceback" not in capfd.readouterr().err


def test_pages_carry_the_content_security_policy(served):
    with _DIRECT.open(served[0], timeout=10) as r:
        csp = r.headers["Content-Security-Policy"]
        page = r.read().decode()
    assert "img-src 'self' data: blob:" in csp and "connect-src 'self'" in csp
    assert "gradio_config" in page  # the page itself is still Gradio's


def test_read_only_app_refuses_gradio_uploads(served):
    demo = launch(served[1], read_only=True)
    try:
        req = urllib.request.Request(
            demo.local_url + "gradio_api/upload",
            data=b"--b\r\nContent-Disposition: form-data; name=files; filename=a.txt\r\n\r\nhello\r\n--b--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            _DIRECT.open(req, timeout=10)
        assert err.value.code == 403
        assert "uploadbutton" not in {c.get("type") for c in demo.config["components"]}
    finally:
        demo.close()
