"""Serve the API app inside the caller's nursery: mesh-node's own HTTP/1.1 server
(api/httpserver.py on api/http1.py) by default, hypercorn's trio worker on request
(`server="hypercorn"`, kept for comparison)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.types import ASGIApp

from mesh_node.api import httpserver


def hypercorn_config(host: str, port: int, tls: tuple[Path, Path] | None = None) -> Config:
    """Quiet, keep-alive friendly settings for a LAN API; HTTPS with (cert, key)."""
    config = Config()
    if tls is not None:
        config.certfile, config.keyfile = str(tls[0]), str(tls[1])
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None  # structlog carries request lines; hypercorn's logger would double
    config.errorlog = None
    config.keep_alive_timeout = 75.0  # OpenAI clients keep connections; nginx uses 75 s
    config.graceful_timeout = 3.0
    return config


Server = Literal["own", "hypercorn"]
SERVERS: tuple[Server, ...] = ("own", "hypercorn")


async def serve_api(app: ASGIApp, host: str, port: int, *,
                    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
                    tls: tuple[Path, Path] | None = None, server: Server = "own",
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled (or `shutdown_trigger` returns); started(port) once listening."""
    if server == "own":  # measured leaner than hypercorn for the same app: docs/benchmarks.md
        await httpserver.serve(app, host, port, tls=tls, shutdown_trigger=shutdown_trigger,
                              task_status=task_status)
        return

    async def _serve(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, hypercorn_config(host, port, tls),  # type: ignore[arg-type]
                    shutdown_trigger=shutdown_trigger, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(_serve)
        task_status.started(bound_port(binds))


def bound_port(binds: list[str]) -> int:
    """The port of the first bind URL (the real one when asked for port 0)."""
    port = urlsplit(binds[0]).port
    if port is None:
        raise RuntimeError(f"hypercorn reported no port: {binds}")
    return port
