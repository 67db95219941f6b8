"""Real UDP + TCP on 127.0.0.1: three GossipService instances converge, share state, detect death."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable

import msgpack
import trio

from mesh_node.gossip.shell import GossipService
from mesh_node.gossip.wire import NONCE_LEN, Ping, seal
from mesh_node.security import MeshKeys, derive_keys
from mesh_node.timing import Timings

# Faster than the LAN defaults so the test runs in seconds; the protocol is the same.
FAST = Timings(probe_interval=0.2, probe_timeout=0.1, gossip_interval=0.05,
               suspicion_mult=4, push_pull_interval=2.0, dead_reclaim=30.0)
KEYS = derive_keys("s3cret", "gossip-shell-test")
BAD_KEYS = derive_keys("wrong", "gossip-shell-test")


def _free_ports(n: int) -> list[int]:
    """Ports free for both UDP and TCP right now."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
        if port not in ports:
            ports.append(port)
    return ports


def _svc(i: int, port: int, keys: MeshKeys = KEYS) -> GossipService:
    return GossipService(f"gs{i}", "127.0.0.1", port, ("127.0.0.1", port), keys, FAST,
                         random.Random(i))


def _view(svc: GossipService) -> dict[str, str]:
    return {m.node: m.status for m in svc.members()}


async def _wait_for(pred: Callable[[], bool], limit: float) -> float:
    """Poll `pred` (the services have no event for it) until true; fail after `limit` s."""
    start = trio.current_time()
    for _ in range(int(limit / 0.02)):
        if pred():
            return trio.current_time() - start
        await trio.sleep(0.02)
    raise AssertionError(f"condition not met within {limit} s")


async def test_gossip_shell_three_nodes_converge_share_state_and_detect_death() -> None:
    ports = _free_ports(4)
    svcs = [_svc(i, p) for i, p in enumerate(ports[:3])]
    intruder = _svc(3, ports[3], BAD_KEYS)
    async with trio.open_nursery() as outer:
        scopes = []
        for i, s in enumerate(svcs):
            s.set_local_state(msgpack.packb({"id": f"gs{i}", "mo": 1000 * i}))
            cs = trio.CancelScope()
            scopes.append(cs)

            async def _run(s: GossipService = s, cs: trio.CancelScope = cs, *,
                           task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
                with cs:
                    await s.run(task_status=task_status)

            await outer.start(_run)
        await outer.start(intruder.run)
        changes = svcs[0].subscribe()
        svcs[1].add_seed("127.0.0.1", ports[0])
        svcs[2].add_seed("127.0.0.1", ports[1])
        for s in svcs:  # discovery also hints the intruder to everyone, and vice versa
            s.add_seed("127.0.0.1", ports[3])
        intruder.add_seed("127.0.0.1", ports[0])

        want = {"gs0": "alive", "gs1": "alive", "gs2": "alive"}
        took = await _wait_for(lambda: all(_view(s) == want for s in svcs), 10)
        assert took < 5
        await _wait_for(lambda: all(m.state is not None for s in svcs for m in s.members()), 5)
        assert {m.node: msgpack.unpackb(m.state or b"\x80").get("mo")
                for m in svcs[2].members()} == {"gs0": 0, "gs1": 1000, "gs2": 2000}
        assert changes.receive_nowait().member.node in want
        await _wait_for(lambda: any(m.rtt_ms is not None for m in svcs[0].members()), 5)

        # a datagram sealed with another key is dropped and counted, never a member
        bad = seal(BAD_KEYS, Ping(1, "gs3", "gs0"), os.urandom(NONCE_LEN))
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            await raw.sendto(bad, ("127.0.0.1", ports[0]))
            await raw.sendto(b"\x01" + b"\x00" * 40, ("127.0.0.1", ports[0]))
        await _wait_for(lambda: svcs[0].stats["dropped_auth"] >= 1, 5)
        assert all("gs3" not in _view(s) for s in svcs)
        assert _view(intruder) == {"gs3": "alive"}

        scopes[2].cancel()  # gs2 crashes (no leave)
        took = await _wait_for(
            lambda: all(_view(s).get("gs2", "dead") == "dead" for s in svcs[:2]), 10)
        assert took < 5, took
        await svcs[1].leave(1.0)
        await _wait_for(lambda: _view(svcs[0]).get("gs1") == "left", 5)
        assert svcs[0].stats["dropped_auth"] >= 1
        assert svcs[0].stats["sent_packets"] > 0 and svcs[0].stats["recv_bytes"] > 0
        outer.cancel_scope.cancel()
