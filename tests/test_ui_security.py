"""The app's HTTP guard: a Content Security Policy on every response, request size limits, and
uploads switched off in read-only mode (a tiny Starlette app behind the middleware, no Gradio)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from qa import ui


async def echo(request):
    body = await request.body()
    return PlainTextResponse(f"got {len(body)} bytes")


def client(read_only: bool = False) -> TestClient:
    routes = [
        Route(path, echo, methods=["GET", "POST"]) for path in ("/", "/gradio_api/queue/join", "/gradio_api/upload")
    ]
    app = Starlette(routes=routes, middleware=ui.launch_kwargs(read_only=read_only)["app_kwargs"]["middleware"])
    return TestClient(app)


def directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def test_every_response_carries_the_content_security_policy():
    c = client()
    for r in (c.get("/"), c.post("/gradio_api/queue/join", content=b"{}"), c.get("/missing")):
        csp = directives(r.headers["content-security-policy"])
        assert csp["default-src"] == ["'self'"]
        assert csp["img-src"] == ["'self'", "data:", "blob:"]
        assert csp["connect-src"] == ["'self'"]
        assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'self'"]
        assert csp["frame-ancestors"] == ["'none'"]
        assert not any("http" in v or v == "*" for values in csp.values() for v in values), "no other host allowed"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"


def test_oversized_request_bodies_are_refused_before_they_are_read():
    c = client()
    ok = c.post("/gradio_api/queue/join", content=b"x" * 1000)
    assert ok.status_code == 200 and ok.text == "got 1000 bytes"
    big = c.post("/gradio_api/queue/join", content=b"x" * (ui.REQUEST_MAX_BYTES + 1))
    assert big.status_code == 413 and f"{ui.REQUEST_MAX_BYTES:,} bytes" in big.text
    assert "content-security-policy" in big.headers

    def chunks():
        for _ in range(ui.REQUEST_MAX_BYTES // 65536 + 2):
            yield b"x" * 65536

    streamed = c.post("/gradio_api/queue/join", content=chunks())  # no Content-Length: counted as it arrives
    assert streamed.status_code == 413


def test_uploads_have_their_own_limit():
    c = client()
    r = c.post("/gradio_api/upload", content=b"x" * (ui.REQUEST_MAX_BYTES + 1))
    assert r.status_code == 200  # Gradio enforces max_file_size itself on this route


@pytest.mark.parametrize("path", ["/gradio_api/upload", "/gradio_api/upload/", "/gradio_api//upload"])
def test_read_only_mode_refuses_gradio_uploads(path):
    r = client(read_only=True).post(path, content=b"x")
    assert r.status_code == 403 and "read-only" in r.text
    assert client(read_only=True).get("/").status_code == 200


def test_launch_kwargs_set_the_limits_deliberately():
    kw = ui.launch_kwargs()
    assert kw["max_file_size"] == ui.UPLOAD_GRADIO_MAX_BYTES > ui.UPLOAD_MAX_BYTES
    assert kw["show_error"] is False and kw["ssr_mode"] is False and kw["mcp_server"] is False
    assert kw["run_history"] is False
