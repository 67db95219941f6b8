"""One HTTP/1.1 connection of the API server (api/httpserver.py): api/http1.py's parser over
a trio stream, the ASGI app run in the connection's own task.

A connection waits for a whole head under the idle timer (a deadline on one scope for the
connection's life), runs the app, sends the head with the first body bytes and the last chunk
with the terminator, drains a small unread body to keep the connection, and holds a bounded
next request (pipelining) while a response runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

import structlog
import trio
from starlette.types import ASGIApp, Message

from mesh_node.api import http1
from mesh_node.api.http1 import ProtocolError

log = structlog.get_logger("mesh_node.api")
_READ = 65536
IO_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError)
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True)
class ServerConfig:
    """The server's limits (the values the API had under hypercorn)."""

    keep_alive_timeout: float = 75.0  # OpenAI clients keep connections; nginx uses 75 s
    max_head_bytes: int = 16 * 1024  # h11's default cap on a request head
    max_fields: int = http1.MAX_FIELDS
    graceful_timeout: float = 3.0  # open connections get this long after a shutdown
    tls_handshake_timeout: float = 10.0
    # An unread request body (a 413, a 401 before the body) is read and dropped up to this
    # many bytes, for at most this long, to keep the connection; past that it closes (the
    # point of answering early is to stop reading).
    drain_bytes: int = 64 * 1024
    drain_timeout: float = 1.0
    pipelined_bytes: int = 64 * 1024  # bytes of a next request held while a response runs


class _Date:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._at, self._value = 0, b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._at:
            self._at, self._value = now, formatdate(now, usegmt=True).encode()
        return self._value


_date = _Date()
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class _Gone(Exception):
    """The client closed its side mid-body."""


class _Socket:
    """The connection's bytes seam on a plain socket: trio's socket calls without
    SocketStream's per-call context managers (a conflict detector and an error translator,
    ~4 per request in the hop profile); errors are still raised as trio's stream errors, which
    the app treats as a lost client (api/hot.py CONNECTION_LOST)."""

    __slots__ = ("_sock",)

    def __init__(self, stream: trio.SocketStream) -> None:
        self._sock = stream.socket

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            return await self._sock.recv(max_bytes)
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc

    async def send_all(self, data: bytes) -> None:
        try:
            sent = await self._sock.send(data)
            if sent < len(data):  # the kernel's send buffer was full: the rest, in order
                with memoryview(data) as view:
                    while sent < len(view):
                        sent += await self._sock.send(view[sent:])
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc


class Connection:
    """One client connection: http1's parser over a trio stream, the app in this task."""

    req: http1.Request  # the request being answered

    def __init__(self, stream: trio.abc.Stream, app: ASGIApp, config: ServerConfig,
                 scheme: str, server: tuple[str, int] | None,
                 client: tuple[str, int] | None) -> None:
        self.stream, self.app, self.config, self.scheme = stream, app, config, scheme
        self.io: _Socket | trio.abc.Stream = (
            _Socket(stream) if isinstance(stream, trio.SocketStream) else stream)
        self.server, self.client = server, client
        self.buf = bytearray()  # received, not yet parsed (a pipelined next request)
        self.gone = False  # the client closed its side
        self.in_response = False  # a request head was taken: no 400 after it
        # One scope for the connection's life; its deadline is the idle timer, set while
        # waiting for a head (cheaper than a scope entered per request).
        self.idle = trio.CancelScope()
        self.reset()

    def reset(self) -> None:
        self.start: Message | None = None
        self.head_sent = self.done = False
        self.framing: http1.Framing | None = None
        self.sent = 0  # body bytes sent, checked against the app's Content-Length
        self.body_read = True
        self.left = 0  # Content-Length body bytes not yet read
        self.chunks: http1.ChunkedDecoder | None = None
        self.continue_sent = False
        self.broken: ProtocolError | None = None  # the request body's framing was broken

    async def run(self) -> None:
        try:
            with self.idle:
                while (req := await self._next_request()) is not None:
                    await self._respond(req)
                    if not await self._next_cycle():
                        return
        except ProtocolError as exc:
            if not self.in_response:
                await self._refuse(exc)
        except (*IO_ERRORS, _Gone):
            pass  # the client left or broke the exchange: nothing to answer
        except Exception as exc:  # a bug here must cost one connection, not the listener
            log.exception("api_connection_failed", error=repr(exc))
        finally:
            await self._close()

    async def _close(self) -> None:
        if isinstance(self.stream, trio.SocketStream):
            self.stream.socket.close()  # nothing to flush: no checkpoint, no timer (a storm
            return  # of 2,000 closing idle clients is served that much sooner)
        with trio.move_on_after(1.0) as cs:  # TLS: close_notify, bounded
            cs.shield = True
            await self.stream.aclose()

    async def _next_request(self) -> http1.Request | None:
        """The next request head, or None (closed, or idle past keep_alive_timeout)."""
        buf, cap = self.buf, self.config.max_head_bytes
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.idle.deadline = trio.current_time() + self.config.keep_alive_timeout
            while end < 0:
                _check_partial(buf, cap)
                data = await self.io.receive_some(_READ)
                if not data:
                    self.gone = True
                    if buf:
                        raise ProtocolError(400, "the client closed mid-head")
                    return None
                at = max(len(buf) - 3, 0)
                buf += data
                end = buf.find(b"\r\n\r\n", at)
            self.idle.deadline = math.inf
        if end > cap:
            raise ProtocolError(431, "request head too large")
        req = http1.parse_request(bytes(buf[:end]), self.config.max_fields)
        del buf[:end + 4]
        return req

    async def _refuse(self, exc: ProtocolError) -> None:
        """The answer to a request the parser refused (then the connection closes)."""
        body = f"{exc.status} {exc}\n".encode()
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\ndate: %s\r\nconnection: close\r\n\r\n"
                % (exc.status, _REASONS.get(exc.status, b""), len(body), _date()))
        try:
            await self.io.send_all(head + body)
        except IO_ERRORS:
            pass

    def _scope(self, req: http1.Request) -> dict[str, Any]:
        path, _, query = req.target.partition(b"?")
        text = unquote_to_bytes(path).decode("utf-8", "replace") if b"%" in path \
            else path.decode("ascii")  # the target is VCHAR only: ASCII
        return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": req.http_version.decode(), "method": req.method.decode(),
                "scheme": self.scheme, "path": text, "raw_path": path, "query_string": query,
                "root_path": "", "headers": req.headers, "client": self.client,
                "server": self.server}

    async def _respond(self, req: http1.Request) -> None:
        self.in_response = True
        self.reset()
        self.req = req
        self.body_read, self.left = False, req.content_length
        if req.chunked:
            self.chunks = http1.ChunkedDecoder()
        try:
            await self.app(self._scope(req), self._receive, self._send)
        except Exception as exc:
            if self.head_sent:
                raise trio.BrokenResourceError("the app failed mid-response") from exc
            log.warning("api_app_failed", error=repr(exc))
            self.start, self.sent = {"type": "http.response.start", "status": 500,
                                     "headers": [(b"content-type",
                                                  b"text/plain; charset=utf-8")]}, 0
            await self._send({"type": "http.response.body", "body": b"Internal Server Error"})
            return
        if not self.done:
            if self.head_sent:  # the app returned mid-body: the framing cannot be finished
                raise trio.BrokenResourceError("the app ended its response early")
            if self.start is None:
                if self.broken is not None:  # the body's framing was broken: a 400, not a 500
                    await self._refuse(self.broken)
                    return
                self.start = {"type": "http.response.start", "status": 500, "headers": []}
            await self._send({"type": "http.response.body", "body": b""})

    async def _receive(self) -> Message:
        if not self.body_read and not self.gone:
            if self.req.expect_continue and not self.continue_sent and not self.head_sent:
                self.continue_sent = True
                await self.io.send_all(_CONTINUE)
            try:
                body = await self._body()
            except ProtocolError as exc:  # a broken chunked body: the app hears a disconnect
                self.gone, self.broken = True, exc
            except _Gone:
                self.gone = True
            else:
                return {"type": "http.request", "body": body, "more_body": not self.body_read}
        await self._wait_disconnect()
        return {"type": "http.disconnect"}

    async def _body(self) -> bytes:
        """The next piece of the request body (b"" only at its end, then body_read)."""
        buf = self.buf
        while True:
            if self.chunks is not None:
                data = self.chunks.feed(buf) if buf else b""
                self.body_read = self.chunks.done
                if data or self.body_read:
                    return data
            elif buf or not self.left:
                n = min(self.left, len(buf))
                data = bytes(buf[:n])
                del buf[:n]
                self.left -= n
                self.body_read = not self.left
                return data
            got = await self.io.receive_some(_READ)
            if not got:
                raise _Gone
            if self.chunks is None and len(got) <= self.left:  # the common case: no copy
                self.left -= len(got)
                self.body_read = not self.left
                return bytes(got)
            buf += got

    async def _wait_disconnect(self) -> None:
        """Return once the client has closed its side; a pipelined next request is kept."""
        held = 0
        while not self.gone:
            if held >= self.config.pipelined_bytes:
                await trio.sleep_forever()  # enough buffered: the response's end cancels us
            data = await self.io.receive_some(_READ)
            if not data:
                self.gone = True
            else:
                held += len(data)
                self.buf += data

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self.start is not None:
                raise RuntimeError("http.response.start sent twice")
            self.start = message  # goes out with the first body bytes
            return
        if self.start is None:
            raise RuntimeError("http.response.body before http.response.start")
        if self.done:
            return
        data = b""
        if self.framing is None or not self.head_sent:
            status = self.start["status"]
            data, self.framing = http1.response_head(
                status, self.start.get("headers", ()), _REASONS.get(status, b""), self.req,
                _date())
        f = self.framing
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if f.body:
            if f.length is not None:
                self.sent += len(body)
                if self.sent > f.length or (not more and self.sent < f.length):
                    raise RuntimeError("the body does not match its Content-Length")
            if f.chunked:
                if body:
                    data += b"%x\r\n%s\r\n" % (len(body), body)
                if not more:
                    data += b"0\r\n\r\n"
            elif body:
                data += body
        self.done = not more
        if data:
            self.head_sent = True
            await self.io.send_all(data)

    async def _next_cycle(self) -> bool:
        """Ready for the next request on this connection (draining an unread body first)."""
        f = self.framing
        if self.gone or not self.done or f is None or not f.keep_alive:
            return False
        if not self.body_read:
            read = 0
            with trio.move_on_after(self.config.drain_timeout):
                while not self.body_read and read <= self.config.drain_bytes:
                    read += len(await self._body())
            if not self.body_read:
                return False
        self.in_response = False
        return True


def _check_partial(buf: bytearray, cap: int) -> None:
    """Refuse an unfinished head early: over the cap, or not starting like a request line
    (h11's test: a TLS ClientHello on the plain port is answered at once, not after the
    idle timer)."""
    if len(buf) > cap:
        raise ProtocolError(431, "request head too large")
    if buf and buf[0] not in _TCHAR:
        raise ProtocolError(400, "not an HTTP request line")


