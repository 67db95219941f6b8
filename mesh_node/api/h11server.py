"""A small HTTP/1.1 server for ASGI apps: h11 on trio, one task per connection.

Why (benchmarks/hop_profile.py, CPU-time cProfile of one hop): hypercorn's trio worker spends
its share of each request on machinery a LAN proxy does not use (a task spawned per request,
events and an extra task-switch per message between the protocol and the app, a timer task
per connection, HTTP/2 and WebSocket dispatch), and it writes the response head, each body
chunk and the end of a chunked body in separate `send` calls. Here the app runs in the
connection's own task, the head goes out with the first body chunk, and a final chunk goes out
with the chunked terminator. What hypercorn gave the API is kept: keep-alive with an idle timer
from accept (or the end of the last response) until a whole request head arrives, h11's cap on
the head size, 400/431 answers to broken requests, `Expect: 100-continue`, HEAD, pipelining,
the ASGI lifespan, TLS (`tls=(cert, key)`), a graceful shutdown deadline, and an
`http.disconnect` for the app once the client's connection closes.
"""

from __future__ import annotations

import errno
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import h11
import structlog
import trio
from starlette.types import ASGIApp, Message

log = structlog.get_logger("mesh_node.api")
_READ = 65536
_ACCEPT_CAPACITY = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_IO = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError)


@dataclass(frozen=True)
class ServerConfig:
    """The server's limits (the values the API had under hypercorn)."""

    keep_alive_timeout: float = 75.0  # OpenAI clients keep connections; nginx uses 75 s
    max_head_bytes: int = 16 * 1024  # h11's default cap on an unfinished request head
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


class _Connection:
    """One client connection: h11's server state machine over a trio stream."""

    def __init__(self, stream: trio.abc.Stream, app: ASGIApp, config: ServerConfig,
                 scheme: str, server: tuple[str, int] | None,
                 client: tuple[str, int] | None) -> None:
        self.stream, self.app, self.config, self.scheme = stream, app, config, scheme
        self.server, self.client = server, client
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_head_bytes)
        self.gone = False  # the client closed its side
        self.reset()

    def reset(self) -> None:
        self.start: Message | None = None
        self.head_sent = self.done = self.body_read = self.chunked = False
        self.is_head = False

    async def run(self) -> None:
        try:
            while True:
                request = await self._next_request()
                if request is None:
                    return
                await self._respond(request)
                if not await self._next_cycle():
                    return
        except h11.RemoteProtocolError as exc:
            await self._refuse(exc)
        except (*_IO, h11.LocalProtocolError):
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

    async def _read(self) -> None:
        data = bytes(await self.stream.receive_some(_READ))
        if not data:
            self.gone = True
        self.h11.receive_data(data)

    async def _next_request(self) -> h11.Request | None:
        with trio.move_on_after(self.config.keep_alive_timeout):
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA:
                    await self._read()
                    continue
                if isinstance(event, h11.Request):
                    return event
                return None  # ConnectionClosed (or PAUSED after a close)
        return None

    async def _refuse(self, exc: h11.RemoteProtocolError) -> None:
        """400 (431 for a head over the cap) to a request h11 could not parse, then close."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint
        body = f"{status} {exc}\n".encode()
        try:
            data = self.h11.send(h11.Response(status_code=status, headers=[
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]))
            await self.stream.send_all((data or b"") + body)
        except (*_IO, h11.LocalProtocolError):
            pass

    def _scope(self, req: h11.Request) -> dict[str, Any]:
        target = bytes(req.target)
        path, _, query = target.partition(b"?")
        return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": req.http_version.decode(), "method": req.method.decode(),
                "scheme": self.scheme, "path": unquote_to_bytes(path).decode("utf-8", "replace"),
                "raw_path": path, "query_string": query, "root_path": "",
                "headers": list(req.headers), "client": self.client, "server": self.server}

    async def _respond(self, req: h11.Request) -> None:
        self.reset()
        self.is_head = req.method == b"HEAD"
        try:
            await self.app(self._scope(req), self._receive, self._send)
        except Exception as exc:
            if self.head_sent:
                raise trio.BrokenResourceError("the app failed mid-response") from exc
            log.warning("api_app_failed", error=repr(exc))
            self.start = {"type": "http.response.start", "status": 500,
                          "headers": [(b"content-type", b"text/plain; charset=utf-8")]}
            await self._send({"type": "http.response.body", "body": b"Internal Server Error"})
            return
        if not self.done:
            if self.head_sent:  # the app returned mid-body: the framing cannot be finished
                raise trio.BrokenResourceError("the app ended its response early")
            if self.start is None:
                self.start = {"type": "http.response.start", "status": 500, "headers": []}
            await self._send({"type": "http.response.body", "body": b""})

    async def _receive(self) -> Message:
        if not self.body_read and not self.gone:
            if self.h11.client_is_waiting_for_100_continue and not self.head_sent:
                await self.stream.send_all(self.h11.send(h11.InformationalResponse(
                    status_code=100, headers=[])) or b"")
            try:
                while True:
                    event = self.h11.next_event()
                    if event is h11.NEED_DATA:
                        await self._read()
                    elif isinstance(event, h11.Data):
                        return {"type": "http.request", "body": bytes(event.data),
                                "more_body": True}
                    else:  # EndOfMessage
                        self.body_read = True
                        return {"type": "http.request", "body": b"", "more_body": False}
            except h11.RemoteProtocolError:  # the client closed mid-body
                self.gone = True
        await self._wait_disconnect()
        return {"type": "http.disconnect"}

    async def _wait_disconnect(self) -> None:
        """Return once the client has closed its side; a pipelined next request is kept."""
        held = 0
        while not self.gone:
            if held >= self.config.pipelined_bytes:
                await trio.sleep_forever()  # enough buffered: the response's end cancels us
            data = bytes(await self.stream.receive_some(_READ))
            if not data:
                self.gone = True
            else:
                held += len(data)
                self.h11.receive_data(data)

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
        if not self.head_sent:
            headers = [*self.start.get("headers", ()), (b"date", _date())]
            status = self.start["status"]
            data = self.h11.send(h11.Response(status_code=status, headers=headers,
                                              reason=_REASONS.get(status, b""))) or b""
            self.head_sent = True
            self.chunked = b"\r\ntransfer-encoding: chunked\r\n" in data.lower()
        body = message.get("body", b"")
        if body and not self.is_head:
            # Chunked: h11's own framing written here, without its per-event state-machine
            # work (h11 was a quarter of a relayed chunk's CPU in the relay profile). A Data
            # event changes no h11 state; EndOfMessage below still goes through h11.
            if self.chunked:
                data += b"%x\r\n%s\r\n" % (len(body), body)
            else:
                data += self.h11.send(h11.Data(data=body)) or b""
        if not message.get("more_body", False):
            data += self.h11.send(h11.EndOfMessage()) or b""
            self.done = True
        if data:
            await self.stream.send_all(data)

    async def _next_cycle(self) -> bool:
        """Ready for the next request on this connection (draining an unread body first)."""
        h = self.h11
        if self.gone or h.our_state is not h11.DONE:
            return False
        if h.their_state is h11.SEND_BODY:
            read = 0
            with trio.move_on_after(self.config.drain_timeout):
                while h.their_state is h11.SEND_BODY and read <= self.config.drain_bytes:
                    event = h.next_event()
                    if event is h11.NEED_DATA:
                        await self._read()
                    elif isinstance(event, h11.Data):
                        read += len(event.data)
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
            return True
        return False


def _addr(sock: Any) -> tuple[str, int] | None:
    try:
        host, port = sock.getsockname()[:2]
        return str(host), int(port)
    except (OSError, ValueError):
        return None


def _peer(sock: Any) -> tuple[str, int] | None:
    try:
        host, port = sock.getpeername()[:2]
        return str(host), int(port)
    except (OSError, ValueError):
        return None


async def _handle(app: ASGIApp, config: ServerConfig, tls: ssl.SSLContext | None,
                  stream: trio.SocketStream) -> None:
    sock = stream.socket
    server, client = _addr(sock), _peer(sock)
    conn_stream: trio.abc.Stream = stream
    if tls is not None:
        ssl_stream = trio.SSLStream(stream, tls, server_side=True, https_compatible=True)
        try:
            with trio.fail_after(config.tls_handshake_timeout):
                await ssl_stream.do_handshake()
        except (*_IO, trio.TooSlowError):
            await trio.aclose_forcefully(stream)
            return
        conn_stream = ssl_stream
    await _Connection(conn_stream, app, config, "https" if tls else "http", server,
                      client).run()


async def _accept_loop(listener: trio.SocketListener, nursery: trio.Nursery,
                       handler: Callable[[trio.SocketStream], Awaitable[None]]) -> None:
    """Accept forever, one task per connection. Not trio.serve_listeners: its per-connection
    wrapper closes each stream again through aclose_forcefully (a cancel scope, a cancelled
    checkpoint), which made a storm of 2,000 idle clients hanging up cost 3x hypercorn's CPU;
    each connection here closes its own socket once."""
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY:
                    raise
                log.warning("api_accept_capacity", error=str(exc))  # out of descriptors
                await trio.sleep(0.1)  # trio.serve_listeners' answer, too
                continue
            nursery.start_soon(handler, stream)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def _lifespan(app: ASGIApp, stop: trio.Event, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The ASGI lifespan: startup before serving, shutdown once `stop` is set. An app that
    does not speak it (it raises on the scope) is served without."""
    to_app, from_server = trio.open_memory_channel[Message](2)
    answered, returned = trio.Event(), trio.Event()

    async def send(message: Message) -> None:
        if message["type"].startswith("lifespan.startup"):
            answered.set()

    async def run_app() -> None:
        try:
            await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                      from_server.receive, send)
        except Exception as exc:
            log.debug("asgi_lifespan_unsupported", error=repr(exc))
        finally:
            answered.set()
            returned.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_app)
        await to_app.send({"type": "lifespan.startup"})
        await answered.wait()
        task_status.started()
        await stop.wait()
        if not returned.is_set():
            await to_app.send({"type": "lifespan.shutdown"})
            with trio.move_on_after(ServerConfig.graceful_timeout):
                await returned.wait()
        nursery.cancel_scope.cancel()


async def serve(app: ASGIApp, host: str, port: int, *, config: ServerConfig = ServerConfig(),
                tls: tuple[Path, Path] | None = None,
                shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` until cancelled (or `shutdown_trigger` returns); started(port) once
    listening. Connections still open at shutdown get `config.graceful_timeout`."""
    ctx = tls_context(*tls) if tls is not None else None
    stop = trio.Event()
    async with trio.open_nursery() as outer:
        await outer.start(_lifespan, app, stop)
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
            async with trio.open_nursery() as conns:
                async with trio.open_nursery() as accept:
                    handler = partial(_handle, app, config, ctx)
                    for listener in listeners:
                        accept.start_soon(_accept_loop, listener, conns, handler)
                    task_status.started(int(listeners[0].socket.getsockname()[1]))
                    if shutdown_trigger is None:
                        await trio.sleep_forever()
                    await shutdown_trigger()
                    accept.cancel_scope.cancel()
                conns.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        finally:
            stop.set()  # the app's lifespan shutdown runs (unless we are being cancelled)
