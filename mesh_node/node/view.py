"""The mesh as this node sees it: gossip members turned into typed `MemberView`s.

This is the seam between bytes and types: every state record and load a peer gossips is decoded
here, once per version, by `records_wire` (bounded, strict). An invalid record is dropped and
counted with its reason (the member stays, without a state, so it is never planned on); nothing
raises past this class. The cache holds only current members.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import structlog

from mesh_node.gossip.effects import MemberInfo
from mesh_node.records import Load, MemberView, NodeState
from mesh_node.records_wire import RecordError, decode_load, decode_state

log = structlog.get_logger("mesh_node.view")


class MeshView:
    """Typed, cached view over `members()` of the gossip service."""

    def __init__(self, members: Callable[[], Sequence[MemberInfo]]) -> None:
        self._members = members
        # keeps the bytes object itself, so identity comparison is safe (no id reuse)
        self._states: dict[str, tuple[bytes, NodeState | None]] = {}
        self._loads: dict[str, tuple[bytes, Load]] = {}
        self.dropped: Counter[str] = Counter()  # invalid records, by kind

    def _state(self, m: MemberInfo) -> NodeState | None:
        if m.state is None:
            return None
        hit = self._states.get(m.node)
        if hit is not None and hit[0] is m.state:
            return hit[1]
        st: NodeState | None
        try:
            st = decode_state(m.state)
            if st.node_id != m.node:
                raise RecordError(f"record names {st.node_id[:40]!r}, member is {m.node!r}")
        except RecordError as exc:
            self.dropped["state"] += 1
            log.warning("state_record_invalid", peer=m.node, error=exc.reason)
            st = None
        self._states[m.node] = (m.state, st)
        return st

    def _load(self, m: MemberInfo) -> Load:
        hit = self._loads.get(m.node)
        if hit is not None and hit[0] is m.load:
            return hit[1]
        try:
            ld = decode_load(m.load)
        except RecordError as exc:
            self.dropped["load"] += 1
            log.warning("load_record_invalid", peer=m.node, error=exc.reason)
            ld = Load()
        self._loads[m.node] = (m.load, ld)
        return ld

    def members(self) -> list[MemberView]:
        """Every member (self included), sorted by node id."""
        infos = self._members()
        out = [MemberView(m.node, m.status, m.incarnation, m.address, m.port, self._state(m),
                          m.rtt_ms, self._load(m), m.backed) for m in infos]
        if len(self._states) > len(infos) or len(self._loads) > len(infos):
            current = {m.node for m in infos}
            for cache in (self._states, self._loads):
                for node in [n for n in cache if n not in current]:
                    del cache[node]
        return sorted(out, key=lambda v: v.node_id)

    def live(self) -> list[MemberView]:
        """Live members (the one liveness rule) with a valid state record."""
        return [v for v in self.members() if v.live and v.state is not None]
