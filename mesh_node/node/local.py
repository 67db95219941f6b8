"""This node's own state record: built from static facts plus live serving/in-flight data,
and republished to gossip only when it changed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from mesh_node.records import NodeState, Serving


@dataclass
class LocalState:
    """Holds the current `NodeState`; `publish` is gossip's `set_local_state`."""

    state: NodeState
    publish: Callable[[dict[str, object]], None]

    def start(self) -> None:
        self.publish(self.state.to_wire())

    def update(self, *, serving: tuple[Serving, ...] | None = None, inflight: int | None = None,
               memory_free: int | None = None) -> None:
        new = self.state
        if serving is not None:
            new = replace(new, serving=tuple(sorted(serving, key=lambda s: (s.model, s.role))))
        if inflight is not None:
            new = replace(new, inflight=inflight)
        if memory_free is not None:
            new = replace(new, memory_free=memory_free)
        if new != self.state:
            self.state = new
            self.publish(new.to_wire())
