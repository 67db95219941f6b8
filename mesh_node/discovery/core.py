"""The pure core of mDNS browsing: resolved adverts in, peer hints and counters out.

It knows nothing of zeroconf or trio: the shell feeds it resolved services and removals and
acts on what it returns. Filters: our own advert, other meshes (digest), other protocol
versions and malformed adverts are dropped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from mesh_node.discovery.txt import Advert, Malformed, TxtProps, decode_txt

MAX_PEERS = 256  # advertised instances remembered (names come off the wire); a mesh is smaller


@dataclass(frozen=True)
class Peer:
    """A node seen over mDNS: only a hint for gossip's `add_seed(address, gossip_port)`."""

    node_id: str
    address: str
    gossip_port: int
    api_port: int
    mesh_digest: str
    capabilities: tuple[str, ...] = ()
    memory_offered: int = 0
    name: str = ""


@dataclass
class MdnsCounters:
    """What browsing saw and dropped (exported through status/metrics)."""

    adverts_seen: int = 0
    dropped_foreign_mesh: int = 0
    dropped_malformed: int = 0
    dropped_protocol: int = 0
    dropped_no_address: int = 0
    dropped_capacity: int = 0  # a new instance while MAX_PEERS are known
    removals_seen: int = 0
    resolves_dropped: int = 0  # announcements beyond the resolve queue (limits.MAX_QUEUED)
    dials_deferred: int = 0  # hints held back by the dial cap (limits.DialGate)
    dials_dropped: int = 0  # hints dropped: the deferred queue was full

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Dropped:
    """A resolved advert that produced no peer, with the counter it went to."""

    instance: str
    reason: str


class BrowseCore:
    """Tracks advertised instances -> peers for one node; pure and synchronous."""

    def __init__(self, self_id: str, mesh_digest: str, protocol: int) -> None:
        self.self_id = self_id
        self.mesh_digest = mesh_digest
        self.protocol = protocol
        self.counters = MdnsCounters()
        self._by_instance: dict[str, Peer] = {}

    @property
    def peers(self) -> tuple[Peer, ...]:
        """Known peers, sorted by node id."""
        return tuple(sorted(self._by_instance.values(), key=lambda p: p.node_id))

    def on_resolved(self, instance: str, addresses: Sequence[str],
                    props: TxtProps) -> Peer | Dropped | None:
        """A resolved advert: a new/changed `Peer`, `Dropped`, or None (ours or unchanged)."""
        self.counters.adverts_seen += 1
        advert = decode_txt(props)
        if isinstance(advert, Malformed):
            self.counters.dropped_malformed += 1
            return Dropped(instance, f"malformed: {advert.reason}")
        if advert.node_id == self.self_id:
            return None
        if advert.mesh_digest != self.mesh_digest:
            self.counters.dropped_foreign_mesh += 1
            return Dropped(instance, "foreign mesh")
        if advert.protocol != self.protocol:
            self.counters.dropped_protocol += 1
            return Dropped(instance, f"protocol {advert.protocol}")
        if not addresses:
            self.counters.dropped_no_address += 1
            return Dropped(instance, "no address")
        peer = _peer(advert, sorted(addresses)[0])
        known = self._by_instance.get(instance)
        if known == peer:
            return None
        if known is None and len(self._by_instance) >= MAX_PEERS:
            self.counters.dropped_capacity += 1
            return Dropped(instance, "capacity")
        self._by_instance[instance] = peer
        return peer

    def on_removed(self, instance: str) -> Peer | None:
        """A goodbye (or expiry): the peer it was, if we knew it."""
        self.counters.removals_seen += 1
        return self._by_instance.pop(instance, None)


def _peer(a: Advert, address: str) -> Peer:
    return Peer(node_id=a.node_id, address=address, gossip_port=a.gossip_port,
                api_port=a.api_port, mesh_digest=a.mesh_digest, capabilities=a.capabilities,
                memory_offered=a.memory_offered, name=a.name)
