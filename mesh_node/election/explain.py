"""Explain a placement: JSON for humans and status, a terminal table, and
planning from a snapshot file (`mesh-node plan --snapshot FILE`). Pure apart from reading a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack

from mesh_node.election.planner import plan
from mesh_node.election.rules import fmt_bytes, host_share
from mesh_node.election.snapshot import Snapshot, snapshot_from_states
from mesh_node.records import ModelPlacement, Placement
from mesh_node.records_wire import RecordError, decode_state


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
    """Read a snapshot file: a list of NodeState wire dicts, or {"nodes": [...]}. Each record
    goes through the same validating decoder as gossip; the previous placement is rebuilt from
    the records' serving entries, as on a live node. Raises OSError, or ValueError when the
    content is not such a snapshot (naming the record and the field)."""
    data = json.loads(path.read_text())
    doc: dict[str, Any] = {"nodes": data} if isinstance(data, list) else dict(data)
    nodes = doc.get("nodes", ())
    if not isinstance(nodes, list):
        raise ValueError("not a mesh snapshot: 'nodes' must be a list of node records")
    states = []
    for i, d in enumerate(nodes):
        try:
            states.append(decode_state(msgpack.packb(d, use_bin_type=True)))
        except (RecordError, TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"not a mesh snapshot: node record {i}: {e}") from e
    snap = snapshot_from_states(states)
    return snap, {s.node_id: s.name or s.node_id for s in states}


def plan_from_file(path: Path) -> dict[str, Any]:
    """Plan a snapshot file and return the placement JSON (what `mesh-node plan` prints)."""
    snap, names = load_snapshot_file(path)
    placement = plan(snap)
    members = [{"id": nid, "name": name} for nid, name in sorted(names.items())]
    return {"placement": placement_to_json(placement, names), "nodes": names,
            "members": members, "headroom": snap.headroom}
