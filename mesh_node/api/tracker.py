"""Per-request accounting: in-flight counts, metrics, request events; finished exactly once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import structlog
import trio

from mesh_node.api.demand import DemandBook
from mesh_node.status.events import EventHub
from mesh_node.status.metrics import ApiMetrics

log = structlog.get_logger("mesh_node.api")


@lru_cache(maxsize=4096)
def _child(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once: prometheus_client's labels() takes a lock
    and validates the values on every call (5 calls a request, ~2 % of a hop's CPU in the
    profile). Children are never removed here, so a cached one stays the live one; model and
    node ids come from the route table and statuses are HTTP codes, so the set is small."""
    return metric.labels(*values)


@dataclass
class ApiState:
    """Live numbers of one app; the node gossips `inflight_total` as its `Load.inflight`."""

    inflight: Counter[str] = field(default_factory=Counter)  # by model id
    outbound: Counter[str] = field(default_factory=Counter)  # open upstream requests by node id
    finished: Counter[tuple[str, str]] = field(default_factory=Counter)  # (model, status class)
    demand: DemandBook = field(default_factory=DemandBook)  # client requests entering here
    # set when the mesh should hear this node's demand at once (node/assembly.py publishes it)
    demand_news: trio.Event = field(default_factory=trio.Event)

    def demand_begin(self, model: str, keep: int | None) -> None:
        if self.demand.begin(model, keep, trio.current_time()):
            self.demand_news.set()

    def demand_end(self, model: str) -> None:
        if self.demand.end(model, trio.current_time()):
            self.demand_news.set()

    def open_outbound(self, node_id: str) -> None:
        self.outbound[node_id] += 1

    def close_outbound(self, node_id: str) -> None:
        """One upstream request to `node_id` ended; its entry goes at zero, so the map holds
        only nodes with open requests (node ids come off the wire)."""
        left = self.outbound[node_id] - 1
        if left > 0:
            self.outbound[node_id] = left
        else:
            del self.outbound[node_id]

    @property
    def inflight_total(self) -> int:
        return sum(self.inflight.values())

    def summary(self) -> dict[str, object]:
        """The "api" section added to /api/status."""
        per_model: dict[str, dict[str, int]] = {}
        for (model, klass), n in self.finished.items():
            per_model.setdefault(model, {"ok": 0, "error": 0})[klass] = n
        return {"inflight": dict(+self.inflight), "inflight_total": self.inflight_total,
                "requests": per_model}


class Tracker:
    """Accounts one proxied request from resolution to its last byte."""

    def __init__(self, state: ApiState, metrics: ApiMetrics, events: EventHub, model: str,
                 this_node: str, *, entry: bool = False, keep: int | None = None) -> None:
        """`entry`: a client request entering the mesh here (counted as this node's demand,
        with `keep`, its keep-alive); False for a request another node forwarded."""
        self._state, self._metrics, self._events = state, metrics, events
        self.model = model
        self.node = this_node
        self._start = trio.current_time()
        self._done = False
        self._entry = entry
        if entry:
            state.demand_begin(model, keep)
        state.inflight[model] += 1
        _child(metrics.inflight, model).inc()

    def first_byte(self) -> None:
        _child(self._metrics.ttft_seconds, self.model, self.node).observe(
            trio.current_time() - self._start)

    def retried(self) -> None:
        _child(self._metrics.retries, self.model).inc()

    def finish(self, status: int) -> None:
        """Record the outcome once; later calls are ignored."""
        if self._done:
            return
        self._done = True
        if self._entry:
            self._state.demand_end(self.model)
        elapsed = trio.current_time() - self._start
        self._state.inflight[self.model] -= 1
        if self._state.inflight[self.model] <= 0:  # only models with open requests stay
            del self._state.inflight[self.model]
        _child(self._metrics.inflight, self.model).dec()
        _child(self._metrics.requests, self.model, self.node, str(status)).inc()
        _child(self._metrics.request_seconds, self.model, self.node).observe(elapsed)
        log.info("request_done", model=self.model, node=self.node, status=status,
                 seconds=round(elapsed, 4))
        klass = "ok" if status < 400 else "error"
        self._state.finished[(self.model, klass)] += 1
        self._events.publish("request", {"model": self.model, "node": self.node,
                                         "status": status, "seconds": round(elapsed, 4)})
