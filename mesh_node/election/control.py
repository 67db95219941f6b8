"""One step of the control loop, pure: mesh view -> plan -> this node's roles -> what to change.

The election service (trio) and the closed-loop simulation (mesh_node/testing/loopsim.py) both
call `decide`, so the path the simulation checks is the path the node runs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from mesh_node.election.moves import Move, plan_moves, with_moves
from mesh_node.election.planner import plan, snapshot_from_members
from mesh_node.election.roles import HostRole, Roles, local_roles
from mesh_node.election.snapshot import WantedModel
from mesh_node.election.standby import standby_hosts
from mesh_node.records import MemberView, Placement


@dataclass(frozen=True)
class Decision:
    """What this node should run after one plan."""

    placement: Placement
    models: tuple[WantedModel, ...]  # what the plan read: every offered model and its demand
    roles: Roles
    stop_hosts: tuple[str, ...]  # hosted models whose role ended
    start_hosts: tuple[HostRole, ...]  # host roles to ensure (idempotent), workers ready
    waiting: tuple[HostRole, ...]  # host roles whose RPC workers are not ready yet
    worker_for: tuple[str, ...]  # models to be an RPC worker of (empty: stop the worker)
    missing_file: tuple[str, ...]  # host roles this node cannot carry out (no usable file)
    moves: tuple[Move, ...] = ()  # copies the mesh should make (every node names the same)
    fetch: tuple[Move, ...] = ()  # the moves this node is the target of
    standby: tuple[HostRole, ...] = ()  # started beside the placement: its host is suspect


def decide(node_id: str, members: Sequence[MemberView], hosted: Collection[str],
           files: Collection[str], suspects: Collection[str] = ()) -> Decision:
    """Plan from the view and diff it against what runs here (`hosted`: model ids with a host
    child; `files`: model ids this node holds usable files of; `suspects`: members suspect
    long enough for a standby, election/standby.py)."""
    snapshot = snapshot_from_members(members)
    states = {m.node_id: m.state for m in members if m.live and m.state is not None}
    placement = plan(snapshot)
    moves = plan_moves(snapshot, placement, states.values())
    placement = with_moves(placement, moves)
    roles = local_roles(node_id, placement, states)
    standby = tuple(h for h in standby_hosts(node_id, members, snapshot, placement, suspects)
                    if h.model in files)
    wanted = {h.model for h in roles.hosts} | {h.model for h in standby}
    runnable = [h for h in roles.hosts if h.model in files] + list(standby)
    return Decision(
        placement=placement, models=snapshot.models, roles=roles,
        stop_hosts=tuple(sorted(set(hosted) - wanted)),
        start_hosts=tuple(h for h in runnable if h.startable),
        waiting=tuple(h for h in runnable if not h.startable),
        worker_for=roles.worker_for,
        missing_file=tuple(h.model for h in roles.hosts if h.model not in files),
        moves=moves, fetch=tuple(mv for mv in moves if mv.target == node_id),
        standby=standby,
    )
