"""MdnsDiscovery over the fake mDNS bus: thread hand-off, filtering, update, goodbyes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from structlog.testing import capture_logs

from mesh_node.discovery.core import Peer
from mesh_node.discovery.fake import FakeMdnsNetwork
from mesh_node.discovery.mdns import DiscoveryError, MdnsDiscovery
from mesh_node.discovery.txt import Advert, encode_txt

MESH = "0123456789abcdef"


def _ifs() -> dict[str, list[str]]:
    return {"eth0": ["10.9.9.9"]}


def _disc(net: FakeMdnsNetwork, node_id: str, address: str, **kw: object) -> MdnsDiscovery:
    return MdnsDiscovery(node_id, f"box-{node_id}", MESH, address, 9337, 9338,
                         ["llama:split"], bus_factory=net.bus, if_addrs=_ifs, **kw)  # type: ignore[arg-type]


async def _until(cond: Callable[[], object], limit: float = 5.0) -> None:
    """Poll (bounded) until cond() is truthy: the callbacks arrive from other threads."""
    for _ in range(int(limit / 0.01)):
        if cond():
            return
        await trio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def test_two_nodes_find_each_other_and_see_the_goodbye() -> None:
    net = FakeMdnsNetwork()
    a, b = _disc(net, "aaa", "10.0.0.1"), _disc(net, "bbb", "10.0.0.2")
    seen_a: list[Peer] = []
    seen_b: list[Peer] = []
    gone_a: list[Peer] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run, seen_a.append, gone_a.append)
        async with trio.open_nursery() as inner:
            await inner.start(b.run, seen_b.append)
            await _until(lambda: seen_a and seen_b)
            assert [p.node_id for p in seen_a] == ["bbb"] and seen_a[0].address == "10.0.0.2"
            assert [p.node_id for p in seen_b] == ["aaa"] and seen_b[0].gossip_port == 9338
            inner.cancel_scope.cancel()  # b shuts down: goodbye
        await _until(lambda: gone_a)
        assert gone_a[0].node_id == "bbb" and b.instance in net.goodbyes
        assert a.peers == ()
        nursery.cancel_scope.cancel()
    assert a.instance in net.goodbyes


async def test_update_reannounces_and_peers_see_new_capabilities() -> None:
    net = FakeMdnsNetwork()
    a, b = _disc(net, "aaa", "10.0.0.1"), _disc(net, "bbb", "10.0.0.2")
    seen: list[Peer] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run, seen.append)
        await nursery.start(b.run, lambda p: None)
        await _until(lambda: seen)
        with capture_logs() as logs:
            await b.update(capabilities_txt=["mlx:solo"], memory_offered=8 << 30)
        await _until(lambda: len(seen) == 2)
        assert seen[-1].capabilities == ("mlx:solo",) and seen[-1].memory_offered == 8 << 30
        assert any(e["event"] == "mdns_updated" for e in logs)
        nursery.cancel_scope.cancel()


async def test_foreign_and_malformed_adverts_are_counted_not_reported() -> None:
    net = FakeMdnsNetwork()
    a = _disc(net, "aaa", "10.0.0.1")
    seen: list[Peer] = []
    foreign = encode_txt(Advert("zzz", "z", "fedcba9876543210", 1, 9338, 9337))
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run, seen.append)
        with capture_logs() as logs:
            await trio.to_thread.run_sync(lambda: net.publish(
                "z._mesh-node._tcp.local.", ["10.0.0.3"], 9337, dict(foreign.items())))
            await trio.to_thread.run_sync(lambda: net.publish(
                "m._mesh-node._tcp.local.", ["10.0.0.4"], 9337, {b"id": b"\xff"}))
            await _until(lambda: a.counters.dropped_malformed == 1
                         and a.counters.dropped_foreign_mesh == 1)
        assert seen == []
        assert {e["reason"] for e in logs if e["event"] == "mdns_advert_dropped"} == {
            "foreign mesh", "malformed: bad node id"}
        nursery.cancel_scope.cancel()


async def test_no_usable_interface_fails_clearly() -> None:
    net = FakeMdnsNetwork()
    d = MdnsDiscovery("aaa", "a", MESH, "10.0.0.1", 9337, 9338, interfaces=["wlan7"],
                      bus_factory=net.bus, if_addrs=_ifs)
    with pytest.raises(DiscoveryError, match="no usable interface"):
        await d.run(lambda p: None)


def test_advert_fits_dns_labels() -> None:
    d = MdnsDiscovery("n" * 60, "my laptop.local", MESH, "10.0.0.1", 9337, 9338)
    label = d.instance.split(".")[0]
    assert len(label.encode()) <= 63 and label.endswith("n" * 60)
    assert d.instance.endswith("._mesh-node._tcp.local.")
    assert d.advert().properties["md"] == MESH
    short = MdnsDiscovery("c0ffee", "my laptop.local", MESH, "10.0.0.1", 9337, 9338)
    assert short.instance == "my-laptop-local-c0ffee._mesh-node._tcp.local."
