"""A lean HTTP/1.1 transport for httpx: trio sockets + the client1 codec + a keep-alive pool.

Why: httpcore's pool cost 0.64 ms of CPU per request here against 0.14 ms for the same
exchange over trio + h11 (measured on this project's 2-core machine), and a mesh hop pays it
on every request; h11 itself was then the largest layer left (hop_profile.py), hence
api/client1.py. Plain http only (LAN peers and local backends); other schemes go to httpx's
own transport. Errors are httpx's, so callers keep one exception tree (connect errors are
retryable, a server that closes before answering is RemoteProtocolError).

The read timeout is per read (httpx semantics), set only on reads that must wait (_Conn).
"""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator

import httpx
import trio

from mesh_node.api import client1

_READ_SIZE = 65536
_MAX_IDLE_PER_HOST = 64  # the old httpx.Limits(max_keepalive_connections=64)
_READY_CHECKPOINT = 16  # reads without a scheduler pass, at most
_NO_RESPONSE = "Server disconnected without sending a response."  # httpcore's wording
_HTTP11 = b"HTTP/1.1"


class ConnectRefused(httpx.ConnectError):
    """Nothing listens at the address (the peer's kernel refused the connect)."""


def _refused(exc: BaseException | None) -> bool:
    """trio's connect wraps each attempt's error in an ExceptionGroup as its `__cause__`."""
    if exc is None or isinstance(exc, ConnectionRefusedError):
        return exc is not None
    if isinstance(exc, BaseExceptionGroup):
        return any(_refused(e) for e in exc.exceptions)
    return _refused(exc.__cause__)


class _Unanswered(Exception):
    """The server closed the connection before any response byte (stale keep-alive?)."""


class _Conn:
    """One keep-alive connection: a plain non-blocking socket, waited on through trio.

    Plain, not trio's SocketStream: a send that fits the socket buffer (nearly all) and a read
    of bytes already there then need no cancel scope and no scheduler pass; a read that must
    wait gets one bare CancelScope (trio.fail_after wraps it in two @contextmanager layers;
    a scope cannot be held across the body's yields: the consumer would run inside it).
    """

    __slots__ = ("key", "ready", "sock")

    def __init__(self, stream: trio.SocketStream, key: tuple[str, int]) -> None:
        self.key = key
        self.sock = socket.socket(fileno=stream.socket.detach())  # options (NODELAY) kept
        self.sock.setblocking(False)
        self.ready = 0  # reads in a row that found bytes waiting (no checkpoint taken)

    def idle_usable(self) -> bool:
        """An idle socket that is readable has been closed (or sent junk): not reusable.

        A peek, not select (which raises for descriptors >= FD_SETSIZE, where a busy node's
        sockets live once it has lifted its open-files limit) nor a poll object per request.
        """
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True  # nothing pending: open and quiet
        except OSError:
            pass
        return False  # b"" (closed), junk, or an error

    async def recv(self, read_s: float) -> bytes:
        """What has arrived (b"" once the peer closed); TooSlowError after `read_s` idle."""
        try:
            data = self.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return await self._wait_recv(read_s)
        self.ready += 1
        if self.ready >= _READY_CHECKPOINT:  # a sender always ahead must not starve the rest
            self.ready = 0
            await trio.lowlevel.checkpoint()
        return data

    async def _wait_recv(self, read_s: float) -> bytes:
        self.ready = 0
        while True:
            with trio.CancelScope(deadline=trio.current_time() + read_s) as cs:
                await trio.lowlevel.wait_readable(self.sock)
            if cs.cancelled_caught:
                raise trio.TooSlowError
            try:
                return self.sock.recv(_READ_SIZE)
            except BlockingIOError:  # a spurious wake-up
                continue

    async def send(self, data: bytes, write_s: float) -> None:
        """All of `data`; TooSlowError after `write_s` without progress."""
        view = memoryview(data)
        while True:
            try:
                view = view[self.sock.send(view):]  # a request fits the buffer: one call
            except BlockingIOError:
                pass
            if not view:
                return
            with trio.CancelScope(deadline=trio.current_time() + write_s) as cs:
                await trio.lowlevel.wait_writable(self.sock)
            if cs.cancelled_caught:
                raise trio.TooSlowError

    def close_now(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()

    async def close(self) -> None:
        self.close_now()
        await trio.lowlevel.cancel_shielded_checkpoint()


def _limit(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds


def _mapped(exc: BaseException, request: httpx.Request) -> Exception:
    """The httpx exception for an I/O failure while the response is being read."""
    if isinstance(exc, trio.TooSlowError):
        return httpx.ReadTimeout("upstream read timed out", request=request)
    if isinstance(exc, client1.ProtocolError | _Unanswered):
        return httpx.RemoteProtocolError(str(exc) or _NO_RESPONSE, request=request)
    return httpx.ReadError(repr(exc), request=request)


_IO_ERRORS = (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError,
              client1.ProtocolError, _Unanswered)


class _Body(httpx.AsyncByteStream):
    """The response body, one piece per socket read; the connection goes back to the pool as
    soon as the body is complete (before its last piece is handed on), else it is closed."""

    def __init__(self, pool: Http1Transport, conn: _Conn, framing: client1.Body, first: bytes,
                 request: httpx.Request, read_s: float, reuse: bool) -> None:
        self._pool, self._conn, self._framing, self._first = pool, conn, framing, first
        self._request, self._read_s, self._reuse = request, read_s, reuse
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._first:
            first, self._first = self._first, b""
            yield first
        framing = self._framing
        while self._open:
            try:
                data = await self._conn.recv(self._read_s)
                if data:
                    data = framing.feed(data)
                else:
                    framing.end()  # ProtocolError unless the body runs to the close
                    self._reuse = False
            except _IO_ERRORS as exc:
                await self.aclose()
                raise _mapped(exc, self._request) from None
            if framing.done:
                await self.complete()
            if data:
                yield data

    async def complete(self) -> None:
        """The body is whole: the connection goes back to the pool, or is closed."""
        self._open = False
        await self._pool.release(self._conn, self._reuse and self._framing.reusable)

    async def aclose(self) -> None:
        if self._open:  # not read to the end: the connection's state is unknown, close it
            self._open = False
            await self._conn.close()


class Http1Transport(httpx.AsyncBaseTransport):
    """httpx transport over trio + client1 with per-host keep-alive connections."""

    def __init__(self, max_idle_per_host: int = _MAX_IDLE_PER_HOST) -> None:
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._max_idle = max_idle_per_host
        self._fallback: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            self._fallback = self._fallback or httpx.AsyncHTTPTransport()
            return await self._fallback.handle_async_request(request)
        timeouts = request.extensions.get("timeout", {})
        try:
            data = client1.request_bytes(request.method.encode(), request.url.raw_path,
                                         request.headers._list, await request.aread())
        except ValueError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from None
        key = (request.url.host, request.url.port or 80)
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await self._exchange(conn, request, data, timeouts)
            except _Unanswered:  # the server dropped the idle connection: one fresh try
                pass
        conn = await self._connect(key, request, timeouts.get("connect"))
        try:
            return await self._exchange(conn, request, data, timeouts)
        except _Unanswered:
            raise httpx.RemoteProtocolError(_NO_RESPONSE, request=request) from None

    def _take_idle(self, key: tuple[str, int]) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.idle_usable():
                return conn
            conn.close_now()  # closed by the peer: nothing left to flush
        return None

    async def _connect(self, key: tuple[str, int], request: httpx.Request,
                       connect_s: float | None) -> _Conn:
        try:
            with trio.fail_after(_limit(connect_s)):
                stream = await trio.open_tcp_stream(*key)
        except trio.TooSlowError:
            raise httpx.ConnectTimeout(f"connect to {key[0]}:{key[1]} timed out",
                                       request=request) from None
        except OSError as exc:
            kind = ConnectRefused if _refused(exc) else httpx.ConnectError
            raise kind(repr(exc), request=request) from None
        return _Conn(stream, key)

    async def _exchange(self, conn: _Conn, request: httpx.Request, data: bytes,
                        timeouts: dict[str, float | None]) -> httpx.Response:
        """Send the request in one write and read the response head; _Unanswered if the
        connection turns out closed before any response byte."""
        read_s = _limit(timeouts.get("read"))
        try:
            try:
                await conn.send(data, _limit(timeouts.get("write")))
            except (trio.BrokenResourceError, OSError):
                raise _Unanswered from None
            except trio.TooSlowError:
                raise httpx.WriteTimeout("upstream write timed out", request=request) from None
            head, rest = await _read_head(conn, read_s, request.method == "HEAD")
            first = head.body.feed(rest) if rest else b""
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, _Unanswered) or not isinstance(exc, _IO_ERRORS):
                raise
            raise _mapped(exc, request) from None
        framing = head.body
        stream = _Body(self, conn, framing, first, request, read_s, head.keep_alive)
        if framing.done:  # no body, or all of it came with the head
            await stream.complete()
        resp = httpx.Response(head.status, stream=stream,
                              extensions={"http_version": _HTTP11, "reason_phrase": head.reason})
        headers = resp.headers  # filled here: already httpx's (name, lowered, value) triples,
        headers._list = head.headers  # nothing to re-normalise or copy
        if head.ascii:  # else httpx works the encoding out itself
            headers._encoding = "ascii"
        return resp

    async def release(self, conn: _Conn, reusable: bool) -> None:
        """Back to the pool when the exchange ended cleanly and keep-alive holds; else close."""
        if reusable:
            idle = self._idle.setdefault(conn.key, [])
            if len(idle) < self._max_idle:
                idle.append(conn)
                return
        await conn.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.close()
        if self._fallback is not None:
            await self._fallback.aclose()




async def _read_head(conn: _Conn, read_s: float, head_request: bool
                     ) -> tuple[client1.Head, bytes]:
    """The final response head (1xx skipped) and the bytes read after it."""
    buf = b""
    seen = False
    while True:
        got = client1.parse_head(buf, head_request) if buf else None
        if got is not None:
            head, end = got
            buf = buf[end:]
            if not head.informational:
                return head, buf
            continue
        try:
            data = await conn.recv(read_s)
        except ConnectionResetError:  # a reset before any byte: a stale keep-alive too
            if seen:
                raise
            raise _Unanswered from None
        if not data:
            if seen:
                raise client1.ProtocolError(_NO_RESPONSE)
            raise _Unanswered
        seen = True
        buf = buf + data if buf else data
