"""BrowseCore filtering/counters and interface selection (pure)."""

from __future__ import annotations

from mesh_node.discovery.core import BrowseCore, Dropped, Peer
from mesh_node.discovery.interfaces import is_virtual, select_addresses
from mesh_node.discovery.txt import Advert, encode_txt

MESH = "0123456789abcdef"
OTHER = "fedcba9876543210"


def _props(node_id: str, digest: str = MESH, protocol: int = 1,
           caps: tuple[str, ...] = ("llama:split",)) -> dict[bytes | str, bytes | str | None]:
    txt = encode_txt(Advert(node_id, node_id, digest, protocol, 9338, 9337, caps, 1 << 30))
    return {k.encode(): v.encode() for k, v in txt.items()}


def test_peer_found_once_then_changed_then_removed() -> None:
    core = BrowseCore("me", MESH, 1)
    first = core.on_resolved("b._x", ["10.0.0.2"], _props("b"))
    assert first == Peer("b", "10.0.0.2", 9338, 9337, MESH, ("llama:split",), 1 << 30, "b")
    assert core.on_resolved("b._x", ["10.0.0.2"], _props("b")) is None  # unchanged
    changed = core.on_resolved("b._x", ["10.0.0.2"], _props("b", caps=("mlx:solo",)))
    assert isinstance(changed, Peer) and changed.capabilities == ("mlx:solo",)
    assert core.peers == (changed,)
    assert core.on_removed("b._x") == changed
    assert core.on_removed("b._x") is None
    assert len(core.peers) == 0
    assert core.counters.adverts_seen == 3 and core.counters.removals_seen == 2


def test_filters_self_foreign_protocol_malformed_and_addressless() -> None:
    core = BrowseCore("me", MESH, 1)
    assert core.on_resolved("me._x", ["10.0.0.1"], _props("me")) is None
    results = [
        core.on_resolved("f._x", ["10.0.0.3"], _props("f", digest=OTHER)),
        core.on_resolved("p._x", ["10.0.0.4"], _props("p", protocol=2)),
        core.on_resolved("m._x", ["10.0.0.5"], {b"id": b"m"}),
        core.on_resolved("n._x", [], _props("n")),
    ]
    assert all(isinstance(r, Dropped) for r in results)
    c = core.counters
    assert (c.dropped_foreign_mesh, c.dropped_protocol, c.dropped_malformed,
            c.dropped_no_address) == (1, 1, 1, 1)
    assert core.peers == ()
    assert c.as_dict()["adverts_seen"] == 5


def test_default_interface_choice_skips_virtual_ones() -> None:
    ifs = {"lo": ["127.0.0.1"], "eth0": ["10.77.3.1"], "docker0": ["172.17.0.1"],
           "veth12ab": ["169.254.1.1"], "br-1234": ["172.18.0.1"], "virbr0": ["192.168.122.1"],
           "wlp2s0": ["192.168.1.20", "169.254.9.9"], "enp3s0": []}
    assert select_addresses(ifs) == ["10.77.3.1", "192.168.1.20"]
    assert is_virtual("lo") and is_virtual("docker0") and not is_virtual("eth0")


def test_explicit_interfaces_override_by_name_or_address() -> None:
    ifs = {"eth0": ["10.0.0.1"], "docker0": ["172.17.0.1"], "wlan0": ["192.168.1.2"]}
    assert select_addresses(ifs, ["docker0"]) == ["172.17.0.1"]
    assert select_addresses(ifs, ["192.168.1.2"]) == ["192.168.1.2"]
    assert select_addresses(ifs, ["nope0"]) == []
