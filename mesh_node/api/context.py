"""The interface the node gives the API room: model lookup, routes, readiness and events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from mesh_node.security import MeshKeys
from mesh_node.status.events import EventHub


class Route(NamedTuple):
    """One candidate upstream for a model."""

    node_id: str
    url: str  # base URL: local backend http://127.0.0.1:P, or peer http://addr:api_port
    local: bool
    rewrite_model: str | None = None  # MLX folder path to put in the upstream "model"


class MeshContext(Protocol):
    """What the API needs from the running node; the node implements it over gossip + election."""

    node_id: str
    node_name: str
    keys: MeshKeys
    api_key: str | None
    max_body_bytes: int
    events: EventHub

    def models(self) -> list[dict[str, Any]]:
        """/v1/models entries: id, aliases, backend, mode, hosts, ready, key."""
        ...

    def resolve(self, name: str) -> str | None:
        """Id, alias or comparison key -> model id, None when unknown."""
        ...

    def routes(self, model_id: str) -> list[Route]:
        """Ready hosts of the model, local first when this node hosts it."""
        ...

    def model_state(self, model_id: str) -> tuple[str, str]:
        """(status, reason): loaded | loading | available | unservable | unplanned, and the
        planner's reason (status.view.model_status)."""
        ...

    def inflight(self) -> Mapping[str, int]:
        """In-flight requests per node id, as gossip last reported them."""
        ...

    def status(self) -> dict[str, Any]:
        """The /api/status document (built with mesh_node.status.view)."""
        ...

    def host_alive(self, node_id: str) -> bool:
        """False once gossip has declared the node dead or gone; also while it is suspect and
        a ready host that is not suspect can serve its models instead."""
        ...

    def report_unreachable(self, node_id: str, refused: bool) -> None:
        """This node's own connection to a peer failed: refused (nothing listens at its API
        port) or broken mid-exchange. Local evidence for gossip (it speeds detection up)."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for /readyz: ready once gossip runs and the first plan exists."""
        ...

    async def wait_for_change(self, timeout: float) -> None:  # noqa: ASYNC109 (spec: a bounded wait)
        """Return when placement or readiness changes, or after `timeout` seconds."""
        ...
