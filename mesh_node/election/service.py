"""The election service: re-plan when the mesh view changes, then carry out this node's part.

Thin trio shell around the pure planner (`planner.plan`) and the pure role diff
(`roles.local_roles`). Children are started and stopped through a `ChildControl`, which the
node implements over the backend supervisor; tests use a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import structlog
import trio

from mesh_node.catalog.entry import CatalogEntry
from mesh_node.config.model import ElectionConfig
from mesh_node.election.planner import plan, snapshot_from_states
from mesh_node.election.roles import HostRole, Roles, local_roles
from mesh_node.records import NodeState, Placement
from mesh_node.timing import DEFAULT_TIMINGS, Timings

log = structlog.get_logger("mesh_node.election")

View = Callable[[], tuple[Mapping[str, NodeState], Mapping[str, float]]]
RECHECK_S = 2.0  # re-plan at least this often: a worker's readiness may arrive between pokes


class ChildControl(Protocol):
    """Start/stop this node's backend children; every call is idempotent."""

    async def ensure_host(self, role: HostRole, entry: CatalogEntry) -> None: ...

    async def stop_host(self, model: str) -> None: ...

    async def ensure_worker(self, models: tuple[str, ...]) -> None: ...

    async def stop_worker(self) -> None: ...

    def hosted(self) -> set[str]: ...


class ElectionService:
    """Owns the current placement; `poke()` after any change of the view."""

    def __init__(self, node_id: str, view: View, children: ChildControl,
                 catalog: Mapping[str, CatalogEntry], cfg: ElectionConfig,
                 timings: Timings = DEFAULT_TIMINGS,
                 on_placement: Callable[[Placement, Placement], None] | None = None) -> None:
        self.node_id = node_id
        self._view = view
        self._children = children
        self._catalog = catalog
        self._cfg = cfg
        self._timings = timings
        self._on_placement = on_placement
        self.placement = Placement()
        self.roles = Roles()
        self.planned_once = False
        self._poke_send, self._poke_recv = trio.open_memory_channel[None](1)

    def poke(self) -> None:
        """Ask for a re-plan; never blocks (one pending poke is enough)."""
        try:
            self._poke_send.send_nowait(None)
        except trio.WouldBlock:
            pass

    def replan(self) -> Placement:
        """Plan from the current view (pure apart from reading the view).

        No local `previous` placement is passed: incumbency comes only from the serving
        records every node gossips, so two nodes with the same view always agree (a local
        previous plan could keep two nodes each believing itself the host forever).
        """
        states, rtt = self._view()
        snap = snapshot_from_states(states.values(), rtt, None,
                                    self._cfg.headroom, self._cfg.max_rtt_ms)
        return plan(snap)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(RECHECK_S):
                await self._poke_recv.receive()
                # debounce: a join or a death arrives as several gossip updates in a burst
                await trio.sleep(self._timings.election_debounce)
                while True:  # pokes that arrived during the debounce are covered by this step
                    try:
                        self._poke_recv.receive_nowait()
                    except trio.WouldBlock:
                        break
            await self.step()

    async def step(self) -> None:
        """One re-plan and reconcile."""
        new = self.replan()
        old, self.placement = self.placement, new
        self.planned_once = True
        if new != old:
            for mp in new.models:
                before = old.for_model(mp.model)
                if before is None or (before.hosts, before.workers, before.mode) != (
                        mp.hosts, mp.workers, mp.mode):
                    log.info("placement_changed", model=mp.model, mode=mp.mode,
                             hosts=list(mp.hosts), workers=[w.node_id for w in mp.workers],
                             reason=mp.reason)
            if self._on_placement is not None:
                self._on_placement(old, new)
        states, _ = self._view()
        self.roles = local_roles(self.node_id, new, states)
        await self._reconcile(self.roles)

    async def _reconcile(self, roles: Roles) -> None:
        wanted = {h.model for h in roles.hosts}
        for model in sorted(self._children.hosted() - wanted):
            log.info("role_ended", model=model, role="host")
            await self._children.stop_host(model)
        if roles.worker_for:
            await self._children.ensure_worker(roles.worker_for)
        else:
            await self._children.stop_worker()
        for role in roles.hosts:
            entry = self._catalog.get(role.model)
            if entry is None or entry.error:
                log.warning("host_role_without_file", model=role.model)
                continue
            if not role.startable:
                log.info("host_waiting_for_workers", model=role.model,
                         waiting=list(role.waiting_for))
                continue
            await self._children.ensure_host(role, entry)
