"""LAN evidence through real sockets on 127.0.0.1 (issue 16): a crashed service's closed ports
answer at once (ICMP port-unreachable via IP_RECVERR, a refused fallback TCP probe), so its
death comes after the evidence cap instead of Lifeguard's minimum; a forged ICMP
port-unreachable about a live member (raw socket, we are root) gets it probed, never killed."""

from __future__ import annotations

import os
import random
import socket
import struct
import sys

import pytest
import trio

from mesh_node.gossip.shell import GossipService
from mesh_node.timing import Timings
from tests.unit.test_gossip_shell import KEYS, _free_ports, _view, _wait_for

# the LAN protocol at 1/5 of its time scale; the evidence cap 1/5 of its default too
FAST = Timings(probe_interval=0.2, probe_timeout=0.1, gossip_interval=0.05, suspicion_mult=4,
               push_pull_interval=2.0, dead_reclaim=30.0, suspicion_evidence=0.2,
               evidence_window=0.4, tcp_probe_timeout=0.1)
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="IP_RECVERR is Linux's")


def _svc(i: int, port: int) -> GossipService:
    return GossipService(f"ev{i}", "127.0.0.1", port, ("127.0.0.1", port), KEYS, FAST,
                         random.Random(i))


async def _mesh(nursery: trio.Nursery, ports: list[int]) -> tuple[list[GossipService],
                                                                    list[trio.CancelScope]]:
    svcs = [_svc(i, p) for i, p in enumerate(ports)]
    scopes = []
    for s in svcs:
        cs = trio.CancelScope()
        scopes.append(cs)

        async def _run(s: GossipService = s, cs: trio.CancelScope = cs, *,
                       task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
            with cs:
                await s.run(task_status=task_status)

        await nursery.start(_run)
    for i, s in enumerate(svcs[1:]):  # a chain: one inbound push-pull per address at a time
        s.add_seed("127.0.0.1", ports[i])
    want = {s.node_id: "alive" for s in svcs}
    await _wait_for(lambda: all(_view(s) == want for s in svcs), 10)
    return svcs, scopes


async def test_shell_evidence_crashed_service_is_dead_after_the_cap() -> None:
    async with trio.open_nursery() as nursery:
        svcs, scopes = await _mesh(nursery, _free_ports(3))
        scopes[2].cancel()  # ev2's sockets close: its ports now refuse
        took = await _wait_for(
            lambda: all(_view(s).get("ev2") == "dead" for s in svcs[:2]), 10)
        lo = FAST.suspicion_mult * FAST.probe_interval  # Lifeguard's minimum: 0.8 s here
        # first probe of ev2 (<= 2 intervals) + probe_timeout + the cap, well under the minimum
        assert took < 2 * FAST.probe_interval + FAST.probe_timeout + lo, took
        seen = sum(s.stats["icmp_unreachable"] + s.stats["tcp_probe_refused"] for s in svcs[:2])
        assert seen >= 1 and sum(s.counters.get("evidence", 0) for s in svcs[:2]) >= 1
        print(f"\ncrashed service dead in both views after {took:.2f} s "
              f"(Lifeguard minimum {lo:.1f} s); ICMP {[s.stats['icmp_unreachable'] for s in svcs]}"
              f", refused TCP {[s.stats['tcp_probe_refused'] for s in svcs]}")
        nursery.cancel_scope.cancel()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def _forged_port_unreachable(src_port: int, dst_port: int) -> bytes:
    """ICMP 3/3 quoting a datagram 127.0.0.1:src_port -> 127.0.0.1:dst_port."""
    lo = socket.inet_aton("127.0.0.1")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, socket.IPPROTO_UDP, 0, lo, lo)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", src_port, dst_port, 8, 0)
    body = struct.pack("!BBHI", 3, 3, 0, 0) + ip + udp
    return body[:2] + struct.pack("!H", _checksum(body)) + body[4:]


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw ICMP socket needs root")
async def test_shell_evidence_forged_icmp_about_a_live_member_kills_nobody() -> None:
    async with trio.open_nursery() as nursery:
        ports = _free_ports(3)
        svcs, _ = await _mesh(nursery, ports)
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        with raw:
            for _ in range(40):  # a stranger claims ev1's port is closed, again and again
                raw.sendto(_forged_port_unreachable(ports[0], ports[1]), ("127.0.0.1", 0))
                await trio.sleep(FAST.probe_interval / 4)
        await trio.sleep(2 * FAST.probe_interval)
        assert svcs[0].stats["icmp_unreachable"] >= 1  # believed as evidence, then checked
        assert all(_view(s).get("ev1") == "alive" for s in svcs)
        assert not svcs[1].counters.get("refuted"), "ev1 was suspected: the forgery worked"
        nursery.cancel_scope.cancel()
