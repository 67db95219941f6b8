"""This node's own records: the versioned `NodeState` (republished only when it changed) and the
volatile `Load` (gossiped beside it, unversioned), plus the pure rule for its "far" peers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from mesh_node.records import Load, MemberView, ModelSummary, NodeState, Serving
from mesh_node.records_wire import encode_load, encode_state

# A peer becomes far above the limit and near again below this fraction of it, so an RTT that
# hovers at the limit does not republish the record (and move a split) every probe.
FAR_HYSTERESIS = 0.8


class Publisher(Protocol):
    def set_local_state(self, record: bytes) -> None: ...

    def set_local_load(self, load: bytes) -> None: ...


def far_peers(members: Iterable[MemberView], max_rtt_ms: float, before: Iterable[str]
              ) -> tuple[str, ...]:
    """Peers measured beyond max_rtt_ms (with hysteresis), sorted: published in NodeState.far
    so that every node plans splits from the same measurements."""
    was = set(before)
    out = []
    for m in members:
        if m.rtt_ms is None or not m.live:
            continue
        limit = max_rtt_ms * FAR_HYSTERESIS if m.node_id in was else max_rtt_ms
        if m.rtt_ms > limit:
            out.append(m.node_id)
    return tuple(sorted(out))


@dataclass
class LocalState:
    """Holds the current `NodeState` and `Load`; publishes each when it changes."""

    state: NodeState
    gossip: Publisher
    load: Load = Load()

    def start(self) -> None:
        self.gossip.set_local_state(encode_state(self.state))
        self.gossip.set_local_load(encode_load(self.load))

    def update(self, *, serving: tuple[Serving, ...] | None = None,
               memory_free: int | None = None, far: tuple[str, ...] | None = None,
               catalog: tuple[ModelSummary, ...] | None = None,
               store_free: int | None = None, learned: NodeState | None = None) -> None:
        """Republish what changed. `learned`: the same node's record once its inventory is
        known (capabilities, catalog, what its config says of them), which arrives after the
        join; `catalog`: digests computed or copies fetched later (transfer/service.py)."""
        new = self.state
        if learned is not None:
            new = replace(new, capabilities=learned.capabilities, catalog=learned.catalog,
                          pins=learned.pins, replicas=learned.replicas,
                          preload=learned.preload, idle=learned.idle)
        if catalog is not None:
            new = replace(new, catalog=catalog)
        if store_free is not None:
            new = replace(new, store_free=store_free)
        if serving is not None:
            new = replace(new, serving=tuple(sorted(serving, key=lambda s: (s.model, s.role))))
        if memory_free is not None:
            new = replace(new, memory_free=memory_free)
        if far is not None:
            new = replace(new, far=far)
        if new != self.state:
            self.state = new
            self.gossip.set_local_state(encode_state(new))

    def update_load(self, load: Load) -> bool:
        """Publish `load` if it changed; True when it did."""
        if load == self.load:
            return False
        self.load = load
        self.gossip.set_local_load(encode_load(load))
        return True
