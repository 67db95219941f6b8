"""Reading a lab mesh: membership out of /api/status documents, gossip events out of JSON logs.

Pure helpers shared by tests/lab/test_gossip_lab.py and benchmarks/lab_gossip.py. Log events
carry wall-clock timestamps, so a detection time is measured where it happened (in the
observing node), not at the next poll of its status.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

Status = Mapping[str, Any]


def own_id(status: Status) -> str:
    """The id of the node that served this status document."""
    return str(status["node"]["id"])


def member_states(status: Status) -> dict[str, str]:
    """node id -> SWIM status ("alive", "suspect", "dead", "left") in this view."""
    return {str(m["id"]): str(m["status"]) for m in status.get("members", [])}


def alive_ids(status: Status) -> set[str]:
    """Ids this view holds alive."""
    return {k for k, v in member_states(status).items() if v == "alive"}


def sees_alive_with_record(status: Status, ids: Iterable[str]) -> bool:
    """Every id in `ids` is alive here and its state record arrived (it has a name)."""
    by_id = {str(m["id"]): m for m in status.get("members", [])}
    return all(i in by_id and by_id[i]["status"] == "alive" and by_id[i]["name"] for i in ids)


def counter(status: Status, key: str) -> int:
    """A counter of /api/status (`counters` section); 0 when absent."""
    return int(status.get("counters", {}).get(key, 0))


def log_events(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of a node (anything else, e.g. a traceback, is skipped)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
    return out


def event_time(ev: Mapping[str, Any]) -> float:
    """Epoch seconds of a log event (structlog's ISO UTC `timestamp`)."""
    return datetime.fromisoformat(str(ev["timestamp"]).replace("Z", "+00:00")).timestamp()


def first_event_at(text: str, event: str, peer: str | None = None,
                   after: float = 0.0) -> float | None:
    """Epoch time of the first `event` (about `peer`, if given) logged at or after `after`."""
    for ev in log_events(text):
        if ev.get("event") == event and (peer is None or ev.get("peer") == peer):
            t = event_time(ev)
            if t >= after:
                return t
    return None


def count_events(text: str, events: Iterable[str], after: float = 0.0) -> dict[str, int]:
    """How many of each event were logged at or after `after`."""
    wanted = set(events)
    counts = dict.fromkeys(sorted(wanted), 0)
    for ev in log_events(text):
        name = ev.get("event")
        if name in wanted and "timestamp" in ev and event_time(ev) >= after:
            counts[str(name)] += 1
    return counts
