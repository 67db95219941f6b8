"""Carry a placement out on paper: the serving records nodes would publish after doing it.

What `node/children.BackendChildren.serving` publishes for a role, reduced to the fields the
planner reads: a host record (with its split workers and weights), a worker record per model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from mesh_node.records import NodeState, Placement, Serving


def carry_out(states: Iterable[NodeState], placement: Placement, ready: bool = True,
              ready_at: int = 1) -> tuple[NodeState, ...]:
    """`states` with their serving records replaced by what carrying out `placement` gives.
    A failure record of a role the node no longer holds stays, as the failure cool-down keeps
    it in BackendChildren."""
    out = []
    for st in states:
        serving: list[Serving] = []
        for mp in placement.models:
            if mp.mode == "unservable" or mp.served_as:
                continue
            state = "ready" if ready else "starting"
            if st.node_id in mp.hosts:
                workers = tuple((w.node_id, w.weight) for w in mp.workers)
                serving.append(Serving(mp.model, "host", mp.backend, ready, st.api_port, state,
                                       workers, ready_at if ready else 0))
            if any(w.node_id == st.node_id for w in mp.workers):
                serving.append(Serving(mp.model, "worker", "llama", ready, st.rpc_port, state))
        held = {(s.model, s.role) for s in serving}
        serving += [s for s in st.serving if s.state.startswith("failed")
                    and (s.model, s.role) not in held]
        out.append(dataclasses.replace(st, serving=tuple(serving)))
    return tuple(out)
