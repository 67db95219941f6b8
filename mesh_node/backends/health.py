"""Readiness probes for children: HTTP GET until 200, or a TCP connect for RPC workers."""

from __future__ import annotations

import httpx
import trio

from mesh_node.timing import DEFAULT_TIMINGS

POLL_INTERVAL = DEFAULT_TIMINGS.health_poll
PROBE_TIMEOUT = DEFAULT_TIMINGS.health_probe_timeout


async def _http_ok(client: httpx.AsyncClient, url: str) -> bool:
    try:
        r = await client.get(url, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


async def _tcp_ok(host: str, port: int) -> bool:
    try:
        with trio.fail_after(PROBE_TIMEOUT):
            stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError):
        return False
    await stream.aclose()
    return True


async def wait_healthy(url: str | None, tcp: tuple[str, int] | None) -> None:
    """Return once every configured probe passes; the caller bounds it (trio.move_on_after)."""
    if url is None and tcp is None:
        return
    async with httpx.AsyncClient() as client:
        while True:
            http_ok = url is None or await _http_ok(client, url)
            tcp_ok = tcp is None or await _tcp_ok(*tcp)
            if http_ok and tcp_ok:
                return
            await trio.sleep(POLL_INTERVAL)
