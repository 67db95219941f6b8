"""The lean upstream transport (api/upstream.py) and the one-watcher relay, on loopback."""

from __future__ import annotations

import httpx
import pytest
import structlog
import trio

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.api.upstream import Http1Transport
from mesh_node.timing import Timings
from tests.support.api_servers import (
    WAIT_S,
    ScriptedUpstream,
    api_serving,
    closed_port_url,
    raw_upstream,
    read_request_head,
)

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
CHUNKED = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
           b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")


def _client(timeout: float = WAIT_S) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Http1Transport(), timeout=timeout)


async def test_apilab_transport_reuses_one_connection() -> None:
    conns: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        conns.append(1)
        while await read_request_head(stream):
            await stream.send_all(OK)

    async with raw_upstream(serve) as url, _client() as c:
        bodies = [(await c.post(url + "/x", content=b"{}")).text for _ in range(3)]
    assert bodies == ["ok"] * 3 and len(conns) == 1


async def test_apilab_transport_replaces_a_closed_idle_connection() -> None:
    conns: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        conns.append(1)
        await read_request_head(stream)
        await stream.send_all(OK)  # keep-alive promised, then closed: a stale pooled socket
        await stream.aclose()

    async with raw_upstream(serve) as url, _client() as c:
        first = await c.post(url + "/x", content=b"{}")
        await trio.sleep(0.05)  # let the close arrive
        second = await c.post(url + "/x", content=b"{}")
    assert first.text == second.text == "ok" and len(conns) == 2


async def test_apilab_transport_streams_chunked_bodies() -> None:
    async def serve(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(CHUNKED)

    async with raw_upstream(serve) as url, _client() as c:
        async with c.stream("POST", url + "/x", content=b"{}") as r:
            chunks = [bytes(b) async for b in r.aiter_raw()]
    assert b"".join(chunks) == b"hello world" and r.status_code == 200


async def test_apilab_transport_errors_are_httpx_errors() -> None:
    async def silent_close(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.aclose()

    async def never_answers(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await trio.sleep(WAIT_S)

    async with _client(timeout=0.3) as c:
        with pytest.raises(httpx.ConnectError):
            await c.post(closed_port_url() + "/x", content=b"{}")
        async with raw_upstream(silent_close) as url:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.post(url + "/x", content=b"{}")
        async with raw_upstream(never_answers) as url:
            with pytest.raises(httpx.ReadTimeout):
                await c.post(url + "/x", content=b"{}")


async def test_apilab_streamed_relay_completes_without_crash_logs() -> None:
    """The client's close arrives inside the relay's last send: the answer still counts."""
    up = ScriptedUpstream("b")
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with api_serving(up.app()) as up_url:
        ctx = FakeMeshContext([FakeModel("m", routes=[Route("b", up_url, True)])])
        app = build_app(ctx, Timings())
        with structlog.testing.capture_logs() as logs:
            async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
                for _ in range(5):
                    r = await c.post("/v1/chat/completions", json=body)
                    assert r.status_code == 200 and b"[DONE]" in r.content
    events = [e["event"] for e in logs]
    assert events.count("request_done") == 5
    assert "request_crashed" not in events and "client_disconnected" not in events
    assert b'status="499"' not in app.state.metrics.render()
