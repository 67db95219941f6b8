"""A JSON-lines history of one fault scenario: what was injected, what every node saw, what
clients got. Written while the scenario runs (thread-safe), read back by the pure checker.

Record kinds (every record has `t`, wall-clock epoch seconds, and `kind`):
- `node`: label -> node id (`label`, `id`);
- `fault`: an injected fault (`name`, `targets`, `victims`: ids whose death it explains);
- `fault_end`: the fault was lifted (`name`);
- `sample`: one /api/status read (`observer` id, `members` {id: [status, incarnation, name]},
  `placement` {model: [mode, hosts, sorted workers, ready]}), or `error` when unreachable;
- `request`: one client request (`via`, `start`, `end`, `status`, `error`, `tokens`);
- `log`: a node's own log event (`node`, `event`, `peer`, `incarnation`, plus placement keys),
  imported after the run so timings come from where they happened;
- `mark`: a phase boundary of the script (`name`).
Wall time is used because node logs carry wall-clock timestamps.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

# log events the checker reasons about (membership and placement)
HISTORY_LOG_EVENTS = frozenset({
    "member_joined", "member_alive", "member_suspected", "member_dead", "member_left",
    "member_refuted", "member_reclaimed", "member_leaving", "placement_changed",
    "duplicate_node_id", "node_starting", "node_ready", "rpc_worker_starting",
    "rpc_worker_stopping", "role_ended", "backend_ready", "backend_starting",
    "backend_stopping", "backend_start_refused",
})


def compact_status(status: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an /api/status document a history keeps (membership and placement)."""
    members = {str(m["id"]): [str(m["status"]), int(m["incarnation"]), str(m.get("name", ""))]
               for m in status.get("members", [])}
    placement = {str(p["model"]): [str(p["mode"]), [h["id"] for h in p.get("hosts", [])],
                                   sorted(w["id"] for w in p.get("workers", [])),
                                   bool(p.get("ready"))]
                 for p in status.get("placement", [])}
    return {"observer": str(status["node"]["id"]), "members": members, "placement": placement}


def parse_log_events(node_id: str, text: str,
                     wanted: Iterable[str] = HISTORY_LOG_EVENTS) -> list[dict[str, Any]]:
    """History `log` records from a node's JSON log (non-JSON lines, e.g. tracebacks, skipped)."""
    keep = set(wanted)
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if not isinstance(ev, dict) or ev.get("event") not in keep or "timestamp" not in ev:
            continue
        stamp = str(ev["timestamp"]).replace("Z", "+00:00")
        rec = {"t": datetime.fromisoformat(stamp).timestamp(), "kind": "log", "node": node_id,
               "event": ev["event"]}
        for key in ("peer", "incarnation", "model", "mode", "hosts", "workers", "claimed"):
            if key in ev:
                rec[key] = ev[key]
        out.append(rec)
    return out


class History:
    """Append-only JSON-lines writer; every method may be called from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = path.open("a", encoding="utf-8")

    def write(self, kind: str, t: float | None = None, **fields: Any) -> dict[str, Any]:
        """Append one record (now, unless `t` is given); the record written."""
        rec = {"t": time.time() if t is None else t, "kind": kind, **fields}
        line = json.dumps(rec, sort_keys=True)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
        return rec

    def node(self, label: str, node_id: str) -> None:
        self.write("node", label=label, id=node_id)

    def fault(self, name: str, targets: Iterable[str] = (), victims: Iterable[str] = (),
              **fields: Any) -> float:
        """Record an injected fault; its time (call it right after injecting)."""
        rec = self.write("fault", name=name, targets=sorted(targets), victims=sorted(victims),
                         **fields)
        return float(rec["t"])

    def fault_end(self, name: str) -> float:
        return float(self.write("fault_end", name=name)["t"])

    def mark(self, name: str, **fields: Any) -> float:
        return float(self.write("mark", name=name, **fields)["t"])

    def sample(self, status: Mapping[str, Any] | None, label: str = "",
               error: str = "") -> None:
        """One status read of node `label`: compacted, or the error when unreachable."""
        if status is None:
            self.write("sample", label=label, error=error or "unreachable")
        else:
            self.write("sample", label=label, **compact_status(status))

    def request(self, via: str, start: float, end: float, status: int, error: str = "",
                tokens: int = 0, ttft: float | None = None) -> None:
        self.write("request", t=end, via=via, start=start, end=end, status=status,
                   error=error[:200], tokens=tokens, ttft=ttft)

    def logs(self, node_id: str, text: str) -> int:
        """Import a node's membership/placement log events; how many."""
        recs = parse_log_events(node_id, text)
        for rec in recs:
            self.write(**rec)
        return len(recs)

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every record of a history file, sorted by time (stable for equal times)."""
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return sorted(recs, key=lambda r: float(r["t"]))
