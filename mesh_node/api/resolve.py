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


def standby_routes(model_id: str, members: Sequence[MemberView], self_id: str,
                   local_backends: Mapping[str, tuple[int, str | None]]) -> list[Route]:
    """Every member that is alive (not suspect) and serves `model_id` (ready), placed or not:
    while a placed host is suspect, a standby that already loaded the model (issue 16)."""
    out: list[Route] = []
    for m in members:
        if m.node_id == self_id:
            if model_id in local_backends:
                port, rewrite = local_backends[model_id]
                out.append(Route(m.node_id, f"http://127.0.0.1:{port}", True, rewrite))
        elif m.status == "alive" and m.state is not None and m.serves(model_id):
            out.append(Route(m.node_id, f"http://{m.state.address}:{m.state.api_port}", False))
    return out


def routes_around_suspects(model_id: str, placement: Placement, members: Sequence[MemberView],
                           self_id: str, local: Mapping[str, tuple[int, str | None]]
                           ) -> list[Route]:
    """`routes_for`, and while a placed host is suspect: ready standbys too, and every host
    that is not suspect first (a vanished host only times out)."""
    routes = routes_for(model_id, placement, members, self_id, local)
    mp = placement.for_model(model_id)
    suspect = {m.node_id for m in members if m.status == "suspect"}
    hosts = set(mp.hosts) if mp is not None else set()
    if not hosts & suspect:
        return routes
    extra = [r for r in standby_routes(model_id, members, self_id, local)
             if r.node_id not in hosts]
    return sorted(routes + extra, key=lambda r: (r.node_id in suspect, not r.local))


def host_worth_waiting_for(node_id: str, members: Sequence[MemberView],
                           placement: Placement) -> bool:
    """False once gossip declared the node dead or gone, or while it is suspect and every
    model placed on it has a ready host that is alive: a request waiting on it moves there."""
    m = next((m for m in members if m.node_id == node_id), None)
    if m is None or not m.live:
        return False
    if m.status != "suspect":
        return True
    models = [mp.model for mp in placement.models if node_id in mp.hosts]
    return not models or not all(
        any(o.node_id != node_id and o.status == "alive" and o.serves(model) for o in members)
        for model in models)




class RouteTable:
    """Everything a request reads about the mesh, computed once per view/placement change.

    Profiling a hop showed each request rebuilding the member list three times (name
    resolution, routes, in-flight counts) and a fourth per watched peer; the node now builds
    this table when the first request after a change needs it (`NodeContext.notify_change`
    drops it) and every request until the next change only reads it. Pure: same inputs,
    same table.
    """

    def __init__(self, placement: Placement, members: Sequence[MemberView], self_id: str,
                 local_backends: Mapping[str, tuple[int, str | None]],
                 entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.live = frozenset(m.node_id for m in members if m.live)
        self._placement, self._members, self._self = placement, list(members), self_id
        self._local = dict(local_backends)
        self._routes: dict[str, tuple[Route, ...]] = {}
        self._names: dict[str, str | None] = {}
        self._worth: dict[str, bool] = {}

    def resolve(self, name: str) -> str | None:
        if name not in self._names:
            if len(self._names) >= 1024:  # names come from clients: bounded
                self._names.clear()
            self._names[name] = resolve_name(name, self.entries)
        return self._names[name]

    def routes(self, model_id: str) -> list[Route]:
        """Ready hosts of `model_id`, local first (an MLX model served through its llama
        export routes to the export's hosts)."""
        found = self._routes.get(model_id)
        if found is None:
            mp = self._placement.for_model(model_id)
            served = mp.served_as if mp is not None and mp.served_as else model_id
            found = tuple(routes_around_suspects(served, self._placement, self._members,
                                                 self._self, self._local))
            self._routes[model_id] = found
        return list(found)

    def worth_waiting_for(self, node_id: str) -> bool:
        """A request on `node_id` keeps waiting (host_worth_waiting_for, once per change)."""
        found = self._worth.get(node_id)
        if found is None:
            found = self._worth[node_id] = host_worth_waiting_for(node_id, self._members,
                                                                  self._placement)
        return found
