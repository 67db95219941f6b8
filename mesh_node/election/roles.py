"""What this node must run, given the placement: a pure diff of placement -> local roles.

A host of a split model starts only once every worker it needs has published readiness
through gossip: `llama-server --rpc` connects to its workers at start and fails otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mesh_node.records import NodeState, Placement, WorkerAssignment


@dataclass(frozen=True)
class HostRole:
    model: str
    backend: str
    workers: tuple[WorkerAssignment, ...] = ()
    waiting_for: tuple[str, ...] = ()  # worker node ids not ready yet

    @property
    def startable(self) -> bool:
        return not self.waiting_for

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str, int, float], ...]]:
        """Children are restarted only when this changes (same model, same workers)."""
        return self.model, tuple((w.node_id, w.address, w.rpc_port, round(w.weight, 4))
                                 for w in self.workers)


@dataclass(frozen=True)
class Roles:
    hosts: tuple[HostRole, ...] = ()
    worker_for: tuple[str, ...] = ()  # models this node is an RPC worker of


def _worker_ready(states: Mapping[str, NodeState], w: WorkerAssignment, model: str) -> bool:
    st = states.get(w.node_id)
    if st is None:
        return False
    return any(s.role == "worker" and s.ready and s.model == model for s in st.serving)


def local_roles(node_id: str, placement: Placement, states: Mapping[str, NodeState]) -> Roles:
    """The roles `node_id` holds in `placement`; `states` are the live members' records."""
    hosts: list[HostRole] = []
    worker_for: list[str] = []
    for mp in sorted(placement.models, key=lambda m: m.model):
        if mp.mode == "unservable" or mp.served_as:
            continue  # served_as: another export (its own placement) serves this model
        if node_id in mp.hosts:
            waiting = tuple(w.node_id for w in mp.workers if not _worker_ready(states, w, mp.model))
            hosts.append(HostRole(mp.model, mp.backend, mp.workers, waiting))
        if any(w.node_id == node_id for w in mp.workers):
            worker_for.append(mp.model)
    return Roles(tuple(hosts), tuple(worker_for))
