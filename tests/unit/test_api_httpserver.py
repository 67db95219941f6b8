"""The API's own HTTP/1.1 server (api/httpserver.py): what it took over from hypercorn.

Keep-alive and pipelining, HEAD, chunked streaming with the head sent with the first chunk,
400/431 for broken requests, http.disconnect when the client leaves, the ASGI lifespan.
(Every API test also runs through it: tests/support/api_servers.py serves with serve_api.)
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs
from trio.testing import MockClock

from mesh_node.api import httpconn, httpserver
from tests.support.api_servers import WAIT_S
from tests.support.hostile_fuzz import fuzz_settings


class _App:
    """A tiny ASGI app: GET /s streams three chunks, anything else answers its path."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.disconnected = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                self.events.append(msg["type"])
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        if scope["path"] == "/wait":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            assert (await receive())["type"] == "http.request"
            assert (await receive())["type"] == "http.disconnect"
            self.disconnected.set()
            return
        if scope["path"] == "/s":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for i in range(3):
                await send({"type": "http.response.body", "body": b"data: %d\n\n" % i,
                            "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _raw(port: int, data: bytes, until: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    got = b""
    async with stream:
        await stream.send_all(data)
        with trio.move_on_after(WAIT_S):
            while until not in got:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                got += chunk
    return got


async def test_api_httpserver_keep_alive_pipelining_head_and_chunks() -> None:
    app = _App()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(httpserver.serve, app, "127.0.0.1", 0))
        assert app.events == ["lifespan.startup"]
        two = await _raw(port, b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /bb HTTP/1.1\r\n"
                         b"host: x\r\n\r\n", b"/bb")
        assert two.count(b"HTTP/1.1 200") == 2 and two.endswith(b"/bb")
        head = await _raw(port, b"HEAD /abc HTTP/1.1\r\nhost: x\r\n\r\n", b"\r\n\r\n")
        assert b"content-length: 4" in head.lower() and head.endswith(b"\r\n\r\n")
        s = await _raw(port, b"GET /s HTTP/1.1\r\nhost: x\r\n\r\n", b"0\r\n\r\n")
        assert b"transfer-encoding: chunked" in s.lower() and b"date: " in s.lower()
        assert s.startswith(b"HTTP/1.1 200 OK\r\n")
        assert s.endswith(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")
        bad = await _raw(port, b"GARBAGE\r\n\r\n", b"\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400")
        big = await _raw(port, b"GET / HTTP/1.1\r\nx: " + b"a" * 20_000, b"\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 431")
        nursery.cancel_scope.cancel()


async def test_api_httpserver_tells_the_app_when_the_client_leaves() -> None:
    app = _App()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(httpserver.serve, app, "127.0.0.1", 0))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
        await stream.receive_some(65536)  # the head and the first byte
        await stream.aclose()
        with trio.fail_after(WAIT_S):
            await app.disconnected.wait()
        nursery.cancel_scope.cancel()


async def test_api_httpserver_shutdown_runs_the_lifespan_shutdown() -> None:
    app = _App()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(httpserver.serve, app, "127.0.0.1", 0,
                                    shutdown_trigger=stop.wait))
        stop.set()
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


class _Wire:
    """A fake client connection: fixed chunks in (then EOF), everything sent kept."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.out = [c for c in chunks if c], b""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else b""

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.out += bytes(data)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class _Echo:
    """Reads the whole body, answers its length; /split tries a header with a CRLF."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while scope["path"] != "/early":  # /early answers without reading (a 413, a 401)
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg["body"]
            if not msg["more_body"]:
                break
        if scope["path"] == "/split":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"x-a", b"1\r\nset-cookie: evil=1")]})
        else:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"%d" % len(b"%d\n" % len(body)))]})
        await send({"type": "http.response.body", "body": b"%d\n" % len(body)})


def _serve(chunks: list[bytes], app: Any = None, **config: Any) -> bytes:
    wire = _Wire(chunks)
    conn = httpconn.Connection(wire, app or _Echo(), httpserver.ServerConfig(**config),  # type: ignore[arg-type]
                                  "http", None, None)
    with capture_logs() as logs:
        trio.run(conn.run, clock=MockClock(autojump_threshold=0))
    assert not [e for e in logs if e["event"] == "api_connection_failed"], logs
    return wire.out


def _statuses(out: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"(?:^|\n)HTTP/1\.1 (\d{3}) ", out)]


@pytest.mark.parametrize("raw,statuses", [
    (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
     b"0\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n", [400]),  # CL.TE: refused, not smuggled
    (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 30\r\n\r\nx", [400]),
    (b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\nxx", [501]),
    (b"GET / HTTP/1.1\r\nhost: x\r\nx: 1\r\n folded\r\n\r\n", [400]),
    (b"GET / HTTP/1.1\nhost: x\n\n", [400]),
    (b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\nx: 1\nbad\r\n\r\n",
     [200, 400]),
    (b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n"
     b"0\r\nt: 1\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n", [200, 200]),
    (b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", [200]),  # 1.0 closes
    (b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n", [200, 200]),
    (b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n",
     [200]),
    (b"GET /split HTTP/1.1\r\nhost: x\r\n\r\n", [500]),  # response splitting refused
    (b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\n\n0\r\n\r\n",
     [400]),  # a chunk without its CRLF: the app hears a disconnect, the client a 400
    (b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nabcdeGET / HTTP/1.1\r\n"
     b"host: x\r\n\r\n", [200, 200]),  # a small unread body is drained, the connection kept
])
def test_api_httpserver_framing_and_smuggling(raw: bytes, statuses: list[int]) -> None:
    out = _serve([raw])
    assert _statuses(out) == statuses, out
    assert b"set-cookie" not in out


def test_api_httpserver_drain_limits_and_continue() -> None:
    big = b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 200000\r\n\r\n"
    out = _serve([big, b"a" * 70_000, b"a" * 70_000, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"])
    assert _statuses(out) == [200]  # past drain_bytes: closed, not read to the end
    cont = b"POST / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
    out = _serve([cont, b"ab"])
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    out = _serve([b"GET / HTTP/1.1\r\nhost: x\r\nx: " + b"a" * 2000], max_head_bytes=1024)
    assert _statuses(out) == [431]
    assert _statuses(_serve([b"\x16\x03\x01\x02\x00"])) == [400]  # TLS on the plain port


@st.composite
def _hostile(draw: st.DrawFn) -> list[bytes]:
    raw = bytearray(draw(st.sampled_from([
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n"])) * draw(st.integers(1, 3)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(raw)))
        byte = draw(st.sampled_from(b"\r\n\t \x00:;0") | st.integers(0, 255))
        if draw(st.booleans()) or at == len(raw):
            raw.insert(at, byte)
        else:
            raw[at] = byte
    raw += draw(st.binary(max_size=40))
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=5)))
    return [bytes(raw[a:b]) for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


@given(_hostile())
@fuzz_settings(200)
def test_api_httpserver_fuzz_answers_and_closes(chunks: list[bytes]) -> None:
    """Mutated, cut-up requests: every answer a response; a refusal is the last one."""
    out = _serve(chunks)
    statuses = _statuses(out)
    assert not out or out.startswith(b"HTTP/1.1 ")
    assert set(statuses) <= {100, 200, 400, 431, 501, 505}, out
    refused = [i for i, s in enumerate(statuses) if s >= 400]
    assert not refused or refused == [len(statuses) - 1], out
