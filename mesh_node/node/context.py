"""`NodeContext`: the node's implementation of the API's `MeshContext`, over the mesh view, the
election and the local children; `Counters`: every room's protocol counters in one place."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from mesh_node.api.context import Route
from mesh_node.api.resolve import RouteTable
from mesh_node.catalog.entry import CatalogEntry
from mesh_node.config.model import Config
from mesh_node.discovery.mdns import MdnsDiscovery
from mesh_node.election.service import ElectionService
from mesh_node.gossip.shell import GossipService
from mesh_node.node.children import BackendChildren
from mesh_node.node.local import LocalState
from mesh_node.node.view import MeshView
from mesh_node.records import MemberView, NodeState, Placement
from mesh_node.security import MeshKeys
from mesh_node.status.events import EventHub
from mesh_node.status.view import build_status, model_status
from mesh_node.transfer.service import TransferService

# A route table is rebuilt at least this often even without a change notice: gossip's
# subscribers can lose notices when they fall behind (SUBSCRIBER_BUFFER), and this bounds
# what such a loss could cost; one rebuild a second is nothing next to one per request.
TABLE_MAX_AGE_S = 1.0


@dataclass
class Counters:
    """Protocol counters of every room, read at each status/metrics request. mDNS joins later
    (it starts after the API), so it is an attribute that starts empty, never a forward read."""

    gossip: GossipService
    view: MeshView
    mdns: MdnsDiscovery | None = None
    transfers: TransferService | None = None

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"gossip_{k}": v for k, v in self.gossip.stats.items()}
        out.update({f"gossip_{k}": v for k, v in self.gossip.counters.items()})
        out.update({f"records_dropped_{k}": v for k, v in self.view.dropped.items()})
        if self.mdns is not None:
            out.update({f"mdns_{k}": v for k, v in self.mdns.counters.as_dict().items()})
        if self.transfers is not None:
            out.update(self.transfers.counters)
        return out


class NodeContext:
    """Reads the live view; every method is cheap and non-blocking."""

    def __init__(self, *, config: Config, node_id: str, keys: MeshKeys, events: EventHub,
                 view: MeshView, election: ElectionService, children: BackendChildren,
                 local: LocalState, catalog: list[CatalogEntry], counters: Counters,
                 address: str, started_at: float,
                 transfers: TransferService | None = None,
                 report: Callable[[str, bool], None] = lambda node, refused: None) -> None:
        self.node_id = node_id
        self.node_name = config.node.name
        self.keys = keys
        self.api_key = config.api.api_key
        self.max_body_bytes = config.api.max_body_bytes
        self.events = events
        self.config = config
        self.address = address
        self._members = view.members
        self._election = election
        self._local_backends = children.local_backends
        self._catalog = catalog
        self._counters = counters
        self._local = local
        self._started = started_at
        self._report = report
        self._changed = trio.Event()
        self._transfers = transfers
        self._table: RouteTable | None = None  # dropped at every change: see notify_change
        self._table_at = 0.0
        self._inflight: dict[str, int] | None = None  # dropped at every load change

    def _placement(self) -> Placement:
        return self._election.placement

    def _planned(self) -> bool:
        return self._election.planned_once

    def _me(self) -> NodeState:
        return self._local.state

    # --- change notification -------------------------------------------------------------
    def notify_change(self) -> None:
        """Placement, membership, a member's record or a local child changed: drop the route
        table (the next request rebuilds it) and wake every `wait_for_change` waiter. The node
        calls this on every such change, so no request reads a table older than the change."""
        self._table = None
        self._inflight = None
        self._changed.set()
        self._changed = trio.Event()

    def notify_load(self) -> None:
        """A member's gossiped load changed: in-flight counts are re-read at the next request."""
        self._inflight = None

    async def wait_for_change(self, timeout: float) -> None:  # noqa: ASYNC109
        with trio.move_on_after(timeout):
            await self._changed.wait()

    def table(self) -> RouteTable:
        """The route table of the current view and placement (built on first use after a
        change: the one place the API's per-request mesh reads come from)."""
        now = trio.current_time()
        if self._table is None or now - self._table_at > TABLE_MAX_AGE_S:
            self._table_at = now
            members = self._members()
            self._table = RouteTable(self._placement(), members, self.node_id,
                                     self._local_backends(), self._entries(members))
        return self._table

    # --- models and routes ---------------------------------------------------------------
    def _entries(self, members: list[MemberView]) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        states = [m.state for m in members if m.live and m.state is not None]
        for st in sorted(states, key=lambda s: s.node_id):
            for ms in st.catalog:
                e = seen.setdefault(ms.id, {"id": ms.id, "aliases": [], "key": ms.key,
                                            "backend": ms.backend, "format": ms.format})
                e["aliases"] = sorted(set(e["aliases"]) | set(ms.aliases))
        return [seen[k] for k in sorted(seen)]

    def models(self) -> list[dict[str, Any]]:
        """Entries with `status` (loaded | loading | available | unservable), the planner's
        `reason`, and `expires_in` (seconds until it idles out; None: never)."""
        placement = self._placement()
        names = {m.node_id: (m.state.name if m.state else m.node_id) for m in self._members()}
        offered = {m.id: m for m in self._election.models}
        out = []
        for e in self.table().entries:
            mp = placement.for_model(e["id"])
            ready = bool(self.routes(e["id"]))  # through the table: built once
            wm = offered.get(e["id"])
            out.append({**e, "mode": mp.mode if mp else "unplanned",
                        "hosts": [names.get(h, h) for h in (mp.hosts if mp else ())],
                        "served_as": mp.served_as if mp else None,
                        "ready": ready, "status": model_status(mp, ready),
                        "reason": mp.reason if mp else "",
                        "expires_in": wm.expires_in if wm is not None else None})
        return out

    def model_state(self, model_id: str) -> tuple[str, str]:
        mp = self._placement().for_model(model_id)
        if not self._planned():
            return "unplanned", "no placement yet"
        return model_status(mp, bool(self.routes(model_id))), mp.reason if mp else ""

    def resolve(self, name: str) -> str | None:
        return self.table().resolve(name)

    def routes(self, model_id: str) -> list[Route]:
        return self.table().routes(model_id)

    def host_alive(self, node_id: str) -> bool:
        return self.table().worth_waiting_for(node_id)

    def report_unreachable(self, node_id: str, refused: bool) -> None:
        self._report(node_id, refused)

    def inflight(self) -> Mapping[str, int]:
        if self._inflight is None:
            self._inflight = {m.node_id: m.load.inflight for m in self._members() if m.live}
        return self._inflight

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
        for e, row in zip(self._catalog, doc["local_catalog"], strict=True):
            row["digest"], row["copied"] = e.digest, e.copied
        if self._transfers is not None:  # issue 14: fetches with progress, and planned moves
            doc["transfers"] = self._transfers.status()
            doc["moves"] = [{"model": mv.model, "target": mv.target, "sources": list(mv.sources),
                             "digest": mv.digest, "size": mv.size, "reason": mv.reason}
                            for mv in self._election.moves]
        return doc
