"""FakeMeshContext: a MeshContext over plain data, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from mesh_node.api.context import Route
from mesh_node.api.resolve import resolve_name
from mesh_node.security import MeshKeys, derive_keys
from mesh_node.status.events import EventHub


@dataclass
class FakeModel:
    id: str
    aliases: tuple[str, ...] = ()
    key: str = ""
    backend: str = "llama"
    mode: str = "solo"  # "unservable": fails at once; "loading"/"available": load_timeout
    routes: list[Route] = field(default_factory=list)
    reason: str = ""

    def entry(self) -> dict[str, Any]:
        return {"id": self.id, "aliases": list(self.aliases), "key": self.key or self.id,
                "backend": self.backend, "mode": self.mode,
                "hosts": [r.node_id for r in self.routes], "ready": bool(self.routes)}


class FakeMeshContext:
    """Mutable fake: tests edit `models`, `inflight_by_node`, `status_doc`, then call `changed()`."""

    def __init__(self, models: list[FakeModel] | None = None, *, node_id: str = "node-a",
                 node_name: str = "alpha", api_key: str | None = None,
                 max_body_bytes: int = 1 << 20, secret: str | None = "test-secret",
                 mesh_name: str = "test-mesh") -> None:
        self.node_id = node_id
        self.node_name = node_name
        self.keys: MeshKeys = derive_keys(secret, mesh_name)
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.events = EventHub()
        self.fake_models: list[FakeModel] = list(models or [])
        self.inflight_by_node: dict[str, int] = {}
        self.status_doc: dict[str, Any] = {"node": {"id": node_id, "name": node_name},
                                           "members": [], "placement": [], "counters": {}}
        self.ready: tuple[bool, str] = (True, "gossip running, placement known")
        self.waits = 0
        self.dead: set[str] = set()
        self.unreachable: list[tuple[str, bool]] = []  # report_unreachable calls, in order
        self._changed = trio.Event()

    def models(self) -> list[dict[str, Any]]:
        return [m.entry() for m in self.fake_models]

    def resolve(self, name: str) -> str | None:
        return resolve_name(name, self.models())

    def routes(self, model_id: str) -> list[Route]:
        return next((list(m.routes) for m in self.fake_models if m.id == model_id), [])

    def model_state(self, model_id: str) -> tuple[str, str]:
        m = next((m for m in self.fake_models if m.id == model_id), None)
        if m is None:
            return "unplanned", ""
        if m.routes:
            return "loaded", m.reason
        return ("loaded" if m.mode in ("solo", "split") else m.mode), m.reason

    def inflight(self) -> Mapping[str, int]:
        return self.inflight_by_node

    def status(self) -> dict[str, Any]:
        return self.status_doc

    def readiness(self) -> tuple[bool, str]:
        return self.ready

    def host_alive(self, node_id: str) -> bool:
        return node_id not in self.dead

    def report_unreachable(self, node_id: str, refused: bool) -> None:
        self.unreachable.append((node_id, refused))

    def declare_dead(self, node_id: str) -> None:
        """Gossip in miniature: the node is dead; wake waiters."""
        self.dead.add(node_id)
        self.changed()

    def set_routes(self, model_id: str, routes: list[Route]) -> None:
        """Replace a model's routes and wake waiters (a re-election in miniature)."""
        next(m for m in self.fake_models if m.id == model_id).routes = list(routes)
        self.changed()

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_change(self, timeout: float) -> None:  # noqa: ASYNC109 (the protocol's)
        self.waits += 1
        with trio.move_on_after(timeout):
            await self._changed.wait()
