"""The election service: re-plan when the mesh view changes, then carry out this node's part.

Thin trio shell around the pure step `control.decide` (plan + role diff). Children are started
and stopped through a `ChildControl`, which the node implements over the backend supervisor;
tests use a fake. No plan is carried out before the node has joined (a push-pull with a peer)
or, alone, before the join window ends: a newcomer must learn the incumbents first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import structlog
import trio

from mesh_node.catalog.entry import CatalogEntry
from mesh_node.election.control import Decision, decide
from mesh_node.election.moves import Move
from mesh_node.election.roles import HostRole, Roles
from mesh_node.election.snapshot import WantedModel
from mesh_node.election.standby import SuspectAges
from mesh_node.records import MemberView, Placement
from mesh_node.timing import DEFAULT_TIMINGS, Timings

log = structlog.get_logger("mesh_node.election")

View = Callable[[], Sequence[MemberView]]


class ChildControl(Protocol):
    """Start/stop this node's backend children; every call is idempotent."""

    async def ensure_host(self, role: HostRole, entry: CatalogEntry) -> None: ...

    async def stop_host(self, model: str) -> None: ...

    async def ensure_worker(self, models: tuple[str, ...]) -> None: ...

    async def stop_worker(self) -> None: ...

    def hosted(self) -> set[str]: ...


def log_changes(old: Placement, new: Placement) -> None:
    for mp in new.models:
        before = old.for_model(mp.model)
        if before is None or (before.hosts, before.workers, before.mode) != (
                mp.hosts, mp.workers, mp.mode):
            log.info("placement_changed", model=mp.model, mode=mp.mode, hosts=list(mp.hosts),
                     workers=[w.node_id for w in mp.workers], reason=mp.reason)


class ElectionService:
    """Owns the current placement; `poke()` after any change of the view."""

    def __init__(self, node_id: str, view: View, children: ChildControl,
                 catalog: Mapping[str, CatalogEntry], joined: trio.Event,
                 timings: Timings = DEFAULT_TIMINGS,
                 on_placement: Callable[[Placement, Placement], None] | None = None,
                 on_fetch: Callable[[tuple[Move, ...]], None] | None = None) -> None:
        self.node_id = node_id
        self._view = view
        self._children = children
        self._catalog = catalog
        self._joined = joined
        self._timings = timings
        self._on_placement = on_placement
        self._on_fetch = on_fetch  # issue 14: the copies this node should make
        self.moves: tuple[Move, ...] = ()
        self.placement = Placement()
        self.models: tuple[WantedModel, ...] = ()  # the last plan's input: demand per model
        self.roles = Roles()
        self.planned_once = False
        self._ages = SuspectAges(timings.standby_after)
        self._standby_due: float | None = None  # a suspicion becomes old enough then
        self._standby: set[str] = set()
        self._standby_for: frozenset[str] = frozenset()  # suspects the last step stood by for
        self._poke_send, self._poke_recv = trio.open_memory_channel[None](1)

    def poke(self) -> None:
        """Ask for a re-plan; never blocks (one pending poke is enough)."""
        try:
            self._poke_send.send_nowait(None)
        except trio.WouldBlock:
            pass

    def decide(self) -> Decision:
        files = {k for k, e in self._catalog.items() if not e.error}
        members = self._view()
        suspects, self._standby_due = self._ages.update(members, trio.current_time())
        self._standby_for = suspects
        return decide(self.node_id, members, self._children.hosted(), files, suspects)

    def _note_suspects(self) -> float | None:
        """Start the standby clock of each new suspect now (not at the debounced step);
        when the next standby becomes due."""
        old, pending = self._ages.update(self._view(), trio.current_time())
        return trio.current_time() if old - self._standby_for else pending

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        with trio.move_on_after(self._timings.join_window) as window:
            await self._joined.wait()
        log.info("election_starting", joined=not window.cancelled_caught,
                 waited_s=round(self._timings.join_window if window.cancelled_caught else 0, 1))
        while True:
            await self.step()
            due = trio.current_time() + self._timings.election_recheck
            if self._standby_due is not None:  # re-plan when a suspicion is old enough
                due = min(due, self._standby_due)
            with trio.move_on_at(due):
                await self._poke_recv.receive()
                await self._debounce()

    async def _debounce(self) -> None:
        """Coalesce a burst of pokes (a join or a death arrives as several gossip updates);
        pokes during it are covered by the coming step. A suspicion is aged from its poke,
        and a standby it makes due (a backed one: at once) is not held back."""
        end = trio.current_time() + self._timings.election_debounce
        while True:
            standby_due = self._note_suspects()
            with trio.move_on_at(end if standby_due is None else min(end, standby_due)):
                await self._poke_recv.receive()
                continue
            return

    async def step(self) -> None:
        """One re-plan and reconcile."""
        d = self.decide()
        old, self.placement = self.placement, d.placement
        self.models = d.models
        self.planned_once = True
        if d.placement != old:
            log_changes(old, d.placement)
            if self._on_placement is not None:
                self._on_placement(old, d.placement)
        self.roles = d.roles
        self.moves = d.moves
        if self._on_fetch is not None:
            self._on_fetch(d.fetch)
        for model in d.stop_hosts:
            log.info("role_ended", model=model, role="host")
            await self._children.stop_host(model)
        if d.worker_for:
            await self._children.ensure_worker(d.worker_for)
        else:
            await self._children.stop_worker()
        for model in d.missing_file:
            log.warning("host_role_without_file", model=model)
        for role in d.waiting:
            log.info("host_waiting_for_workers", model=role.model, waiting=list(role.waiting_for))
        standby = {r.model for r in d.standby}
        for model in sorted(standby - self._standby):
            log.info("standby_starting", model=model, suspects=sorted(self._ages.since))
        for model in sorted(self._standby - standby):
            log.info("standby_ended", model=model)
        self._standby = standby
        for role in d.start_hosts:
            await self._children.ensure_host(role, self._catalog[role.model])
