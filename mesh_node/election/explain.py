"""Explain a placement: wire form for gossip/status, JSON for humans, a terminal table, and
planning from a snapshot file (`mesh-node plan --snapshot FILE`). Pure apart from reading a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mesh_node.election.planner import plan
from mesh_node.election.rules import fmt_bytes, host_share
from mesh_node.election.snapshot import (
    DEFAULT_HEADROOM,
    DEFAULT_MAX_RTT_MS,
    Snapshot,
    snapshot_from_states,
)
from mesh_node.records import ModelPlacement, NodeState, Placement, WorkerAssignment

_MODES = ("solo", "split", "unservable")


def placement_to_wire(placement: Placement) -> list[dict[str, Any]]:
    """Compact msgpack/JSON-able form (short keys, like records.py) for gossip and status."""
    return [{"m": p.model, "md": p.mode, "b": p.backend, "h": list(p.hosts),
             "w": [[w.node_id, w.address, w.rpc_port, w.weight] for w in p.workers],
             "r": p.reason, "sa": p.served_as, "mb": p.memory_bytes} for p in placement.models]


def placement_from_wire(items: Sequence[Mapping[str, Any]]) -> Placement:
    """Inverse of placement_to_wire; unknown keys are ignored, an unknown mode is unservable."""
    out = []
    for d in items:
        mode = d.get("md")
        out.append(ModelPlacement(
            model=str(d["m"]), mode=mode if mode in _MODES else "unservable",
            backend=str(d.get("b", "")), hosts=tuple(str(h) for h in d.get("h", ())),
            workers=tuple(WorkerAssignment(str(w[0]), str(w[1]), int(w[2]), float(w[3]))
                          for w in d.get("w", ())),
            reason=str(d.get("r", "")),
            served_as=None if d.get("sa") is None else str(d["sa"]),
            memory_bytes=int(d.get("mb", 0))))
    return Placement(tuple(out))


def placement_to_json(placement: Placement, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Readable JSON (node names beside ids) for /api/status and `mesh-node plan --json`."""
    def node(nid: str) -> dict[str, str]:
        return {"id": nid, "name": names.get(nid, nid)}

    return [{
        "model": p.model, "mode": p.mode, "backend": p.backend,
        "hosts": [node(h) for h in p.hosts],
        "workers": [{**node(w.node_id), "address": w.address, "rpc_port": w.rpc_port,
                     "weight": w.weight} for w in p.workers],
        "host_weight": host_share([w.weight for w in p.workers]) if p.mode == "split" else None,
        "reason": p.reason, "served_as": p.served_as, "memory_bytes": p.memory_bytes,
    } for p in placement.models]


def _placement_from_json(items: Sequence[Mapping[str, Any]]) -> Placement:
    wire = [{"m": d["model"], "md": d.get("mode"), "b": d.get("backend", ""),
             "h": [h["id"] for h in d.get("hosts", ())],
             "w": [[w["id"], w["address"], w["rpc_port"], w["weight"]] for w in d.get("workers", ())],
             "r": d.get("reason", ""), "sa": d.get("served_as"), "mb": d.get("memory_bytes", 0)}
            for d in items]
    return placement_from_wire(wire)


def _row(p: ModelPlacement, names: Mapping[str, str]) -> list[str]:
    hosts = ", ".join(names.get(h, h) for h in p.hosts) or "-"
    workers = ", ".join(f"{names.get(w.node_id, w.node_id)}:{w.rpc_port} {100 * w.weight:.0f}%"
                        for w in p.workers) or "-"
    mode = p.mode if p.served_as is None else f"{p.mode} as {p.served_as}"
    return [p.model, mode, p.backend or "-", hosts, workers, fmt_bytes(p.memory_bytes)]


def render_placement(placement: Placement, names: Mapping[str, str]) -> str:
    """A terminal table, one model per row, each followed by its reason."""
    header = ["MODEL", "MODE", "BACKEND", "HOSTS", "WORKERS", "MEMORY"]
    rows = [_row(p, names) for p in placement.models]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    for p, r in zip(placement.models, rows, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        lines.append(f"  why: {p.reason}")
    if not rows:
        lines.append("(no models wanted: no live node offers any)")
    return "\n".join(lines) + "\n"


def load_snapshot_file(path: Path) -> tuple[Snapshot, dict[str, str]]:
    """Read a snapshot file: a list of NodeState wire dicts, or {"nodes": [...], "previous":
    placement (wire or JSON form), "rtt_ms": {id: ms}, "headroom": x, "max_rtt_ms": y}.
    Raises OSError, or ValueError when the content is not such a snapshot."""
    data = json.loads(path.read_text())
    try:
        return _snapshot_of(data)
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"not a mesh snapshot ({type(e).__name__}: {e})") from e


def _snapshot_of(data: Any) -> tuple[Snapshot, dict[str, str]]:
    doc: dict[str, Any] = {"nodes": data} if isinstance(data, list) else dict(data)
    states = [NodeState.from_wire(d) for d in doc.get("nodes", ())]
    prev_items = doc.get("previous")
    previous = None
    if prev_items:
        is_json = "model" in prev_items[0]
        previous = _placement_from_json(prev_items) if is_json else placement_from_wire(prev_items)
    rtt = {str(k): float(v) for k, v in (doc.get("rtt_ms") or {}).items()}
    snap = snapshot_from_states(states, rtt, previous,
                                float(doc.get("headroom", DEFAULT_HEADROOM)),
                                float(doc.get("max_rtt_ms", DEFAULT_MAX_RTT_MS)))
    return snap, {s.node_id: s.name or s.node_id for s in states}


def plan_from_file(path: Path) -> dict[str, Any]:
    """Plan a snapshot file and return the placement JSON (what `mesh-node plan` prints)."""
    snap, names = load_snapshot_file(path)
    placement = plan(snap)
    members = [{"id": nid, "name": name} for nid, name in sorted(names.items())]
    return {"placement": placement_to_json(placement, names), "nodes": names,
            "members": members, "headroom": snap.headroom, "max_rtt_ms": snap.max_rtt_ms}
