"""Standby: while a host is suspect, the holder that would take over loads the model (issue 16).

Pure. `plan` over the members that are not suspect names, for a model whose every placed host
is suspect, the node that would take over if they died; that node starts the model now, as a
host role published like any other (its serving record is gossiped, so every node sees the
standby). It is not in the placement: SWIM's suspicion timer alone declares the death. The
router uses a ready standby only while every placed host of the model is suspect
(node/context.py). If the suspect refutes, the standby role ends and its backend stops; if it
dies, the plan names the standby (an incumbent, starting or ready) and nothing restarts.

Memory: a standby starts only when it fits beside this node's placed roles (what the real
plan commits here plus the standby's need, at most the memory offered), so it never
oversubscribes a node. Solo models only: a split's standby would need workers too.
A suspicion must have lasted `standby_after` first (`SuspectAges`), so the refutations that
end most false suspicions under loss start nothing; unless it is backed (this node's own fallback
TCP probe of the suspect failed too, or nothing listens there): lost datagrams alone never back
one, so a standby then starts at once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from mesh_node.election.planner import plan, snapshot_from_members
from mesh_node.election.roles import HostRole
from mesh_node.election.rules import need_bytes, node_commitments
from mesh_node.election.snapshot import Snapshot
from mesh_node.records import MemberView, Placement


def standby_hosts(node_id: str, members: Sequence[MemberView], snap: Snapshot,
                  placement: Placement, suspects: Collection[str]) -> tuple[HostRole, ...]:
    """Host roles `node_id` takes as a standby for models whose every host is suspect."""
    me = snap.member(node_id)
    if me is None or node_id in suspects:
        return ()
    hit = [mp for mp in placement.models if mp.mode == "solo" and mp.served_as is None
           and mp.hosts and set(mp.hosts) <= set(suspects) and node_id not in mp.hosts]
    if not hit:
        return ()
    alt = plan(snapshot_from_members([m for m in members if m.node_id not in suspects]))
    used = node_commitments(placement, snap.headroom).get(node_id, 0)
    out: list[HostRole] = []
    for mp in sorted(hit, key=lambda p: p.model):
        other = alt.for_model(mp.model)
        if other is None or other.mode != "solo" or node_id not in other.hosts:
            continue
        need = need_bytes(mp.memory_bytes, snap.headroom)
        if used + need > me.memory_offered:
            continue  # it would not fit beside what this node serves now
        used += need
        out.append(HostRole(mp.model, mp.backend))
    return tuple(out)


@dataclass
class SuspectAges:
    """Which members have been suspect for at least `after` seconds (monotonic `now`), or are
    suspect with a backed suspicion (`MemberView.backed`: our own TCP probe failed too, so it is
    not just lost datagrams): those count at once."""

    after: float
    since: dict[str, float] = field(default_factory=dict)

    def update(self, members: Sequence[MemberView], now: float) -> tuple[frozenset[str],
                                                                          float | None]:
        """(members suspect long enough, when the next one will be; None: none pending)."""
        suspect = [m for m in members if m.status == "suspect"]
        current = {m.node_id for m in suspect}
        for node in list(self.since):
            if node not in current:
                del self.since[node]
        for node in current:
            self.since.setdefault(node, now)
        backed = {m.node_id for m in suspect if m.backed}
        old = frozenset(n for n, t in self.since.items() if now - t >= self.after or n in backed)
        pending = [t + self.after for n, t in self.since.items() if n not in old]
        return old, (min(pending) if pending else None)
