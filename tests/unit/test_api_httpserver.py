"""The API's own HTTP/1.1 server (api/httpserver.py): what it took over from hypercorn.

Keep-alive and pipelining, HEAD, chunked streaming with the head sent with the first chunk,
400/431 for broken requests, http.disconnect when the client leaves, the ASGI lifespan.
(Every API test also runs through it: tests/support/api_servers.py serves with serve_api.)
"""

from __future__ import annotations

from functools import partial
from typing import Any

import trio

from mesh_node.api import httpserver
from tests.support.api_servers import WAIT_S


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


async def test_api_h11server_keep_alive_pipelining_head_and_chunks() -> None:
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


async def test_api_h11server_tells_the_app_when_the_client_leaves() -> None:
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


async def test_api_h11server_shutdown_runs_the_lifespan_shutdown() -> None:
    app = _App()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(httpserver.serve, app, "127.0.0.1", 0,
                                    shutdown_trigger=stop.wait))
        stop.set()
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]
