"""Pure builders of the /api/status document and /v1/models entries from the gossip view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mesh_node.records import MemberView, ModelPlacement, NodeState, Placement

NO_SECRET_WARNING = ("no mesh secret: any host on this LAN can join the mesh and send requests "
                     "to its nodes; set [mesh] secret to authenticate")


def member_entry(m: MemberView) -> dict[str, Any]:
    """One member as the status document shows it."""
    s = m.state
    return {
        "id": m.node_id, "name": s.name if s else "", "status": m.status,
        "incarnation": m.incarnation, "address": m.address, "rtt_ms": m.rtt_ms,
        "capabilities": [{"name": c.name, "version": c.version, "splittable": c.splittable,
                          "available": c.available, "reason": c.reason}
                         for c in (s.capabilities if s else ())],
        "memory_offered": s.memory_offered if s else 0,
        "memory_free": s.memory_free if s else 0,
        "serving": [{"model": v.model, "role": v.role, "backend": v.backend, "ready": v.ready,
                     "state": v.state} for v in (s.serving if s else ())],
        "inflight": m.load.inflight,
    }


def catalog_entries(members: Sequence[MemberView]) -> list[dict[str, Any]]:
    """Union of the members' catalogs, one entry per model id, with the nodes that have it."""
    merged: dict[str, dict[str, Any]] = {}
    for m in members:
        for e in (m.state.catalog if m.state else ()):
            entry = merged.setdefault(e.id, {
                "id": e.id, "key": e.key, "backend": e.backend, "format": e.format,
                "size_bytes": e.size_bytes, "memory_bytes": e.memory_bytes, "aliases": [],
                "nodes": []})
            entry["aliases"] = sorted(set(entry["aliases"]) | set(e.aliases))
            entry["nodes"] = sorted({*entry["nodes"], m.node_id})
    return [merged[k] for k in sorted(merged)]


def _ready_hosts(p: ModelPlacement, members: Mapping[str, MemberView]) -> list[str]:
    """Hosts of p that are usable now (records.MemberView.serves: the one rule)."""
    return [h for h in p.hosts if h in members and members[h].serves(p.model)]


def model_status(p: ModelPlacement | None, ready: bool) -> str:
    """loaded (a host is ready) | loading (placed, or a request waits for memory) | available
    (loads on request) | unservable (fits nowhere, or nothing can run it) | unplanned."""
    if ready:
        return "loaded"
    if p is None:
        return "unplanned"
    if p.mode == "unservable":
        return "unservable"
    if p.mode in ("solo", "split") or p.waiting:
        return "loading"
    return "available"


def placement_entries(placement: Placement, members: Sequence[MemberView]) -> list[dict[str, Any]]:
    """The placement with names, reasons and readiness (ready: some host says so in gossip)."""
    states = {m.node_id: m.state for m in members if m.state is not None}
    names = {k: s.name for k, s in states.items()}
    by_id = {m.node_id: m for m in members}
    return [{
        "model": p.model, "mode": p.mode, "backend": p.backend,
        "hosts": [{"id": h, "name": names.get(h, "")} for h in p.hosts],
        "workers": [{"id": w.node_id, "name": names.get(w.node_id, ""), "weight": w.weight}
                    for w in p.workers],
        "reason": p.reason, "served_as": p.served_as, "ready": bool(_ready_hosts(p, by_id)),
        "status": model_status(p, bool(_ready_hosts(p, by_id))),
    } for p in sorted(placement.models, key=lambda x: x.model)]


def model_entries(placement: Placement, members: Sequence[MemberView]) -> list[dict[str, Any]]:
    """/v1/models entries (id, aliases, key, backend, mode, hosts, ready) for the whole mesh."""
    plans = {p.model: p for p in placement.models}
    by_id = {m.node_id: m for m in members}
    out = []
    for e in catalog_entries(members):
        p = plans.get(e["id"])
        out.append({"id": e["id"], "aliases": e["aliases"], "key": e["key"],
                    "backend": p.backend if p else e["backend"],
                    "mode": p.mode if p else "unplanned",
                    "hosts": list(p.hosts) if p else [],
                    "ready": bool(p and _ready_hosts(p, by_id)),
                    "status": model_status(p, bool(p and _ready_hosts(p, by_id)))})
    return out


def build_status(*, me: NodeState, uptime_s: float, mesh_name: str, authenticated: bool,
                 members: Sequence[MemberView], placement: Placement,
                 counters: Mapping[str, int | float]) -> dict[str, Any]:
    """The /api/status document."""
    return {
        "node": {"id": me.node_id, "name": me.name, "version": me.version,
                 "uptime_s": round(uptime_s, 1), "address": me.address,
                 "api_port": me.api_port, "gossip_port": me.gossip_port},
        "mesh": {"name": mesh_name, "authenticated": authenticated,
                 "warning": None if authenticated else NO_SECRET_WARNING},
        "members": [member_entry(m) for m in sorted(members, key=lambda m: m.node_id)],
        "catalog": catalog_entries(members),
        "placement": placement_entries(placement, members),
        "counters": dict(counters),
    }
