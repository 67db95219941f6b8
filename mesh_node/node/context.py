"""`NodeContext`: the node's implementation of the API's `MeshContext`, over gossip + election."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from mesh_node import __version__
from mesh_node.api.context import Route
from mesh_node.api.resolve import resolve_name, routes_for
from mesh_node.catalog.entry import CatalogEntry
from mesh_node.config.model import Config
from mesh_node.records import MemberView, NodeState, Placement
from mesh_node.security import MeshKeys
from mesh_node.status.events import EventHub


class NodeContext:
    """Reads the live view; every method is cheap and non-blocking."""

    def __init__(self, *, config: Config, node_id: str, keys: MeshKeys, events: EventHub,
                 members: Callable[[], list[MemberView]], placement: Callable[[], Placement],
                 local_backends: Callable[[], Mapping[str, tuple[int, str | None]]],
                 catalog: list[CatalogEntry], counters: Callable[[], dict[str, int]],
                 planned: Callable[[], bool], address: str) -> None:
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
        self._started = time.monotonic()
        self._changed = trio.Event()

    # --- change notification -------------------------------------------------------------
    def notify_change(self) -> None:
        """Wake every `wait_for_change` waiter (placement or readiness changed)."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_change(self, timeout: float) -> None:
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

    def inflight(self) -> Mapping[str, int]:
        return {st.node_id: st.inflight for st in self._states()}

    def readiness(self) -> tuple[bool, str]:
        if not self._planned():
            return False, "no placement yet"
        return True, "ok"

    # --- status --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        from mesh_node.status.view import build_status

        return build_status(
            node={"id": self.node_id, "name": self.node_name, "version": __version__,
                  "uptime_s": round(time.monotonic() - self._started, 1),
                  "address": self.address, "api_port": self.config.api.port,
                  "gossip_port": self.config.mesh.gossip_port},
            mesh={"name": self.config.mesh.name, "authenticated": self.keys.authenticated,
                  "warning": None if self.keys.authenticated else
                  "no mesh secret: any machine on this LAN can join (set [mesh] secret)"},
            members=self._members(), placement=self._placement(), catalog=self._catalog,
            counters=self._counters(),
        )
