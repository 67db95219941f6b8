"""Pure helpers the node can use to implement MeshContext: names -> model ids, placement -> routes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mesh_node.api.context import Route
from mesh_node.records import MemberView, Placement


def resolve_name(name: str, entries: Iterable[Mapping[str, Any]]) -> str | None:
    """Model id for `name`: exact id, then alias, then comparison key, then case-insensitive id."""
    listed = list(entries)
    for field in ("id", "aliases", "key"):
        for e in listed:
            value = e.get(field)
            if value == name or (isinstance(value, list | tuple) and name in value):
                return str(e["id"])
    folded = name.casefold()
    return next((str(e["id"]) for e in listed if str(e["id"]).casefold() == folded), None)


def routes_for(model_id: str, placement: Placement, members: Sequence[MemberView], self_id: str,
               local_backends: Mapping[str, tuple[int, str | None]]) -> list[Route]:
    """Ready hosts of `model_id` as routes, local first.

    `local_backends` maps a model id this node hosts to (backend port, MLX rewrite path or None).
    A peer counts only when it is usable (`MemberView.serves`: live, and its gossiped Serving
    says host+ready): routing trusts readiness, not the plan alone.
    """
    mp = placement.for_model(model_id)
    if mp is None:
        return []
    by_id = {m.node_id: m for m in members}
    routes: list[Route] = []
    for host in mp.hosts:
        if host == self_id:
            if model_id in local_backends:
                port, rewrite = local_backends[model_id]
                routes.append(Route(host, f"http://127.0.0.1:{port}", True, rewrite))
            continue
        m = by_id.get(host)
        if m is not None and m.state is not None and m.serves(model_id):  # the one rule
            routes.append(Route(host, f"http://{m.state.address}:{m.state.api_port}", False))
    return sorted(routes, key=lambda r: not r.local)
