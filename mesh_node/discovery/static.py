"""Static peers (`[mesh] peers`): seed gossip with each address until it is a member.

Each peer gets its own loop: resolve (DNS name or IP), `add_seed`, wait a capped exponential
backoff, and check membership; once a member, re-check slowly and start over if it drops out.
This is what forms a mesh across subnets or where multicast is blocked.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Sequence

import structlog
import trio

from mesh_node.timing import DEFAULT_TIMINGS, Timings

log = structlog.get_logger("mesh_node.discovery")

DEFAULT_GOSSIP_PORT = 9338  # config.model.MeshConfig.gossip_port
RESOLVE_TIMEOUT = 5.0  # a DNS lookup that takes longer is retried with backoff

Resolver = Callable[[str, int], Awaitable[list[str]]]


def parse_peer(spec: str, default_port: int = DEFAULT_GOSSIP_PORT) -> tuple[str, int]:
    """'host', 'host:port', '[v6]:port' or a bare IPv6 -> (host, port); ValueError if bad."""
    spec = spec.strip()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    elif spec.count(":") == 1:
        host, _, port_s = spec.partition(":")
    else:
        host, port_s = spec, ""
    port = int(port_s) if port_s else default_port
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad peer address: {spec!r}")
    return host, port


def next_backoff(prev: float | None, timings: Timings = DEFAULT_TIMINGS) -> float:
    """Capped doubling from static_peer_backoff_min to static_peer_backoff_max."""
    if prev is None:
        return timings.static_peer_backoff_min
    return min(prev * 2, timings.static_peer_backoff_max)


async def resolve_host(host: str, port: int) -> list[str]:
    """IP addresses of `host` (IPv4 first); empty when it does not resolve in time."""
    with trio.move_on_after(RESOLVE_TIMEOUT):
        try:
            infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError:
            return []
        ips = [str(i[4][0]) for i in infos]
        return sorted(dict.fromkeys(ips), key=lambda a: ":" in a)  # stable, v4 before v6
    return []


async def static_peers(peers: Sequence[str], add_seed: Callable[[str, int], None],
                       is_member: Callable[[str, int], bool],
                       timings: Timings = DEFAULT_TIMINGS, *,
                       default_port: int = DEFAULT_GOSSIP_PORT,
                       resolve: Resolver = resolve_host) -> None:
    """Keep every static peer joined; runs until cancelled. Bad specs are logged and skipped."""
    async with trio.open_nursery() as nursery:
        for spec in peers:
            try:
                host, port = parse_peer(spec, default_port)
            except ValueError:
                log.warning("static_peer_invalid", peer=spec)
                continue
            nursery.start_soon(_keep_joined, host, port, add_seed, is_member, timings, resolve)


async def _keep_joined(host: str, port: int, add_seed: Callable[[str, int], None],
                       is_member: Callable[[str, int], bool], timings: Timings,
                       resolve: Resolver) -> None:
    delay: float | None = None
    joined = False
    while True:
        ips = await resolve(host, port)
        if not ips:
            delay = next_backoff(delay, timings)
            log.info("static_peer_unresolved", peer=f"{host}:{port}", retry_in=delay)
            await trio.sleep(delay)
            continue
        ip = ips[0]
        if is_member(ip, port):
            if not joined:
                log.info("static_peer_joined", peer=f"{host}:{port}", address=ip)
            joined, delay = True, None
            # Re-check slowly, like Serf's retry_join interval (30 s).
            await trio.sleep(timings.static_peer_backoff_max)
            continue
        if joined:
            log.info("static_peer_lost", peer=f"{host}:{port}", address=ip)
            joined = False
        add_seed(ip, port)
        delay = next_backoff(delay, timings)
        log.debug("static_peer_seeded", peer=f"{host}:{port}", address=ip, retry_in=delay)
        await trio.sleep(delay)
