"""Prometheus metrics of one API app, in a registry of its own (tests and nodes never collide)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Latency buckets (s): a LAN hop is sub-millisecond, a CPU generation takes up to minutes.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_NAME = re.compile(r"[^a-zA-Z0-9_]")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StatusCollector(Collector):
    """Members by state and gossip counters, read from the status document at scrape time."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Any]:
        doc = self._status()
        members = GaugeMetricFamily("mesh_members", "Members by SWIM state", labels=["state"])
        counts: dict[str, int] = {s: 0 for s in ("alive", "suspect", "dead", "left")}
        for m in doc.get("members", []):
            counts[str(m.get("status", "unknown"))] = counts.get(str(m.get("status")), 0) + 1
        for state, n in sorted(counts.items()):
            members.add_metric([state], n)
        yield members
        for key, value in sorted(doc.get("counters", {}).items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                name = "mesh_" + _NAME.sub("_", key).removesuffix("_total")
                yield CounterMetricFamily(name, f"Node counter {key}", value=value)


class ApiMetrics:
    """Request counters and histograms of one app."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mesh_requests", "API requests by model, serving node, status",
                                ["model", "node", "status"], registry=r)
        self.request_seconds = Histogram("mesh_request_seconds", "Request duration",
                                         ["model", "node"], buckets=_REQUEST_BUCKETS, registry=r)
        self.ttft_seconds = Histogram("mesh_ttft_seconds", "Time to first upstream byte",
                                      ["model", "node"], buckets=_TTFT_BUCKETS, registry=r)
        self.inflight = Gauge("mesh_inflight", "Requests in flight at this node", ["model"],
                              registry=r)
        self.mesh_auth_failures = Counter("mesh_forward_auth_failures",
                                          "Forwarded requests rejected by node-to-node auth",
                                          registry=r)
        self.replay_cache_full = Counter("mesh_forward_replay_cache_full",
                                         "Signed forwards refused (503): replay cache at its cap",
                                         registry=r)
        self.retries = Counter("mesh_route_retries", "Upstream attempts that failed over",
                               ["model"], registry=r)
        r.register(StatusCollector(status))

    def render(self) -> bytes:
        return generate_latest(self.registry)
