"""Every error of the API in OpenAI's shape, served by hypercorn on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import trio
import trio.lowlevel

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.timing import Timings
from tests.support.api_servers import api_serving

FAST = Timings(route_retry_window=0.3, upstream_connect_timeout=1.0, upstream_read_timeout=0.3)
CHAT = {"model": "gemma", "messages": [{"role": "user", "content": "hi"}]}


def _ctx(**kw: object) -> FakeMeshContext:
    return FakeMeshContext([FakeModel("gemma-3-270m", aliases=("gemma",)),
                            FakeModel("other-model")], **kw)  # type: ignore[arg-type]


def _err(r: httpx.Response) -> dict[str, object]:
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert r.headers["x-request-id"]
    return body["error"]  # type: ignore[no-any-return]


async def test_api_errors_400_401_404_405() -> None:
    ctx = _ctx(api_key="sekret")
    async with api_serving(build_app(ctx, FAST)) as url, httpx.AsyncClient(base_url=url) as c:
        ok = {"authorization": "Bearer sekret"}
        r = await c.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 401 and _err(r)["code"] == "invalid_api_key"
        r = await c.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer x"})
        assert r.status_code == 401 and _err(r)["type"] == "invalid_request_error"
        r = await c.get("/v1/models")
        assert r.status_code == 401
        r = await c.post("/v1/chat/completions", content=b"{bad", headers=ok)
        assert r.status_code == 400 and _err(r)["code"] == "invalid_json"
        r = await c.post("/v1/chat/completions", json={"messages": []}, headers=ok)
        assert r.status_code == 400 and _err(r)["param"] == "model"
        r = await c.post("/v1/completions", json={"model": "gemma"}, headers=ok)
        assert r.status_code == 400 and _err(r)["param"] == "prompt"
        r = await c.post("/v1/chat/completions", json={**CHAT, "model": "nope"}, headers=ok)
        err = _err(r)
        assert r.status_code == 404 and err["code"] == "model_not_found"
        assert "gemma-3-270m" in str(err["message"]) and "other-model" in str(err["message"])
        r = await c.get("/v1/chat/completions", headers=ok)
        assert r.status_code == 405 and _err(r)["code"] == "method_not_allowed"
        r = await c.get("/v2/nothing")
        assert r.status_code == 404 and _err(r)["code"] == "unknown_url"


async def test_api_errors_413_stops_reading_early() -> None:
    ctx = _ctx(max_body_bytes=1000)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(2000):  # 2000 x 1000 bytes if nobody stopped us
            sent += 1
            yield b" " * 1000
            await trio.lowlevel.checkpoint()

    async with api_serving(build_app(ctx, FAST)) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.post("/v1/chat/completions", json={**CHAT, "pad": "x" * 2000})
        assert r.status_code == 413 and _err(r)["code"] == "request_too_large"
        try:
            r = await c.post("/v1/chat/completions", content=body())  # chunked: no length
            assert r.status_code == 413
        except httpx.HTTPError:
            pass  # the server may close before the client finishes sending: also a stop
    assert sent < 2000


async def test_api_errors_503_retry_after_when_no_host_ready() -> None:
    ctx = _ctx()
    async with api_serving(build_app(ctx, FAST)) as url, httpx.AsyncClient(base_url=url) as c:
        start = trio.current_time()
        r = await c.post("/v1/chat/completions", json=CHAT)
        waited = trio.current_time() - start
    assert r.status_code == 503 and _err(r)["code"] == "no_ready_host"
    assert int(r.headers["retry-after"]) >= 1
    assert 0.25 <= waited < 3.0  # it waited for the retry window, then gave up
    assert ctx.waits >= 1


async def test_api_errors_504_on_upstream_read_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    ctx = _ctx()
    ctx.set_routes("gemma-3-270m", [Route("node-a", "http://127.0.0.1:1", True)])
    app = build_app(ctx, FAST, transport=httpx.MockTransport(handler))
    async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 504 and _err(r)["code"] == "upstream_timeout"


async def test_api_request_id_echoed_or_generated() -> None:
    async with api_serving(build_app(_ctx(), FAST)) as url, httpx.AsyncClient(base_url=url) as c:
        r1 = await c.get("/healthz", headers={"x-request-id": "client-42"})
        r2 = await c.get("/nowhere")
    assert r1.headers["x-request-id"] == "client-42"
    assert r2.headers["x-request-id"].startswith("req_")
