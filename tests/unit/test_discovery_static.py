"""Static peers: parsing, capped exponential backoff, rejoin after drop-out (MockClock)."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from mesh_node.discovery.static import next_backoff, parse_peer, resolve_host, static_peers
from mesh_node.timing import DEFAULT_TIMINGS, Timings


def test_parse_peer_forms() -> None:
    assert parse_peer("10.0.0.5:7000") == ("10.0.0.5", 7000)
    assert parse_peer("studio.local") == ("studio.local", 9338)
    assert parse_peer("[fe80::1]:7000") == ("fe80::1", 7000)
    assert parse_peer("fe80::1", 5) == ("fe80::1", 5)
    for bad in ("", ":7000", "host:0", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            parse_peer(bad)


def test_backoff_doubles_and_caps() -> None:
    delays = [next_backoff(None)]
    for _ in range(8):
        delays.append(next_backoff(delays[-1]))
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


async def _fixed(host: str, port: int) -> list[str]:
    return ["10.0.0.9"]


async def test_seeds_with_backoff_until_member_then_rechecks(
        autojump_clock: trio.testing.MockClock) -> None:
    seeds: list[float] = []
    member = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(static_peers, resolve=_fixed), ["peer.lan:7001"],
                           lambda h, p: seeds.append(trio.current_time()),
                           lambda h, p: member, DEFAULT_TIMINGS)
        await trio.sleep(100)
        gaps = [round(b - a, 3) for a, b in zip(seeds, seeds[1:], strict=False)]
        assert gaps[:8] == [0.5, 1, 2, 4, 8, 16, 30, 30]
        member = True
        n = len(seeds)
        await trio.sleep(200)
        assert len(seeds) == n  # a member is never seeded again
        member = False  # it drops out: backoff restarts from the minimum
        await trio.sleep(40)
        later = [round(b - a, 3) for a, b in zip(seeds[n:], seeds[n + 1:], strict=False)]
        assert len(seeds) > n and later[:3] == [0.5, 1, 2]
        nursery.cancel_scope.cancel()


async def test_unresolvable_peer_is_retried_and_bad_specs_skipped(
        autojump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []
    seeds: list[tuple[str, int]] = []

    async def flaky(host: str, port: int) -> list[str]:
        calls.append(trio.current_time())
        return [] if len(calls) < 4 else ["10.0.0.7"]

    timings = Timings(static_peer_backoff_min=1.0, static_peer_backoff_max=4.0)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(static_peers, resolve=flaky), ["nas:7", "bad:port"],
                               lambda h, p: seeds.append((h, p)), lambda h, p: False, timings)
            await trio.sleep(7.5)
            nursery.cancel_scope.cancel()
    assert [round(t, 3) for t in calls[:4]] == [0, 1, 3, 7]
    assert seeds == [("10.0.0.7", 7)]
    events = [e["event"] for e in logs]
    assert "static_peer_invalid" in events and events.count("static_peer_unresolved") == 3


async def test_resolve_host_loopback_and_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await resolve_host("127.0.0.1", 9338) == ["127.0.0.1"]

    async def fail(*a: object, **kw: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(trio.socket, "getaddrinfo", fail)  # no real DNS traffic in tests
    assert await resolve_host("nas.lan", 9338) == []
