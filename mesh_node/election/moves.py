"""Models that should travel: copy a model's file to a node that does not hold it. Pure.

`plan_moves(snapshot, placement, states)` runs after `plan` on every node, over the same
records, so every node names the same moves; only the target acts (control.py: `fetch`). A
move is a separate "fetch" intent: the placement it improves keeps serving the model as it is
(split, or the old host) while the copy runs. Once the target advertises the verified copy it
is a holder, and the planner takes it from there: a holder that can host the model solo ends
a split if its file is a mesh copy (`copy_can_solo`, called from planner._keep), and an
unservable model or a missing replica is placed on it like on any holder.

A copy is chosen only when it buys something clear, and the reason says what:
  - solo instead of a split: "copy from studio: solo on mini instead of a 3-way split";
  - a host for a model no holder can run: "copy from mini: host on studio (no holder can)";
  - a replica the placement wants but no holder can give (`WantedModel.replicas`, which config
    sets today and demand-driven placement can raise): "copy from a: replica 2 of 2 on b".
Targets: live members with the backend, the memory (offered minus what the placement commits
there to other models) and the disk (`NodeState.store_free`); most free memory, then id.
Sources: live holders that share (`NodeState.shares`) the same digest; the current host first.
Only single-file GGUF models travel (an MLX folder has a digest but no transfer yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from mesh_node.election.rules import fmt_bytes, need_bytes, node_commitments
from mesh_node.election.snapshot import Candidate, Snapshot, WantedModel
from mesh_node.records import ModelPlacement, ModelSummary, NodeState, Placement


@dataclass(frozen=True)
class Move:
    """Fetch `model` (file `digest`, `size` bytes) onto `target` from one of `sources`."""

    model: str
    digest: str
    size: int
    target: str  # node id
    sources: tuple[str, ...]  # holder node ids, preferred first
    reason: str


def copy_can_solo(s: Snapshot, m: WantedModel, free: dict[str, int]) -> bool:
    """A node holding a mesh copy of m can host it solo with the memory left: the split the
    copy was made to replace ends (a user's file on a big node does not move a kept split)."""
    need = need_bytes(m.memory_bytes, s.headroom)
    return any(m.id in c.copies and c.can_host(m) and not c.failed(m.id, "host")
               and free.get(c.node_id, 0) >= need for c in s.members)


def _file(m: WantedModel, states: Sequence[NodeState]) -> tuple[str, int] | None:
    """(digest, size) of m's shareable single GGUF file: the digest most holders have, then
    the smallest; None when no sharing holder advertises one."""
    seen: dict[tuple[str, int], int] = {}
    for st in states:
        for e in st.catalog:
            if e.id == m.id and _travels(e) and st.shares:
                seen[(e.digest, e.size_bytes)] = seen.get((e.digest, e.size_bytes), 0) + 1
    if not seen:
        return None
    return min(seen, key=lambda k: (-seen[k], k))


def _travels(e: ModelSummary) -> bool:
    return bool(e.digest) and e.format == "gguf"


def _holds_digest(st: NodeState, digest: str) -> bool:
    return any(e.digest == digest for e in st.catalog)


def _why(p: ModelPlacement, m: WantedModel, target: str, n_hosts: int) -> str | None:
    if p.mode == "split":
        return f"solo on {target} instead of a {1 + len(p.workers)}-way split"
    if p.mode == "unservable":
        return f"host on {target} (no holder can run it: {p.reason})"
    if p.mode == "solo" and n_hosts < m.replicas:
        return f"replica {n_hosts + 1} of {m.replicas} on {target}"
    return None


def plan_moves(s: Snapshot, placement: Placement, states: Iterable[NodeState]
               ) -> tuple[Move, ...]:
    """The copies worth making now (at most one per model), in model order."""
    by_id = {st.node_id: st for st in states}
    live = [by_id[c.node_id] for c in s.members if c.node_id in by_id]
    committed = node_commitments(placement, s.headroom)
    taken: dict[str, int] = {}  # memory the moves below promise, so two do not share a node
    out: list[Move] = []
    for m in s.models:
        p = placement.for_model(m.id)
        f = _file(m, live) if p is not None and p.served_as is None else None
        if p is None or f is None or _busy(s, m, p):
            continue
        digest, size = f
        own = node_commitments(Placement((p,)), s.headroom)  # released when the move lands
        need = need_bytes(m.memory_bytes, s.headroom)
        fits = [c for c in s.members if _target_ok(c, m, by_id[c.node_id], digest, size)
                and c.memory_offered - committed.get(c.node_id, 0) + own.get(c.node_id, 0)
                - taken.get(c.node_id, 0) >= need]
        if not fits:
            continue
        free = {c.node_id: c.memory_offered - committed.get(c.node_id, 0)
                + own.get(c.node_id, 0) for c in fits}
        target = min(fits, key=lambda c: (-free[c.node_id], c.node_id))
        why = _why(p, m, target.label, len(p.hosts))
        if why is None:
            continue
        sources = _sources(s, p, live, digest)
        taken[target.node_id] = taken.get(target.node_id, 0) + need
        src = s.member(sources[0])
        out.append(Move(m.id, digest, size, target.node_id, sources,
                        f"copy from {src.label if src else sources[0]}: {why} "
                        f"({fmt_bytes(size)} over the LAN)"))
    return tuple(out)


def _busy(s: Snapshot, m: WantedModel, p: ModelPlacement) -> bool:
    """Nothing to buy: a solo with all its replicas."""
    return p.mode == "solo" and len(p.hosts) >= m.replicas


def _target_ok(c: Candidate, m: WantedModel, st: NodeState, digest: str, size: int) -> bool:
    return (m.backend in c.backends and not c.failed(m.id, "host")
            and not _holds_digest(st, digest) and st.store_free >= size)


def _sources(s: Snapshot, p: ModelPlacement, live: Sequence[NodeState], digest: str
             ) -> tuple[str, ...]:
    ids = sorted(st.node_id for st in live if st.shares and _holds_digest(st, digest))
    return tuple(sorted(ids, key=lambda i: i not in p.hosts))


def with_moves(placement: Placement, moves: Sequence[Move]) -> Placement:
    """The placement with each move's reason appended to its model's reason."""
    notes = {mv.model: mv.reason for mv in moves}
    return Placement(tuple(replace(p, reason=f"{p.reason}; {notes[p.model]}")
                           if p.model in notes else p for p in placement.models))
