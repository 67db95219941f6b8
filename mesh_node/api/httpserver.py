"""A small HTTP/1.1 server for ASGI apps: api/http1.py's parser on trio, one task per
connection.

Why (benchmarks/hop_profile.py, CPU-time cProfile of one hop): hypercorn's trio worker spends
its share of each request on machinery a LAN proxy does not use (a task spawned per request,
events and an extra task-switch per message between the protocol and the app, a timer task
per connection, HTTP/2 and WebSocket dispatch), and h11 after it was ~21 % of a hop's CPU
(a regex call per header, a state machine walked per event). Here the app runs in the
connection's own task, a head is parsed in two regex passes, the head goes out with the first
body chunk, and a final chunk goes out with the chunked terminator. What hypercorn gave the
API is kept: keep-alive with an idle timer from accept (or the end of the last response) until
a whole request head arrives, a cap on the head size, 400/431/501/505 answers to broken
requests (then close), `Expect: 100-continue`, HEAD, pipelining (a next request's bytes held,
bounded, while a response runs), the ASGI lifespan, TLS (`tls=(cert, key)`), a graceful
shutdown deadline, and an `http.disconnect` for the app once the client's connection closes.
The listener, TLS, lifespan and shutdown are here; one connection's protocol is
api/httpconn.py.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import trio
from starlette.types import ASGIApp, Message

from mesh_node.api.httpconn import IO_ERRORS, Connection, ServerConfig

__all__ = ["ServerConfig", "serve", "tls_context"]
log = structlog.get_logger("mesh_node.api")
_ACCEPT_CAPACITY = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_DEFAULTS = ServerConfig()


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
        except (*IO_ERRORS, trio.TooSlowError):
            await trio.aclose_forcefully(stream)
            return
        conn_stream = ssl_stream
    await Connection(conn_stream, app, config, "https" if tls else "http", server,
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


async def serve(app: ASGIApp, host: str, port: int, *, config: ServerConfig = _DEFAULTS,
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
