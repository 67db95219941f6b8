"""The mesh as this node sees it: gossip members turned into typed `MemberView`s (cached by
record version, so request routing does not re-decode state records)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from mesh_node.gossip.shell import MemberSnapshot
from mesh_node.records import MemberView, NodeState

log = structlog.get_logger("mesh_node.view")


class MeshView:
    """Typed, cached view over `members()` of the gossip service."""

    def __init__(self, members: Callable[[], Sequence[MemberSnapshot]]) -> None:
        self._members = members
        # keeps the record object itself, so identity comparison is safe (no id reuse)
        self._cache: dict[str, tuple[object, NodeState | None]] = {}

    def _state(self, m: MemberSnapshot) -> NodeState | None:
        if m.state is None:
            return None
        hit = self._cache.get(m.node_id)
        if hit is not None and hit[0] is m.state:
            return hit[1]
        try:
            st: NodeState | None = NodeState.from_wire(dict(m.state))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("state_record_invalid", peer=m.node_id, error=str(exc))
            st = None
        self._cache[m.node_id] = (m.state, st)
        return st

    def members(self) -> list[MemberView]:
        out = []
        for m in self._members():
            status = m.status if m.status in ("alive", "suspect", "dead", "left") else "dead"
            out.append(MemberView(m.node_id, status, m.incarnation,  # type: ignore[arg-type]
                                  m.address, m.port, self._state(m), m.rtt_ms))
        return sorted(out, key=lambda v: v.node_id)

    def live_states(self) -> tuple[dict[str, NodeState], dict[str, float]]:
        """Records and RTTs of the members the election may use (alive or merely suspect)."""
        states: dict[str, NodeState] = {}
        rtt: dict[str, float] = {}
        for v in self.members():
            # a suspect member is still a member: SWIM has not confirmed its death, and
            # moving its models on a suspicion would flap under packet loss
            if v.status in ("alive", "suspect") and v.state is not None:
                states[v.node_id] = v.state
                if v.rtt_ms is not None:
                    rtt[v.node_id] = v.rtt_ms
        return states, rtt
