"""Test helpers of the API room: serve apps on loopback, scripted upstreams, raw TCP upstreams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as HttpRoute

from mesh_node.api.server import serve_api

WAIT_S = 10.0  # bound on every wait in these helpers' users


@asynccontextmanager
async def api_serving(app: Starlette) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1:<free port> for the block; yields the base URL."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_api, app, "127.0.0.1", 0))
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            nursery.cancel_scope.cancel()


@dataclass
class ScriptedUpstream:
    """A fake llama-server: records requests; streams chunks that tests release one by one."""

    name: str = "up"
    statuses: list[int] = field(default_factory=list)  # answered first, one per request
    chunks: list[bytes] = field(default_factory=lambda: [
        b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n',
        b"data: [DONE]\n\n"])
    gated: bool = False  # wait for `release` before each chunk after the first
    requests: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0
    finished: bool = False
    cancelled: trio.Event = field(default_factory=trio.Event)
    release: trio.MemorySendChannel[None] | None = None
    _gate: trio.MemoryReceiveChannel[None] | None = None

    def __post_init__(self) -> None:
        self.release, self._gate = trio.open_memory_channel[None](100)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body,
                              "path": request.url.path})
        if self.statuses:
            status = self.statuses.pop(0)
            return JSONResponse({"error": {"message": f"scripted {status}"}}, status_code=status)
        if body.get("stream"):
            return StreamingResponse(self._stream(), media_type="text/event-stream")
        return JSONResponse({"id": "x", "object": "chat.completion", "model": body["model"],
                             "served_by": self.name,
                             "choices": [{"message": {"role": "assistant", "content": "hi"}}]})

    async def _stream(self) -> AsyncIterator[bytes]:
        try:
            for i, chunk in enumerate(self.chunks):
                if self.gated and i > 0:
                    assert self._gate is not None
                    await self._gate.receive()
                self.sent += 1
                yield chunk
            self.finished = True
        except BaseException:
            self.cancelled.set()
            raise

    def app(self) -> Starlette:
        return Starlette(routes=[HttpRoute("/v1/chat/completions", self.chat, methods=["POST"]),
                                 HttpRoute("/v1/completions", self.chat, methods=["POST"])])


@asynccontextmanager
async def raw_upstream(handler: Callable[[trio.SocketStream], Awaitable[None]]
                       ) -> AsyncIterator[str]:
    """A TCP server on loopback running `handler` per connection; yields its base URL."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            nursery.cancel_scope.cancel()


async def read_request_head(stream: trio.SocketStream) -> bytes:
    """Read until the end of the HTTP headers (bodies here are small and follow at once)."""
    data = b""
    with trio.fail_after(WAIT_S):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    return data


def closed_port_url() -> str:
    """A loopback URL nobody listens on (bound then closed: connection refused)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def sse_data(raw: bytes) -> list[Any]:
    """The JSON (or [DONE]) payloads of an SSE body."""
    out: list[Any] = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out
