"""What an mDNS flood (anyone on the LAN, the public mesh digest) can make a node hold or dial."""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from mesh_node.discovery.core import MAX_PEERS, Peer
from mesh_node.discovery.fake import FakeMdnsNetwork
from mesh_node.discovery.limits import (
    DIAL_WINDOW_S,
    MAX_DEFERRED,
    MAX_DIALS,
    MAX_QUEUED,
    MAX_RESOLVING,
    DialGate,
)
from mesh_node.discovery.mdns import MdnsDiscovery
from mesh_node.discovery.txt import Advert, encode_txt

MESH = "0123456789abcdef"


def _peer(i: int) -> Peer:
    return Peer(f"fake{i:04d}", f"10.1.{i // 250}.{i % 250 + 1}", 9338, 9337, MESH)


def test_dial_gate_caps_per_window_and_defers_in_order() -> None:
    gate = DialGate()
    assert [gate.offer(_peer(i), 0.0) for i in range(MAX_DIALS)] == ["dial"] * MAX_DIALS
    assert gate.offer(_peer(100), 1.0) == "deferred"
    assert gate.offer(_peer(101), 1.0) == "deferred"
    assert gate.offer(_peer(100), 2.0) == "deferred"  # same id: one entry, keeps its place
    assert gate.deferred == 2 and gate.next_due() == DIAL_WINDOW_S
    assert gate.due(DIAL_WINDOW_S - 0.1) == []
    assert [p.node_id for p in gate.due(DIAL_WINDOW_S)] == ["fake0100", "fake0101"]
    assert gate.next_due() is None


def test_dial_gate_queue_is_bounded_and_goodbyes_leave_it() -> None:
    gate = DialGate()
    for i in range(MAX_DIALS):
        gate.offer(_peer(i), 0.0)
    verdicts = [gate.offer(_peer(1000 + i), 0.0) for i in range(MAX_DEFERRED + 5)]
    assert verdicts.count("deferred") == MAX_DEFERRED and verdicts.count("dropped") == 5
    gate.withdraw("fake1000")
    assert gate.deferred == MAX_DEFERRED - 1
    assert gate.offer(_peer(5000), 0.0) == "deferred"
    # drained at MAX_DIALS per window, never faster
    t, total = 0.0, 0
    while gate.deferred:
        t += DIAL_WINDOW_S
        got = gate.due(t)
        assert len(got) <= MAX_DIALS
        total += len(got)
    assert total == MAX_DEFERRED


async def _until(cond: Callable[[], object], limit: float = 600.0) -> None:
    """Poll (bounded, in virtual time) until cond() holds: callbacks come from threads."""
    for _ in range(int(limit / 0.05)):
        if cond():
            return
        await trio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _publish_fakes(net: FakeMdnsNetwork, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        txt = encode_txt(Advert(f"fake{i:04d}", "f", MESH, 1, 9338, 9337))
        net.publish(f"fake{i:04d}._mesh-node._tcp.local.", [_peer(i).address], 9337,
                    dict(txt.items()))


async def test_mdns_flood_of_fake_peers_is_capped_and_counted(
        mock_clock: trio.testing.MockClock) -> None:
    # Virtual time at 100x: the resolves run on real threads, so no autojump (it would race
    # them); the dial windows are then measured exactly in virtual seconds.
    mock_clock.rate = 100.0
    net = FakeMdnsNetwork()
    disc = MdnsDiscovery("aaa", "a", MESH, "10.0.0.1", 9337, 9338, bus_factory=net.bus,
                         if_addrs=lambda: {"eth0": ["10.9.9.9"]})
    dials: list[tuple[float, str]] = []
    flood = 400
    c = disc.counters
    async with trio.open_nursery() as nursery:
        await nursery.start(disc.run, lambda p: dials.append((trio.current_time(), p.node_id)))
        for batch in range(0, flood, 50):  # bursts, as a flooder would send them
            await trio.to_thread.run_sync(_publish_fakes, net, 50, batch)
            assert len(disc._queued) <= MAX_QUEUED and len(disc._gen) <= MAX_RESOLVING
        await _until(lambda: c.adverts_seen + c.resolves_dropped >= flood
                     and not disc._queued and not disc._busy)
        assert len(disc.peers) <= MAX_PEERS
        assert c.dropped_capacity == c.adverts_seen - len(disc.peers)
        # every instance seen was either resolved or dropped (counted), never silently lost
        assert c.adverts_seen + c.resolves_dropped == flood
        await _until(lambda: len(dials) == len(disc.peers) - c.dials_dropped)
        nursery.cancel_scope.cancel()
    print(f"mdns flood: {flood} adverts, {c.as_dict()}, {len(dials)} dials over "
          f"{dials[-1][0] - dials[0][0]:.0f} virtual s")
    # never more than MAX_DIALS dials in any DIAL_WINDOW_S: the gossip side sees a trickle
    times = [t for t, _ in dials]
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + DIAL_WINDOW_S) <= MAX_DIALS
    assert c.dials_deferred > 0 and len({n for _, n in dials}) == len(dials)
    assert dials[-1][0] >= (len(dials) // MAX_DIALS - 1) * DIAL_WINDOW_S


async def test_mdns_remembers_nothing_of_instances_that_came_and_went() -> None:
    net = FakeMdnsNetwork()
    disc = MdnsDiscovery("aaa", "a", MESH, "10.0.0.1", 9337, 9338, bus_factory=net.bus,
                         if_addrs=lambda: {"eth0": ["10.9.9.9"]})
    seen: list[Peer] = []

    def churn() -> None:
        for i in range(0, 600, 20):
            _publish_fakes(net, 20, i)
            for j in range(i, i + 20):
                net.withdraw(f"fake{j:04d}._mesh-node._tcp.local.")

    async with trio.open_nursery() as nursery:
        await nursery.start(disc.run, seen.append)
        await trio.to_thread.run_sync(churn)
        c = disc.counters
        with trio.fail_after(30):
            while c.removals_seen < 600 or disc._queued or disc._busy:  # noqa: ASYNC110
                await trio.sleep(0.01)  # counters filled from another thread: no event
        assert disc._gen == {} and disc._again == set()
        assert disc.peers == () and disc._gate.deferred == 0
        nursery.cancel_scope.cancel()
