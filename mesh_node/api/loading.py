"""Waiting for a model to load: the bound on how long a request waits for a ready host.

A request for a model that is not loaded is the mesh's demand for it (api/demand.py publishes
it; the planner places it, evicting idle models if it must); the request waits here until a
host is ready, at most `load_timeout` (timing.py, `[election] load_timeout`). A model the
planner calls unservable (it fits nowhere even on an empty mesh, no node can run its backend,
hosting failed everywhere) fails at once with the planner's reason. A model already loaded
whose host is briefly unusable (a failover) keeps the shorter `route_retry_window`.
"""

from __future__ import annotations

import structlog
import trio

from mesh_node.api import errors
from mesh_node.api.context import MeshContext
from mesh_node.timing import Timings

log = structlog.get_logger("mesh_node.api")
REPOLL_S = 0.25  # re-read routes at least this often while waiting for a ready host
WAITING = ("loading", "available", "unplanned")  # statuses worth waiting load_timeout for


class LoadWait:
    """One request's wait for a ready host of `model_id` (started when it arrived)."""

    def __init__(self, ctx: MeshContext, timings: Timings, model_id: str) -> None:
        self.ctx, self.timings, self.model_id = ctx, timings, model_id
        self.started = trio.current_time()
        self.logged = False

    async def next(self, routes: int, *, changed: bool = False) -> None:
        """Return when routes are worth re-reading; ApiError when the model can never be
        placed or the wait is over. `routes`: how many were tried (for the log); `changed`:
        the routes are already not the ones tried, so only a checkpoint is taken."""
        status, reason = self.ctx.model_state(self.model_id)
        if status == "unservable":
            log.warning("model_unservable", model=self.model_id, reason=reason)
            raise errors.model_unservable(self.model_id, reason)
        loading = status in WAITING
        limit = self.timings.load_timeout if loading else self.timings.route_retry_window
        remaining = self.started + limit - trio.current_time()
        if remaining <= 0:
            log.warning("no_ready_host", model=self.model_id, routes=routes, status=status)
            if loading:
                raise errors.load_timeout(self.model_id, limit, reason)
            raise errors.no_ready_host(self.model_id, retry_after=2)
        if loading and not self.logged:
            self.logged = True
            log.info("model_load_wait", model=self.model_id, status=status, reason=reason)
        if changed:
            await trio.lowlevel.checkpoint()
            return
        await self.ctx.wait_for_change(min(remaining, REPOLL_S))
