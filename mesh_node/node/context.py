"""`NodeContext`: the node's implementation of the API's `MeshContext`, over gossip + election."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from mesh_node.api.context import Route
from mesh_node.api.resolve import resolve_name, routes_for
from mesh_node.catalog.entry import CatalogEntry
from mesh_node.config.model import Config
from mesh_node.records import MemberView, NodeState, Placement
from mesh_node.security import MeshKeys
from mesh_node.status.events import EventHub
from mesh_node.status.view import build_status


class NodeContext:
    """Reads the live view; every method is cheap and non-blocking."""

    def __init__(self, *, config: Config, node_id: str, keys: MeshKeys, events: EventHub,
                 members: Callable[[], list[MemberView]], placement: Callable[[], Placement],
                 local_backends: Callable[[], Mapping[str, tuple[int, str | None]]],
                 catalog: list[CatalogEntry], counters: Callable[[], dict[str, int]],
                 planned: Callable[[], bool], address: str, me: Callable[[], NodeState],
                 started_at: float) -> None:
        self.node_id = node_id
        self.node_name = config.node.name
        self.keys = keys
        self.api_key = config.api.api_key
        self.max_body_bytes = config.api.max_body_bytes
        self.events = events
        self.config = config
        self.address = address
        self._members = members
        self._placement = placement
        self._local_backends = local_backends
        self._catalog = catalog
        self._counters = counters
        self._planned = planned
        self._me = me
        self._started = started_at
        self._changed = trio.Event()

    # --- change notification -------------------------------------------------------------
    def notify_change(self) -> None:
        """Wake every `wait_for_change` waiter (placement or readiness changed)."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_change(self, timeout: float) -> None:  # noqa: ASYNC109
        with trio.move_on_after(timeout):
            await self._changed.wait()

    # --- models and routes ---------------------------------------------------------------
    def _states(self) -> list[NodeState]:
        return [m.state for m in self._members() if m.status == "alive" and m.state is not None]

    def _entries(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for st in sorted(self._states(), key=lambda s: s.node_id):
            for ms in st.catalog:
                e = seen.setdefault(ms.id, {"id": ms.id, "aliases": [], "key": ms.key,
                                            "backend": ms.backend, "format": ms.format})
                e["aliases"] = sorted(set(e["aliases"]) | set(ms.aliases))
        return [seen[k] for k in sorted(seen)]

    def models(self) -> list[dict[str, Any]]:
        placement = self._placement()
        names = {m.node_id: (m.state.name if m.state else m.node_id) for m in self._members()}
        out = []
        for e in self._entries():
            mp = placement.for_model(e["id"])
            routes = self.routes(e["id"])
            out.append({**e, "mode": mp.mode if mp else "unplanned",
                        "hosts": [names.get(h, h) for h in (mp.hosts if mp else ())],
                        "served_as": mp.served_as if mp else None,
                        "ready": bool(routes)})
        return out

    def resolve(self, name: str) -> str | None:
        return resolve_name(name, self._entries())

    def routes(self, model_id: str) -> list[Route]:
        placement = self._placement()
        mp = placement.for_model(model_id)
        if mp is not None and mp.served_as:
            model_id = mp.served_as  # an MLX model served through its llama export
        return routes_for(model_id, placement, self._members(), self.node_id,
                          self._local_backends())

    def host_alive(self, node_id: str) -> bool:
        return any(m.node_id == node_id and m.status in ("alive", "suspect")
                   for m in self._members())

    def inflight(self) -> Mapping[str, int]:
        return {st.node_id: st.inflight for st in self._states()}

    def readiness(self) -> tuple[bool, str]:
        if not self._planned():
            return False, "no placement yet"
        return True, "ok"

    # --- status --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        doc = build_status(
            me=self._me(), uptime_s=time.monotonic() - self._started,
            mesh_name=self.config.mesh.name, authenticated=self.keys.authenticated,
            members=self._members(), placement=self._placement(), counters=self._counters())
        doc["local_catalog"] = [
            {"id": e.id, "path": str(e.path), "backend": e.backend, "format": e.format,
             "size_bytes": e.size_bytes, "memory_bytes": e.memory_bytes,
             "quantization": e.quantization, "key": e.key, "error": e.error}
            for e in self._catalog]
        return doc
