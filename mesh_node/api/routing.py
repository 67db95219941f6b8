"""Pure routing choices: replica order by in-flight load, request ids."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence

from mesh_node.api.context import Route

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def order_routes(routes: Sequence[Route], gossip_inflight: Mapping[str, int],
                 outbound: Mapping[str, int]) -> list[Route]:
    """Least in-flight first; ties keep the node's order (local first).

    Gossip lags by a gossip round, so the requests this node itself has open to each target
    are a fresher lower bound: the load used is the larger of the two.
    """
    def load(r: Route) -> int:
        return max(gossip_inflight.get(r.node_id, 0), outbound.get(r.node_id, 0))
    return sorted(routes, key=lambda r: (load(r), not r.local))


def request_id(client_value: str | None) -> str:
    """The client's X-Request-Id when it is a sane token, else a fresh req_<hex>."""
    if client_value and _CLIENT_ID.match(client_value):
        return client_value
    return f"req_{secrets.token_hex(12)}"
