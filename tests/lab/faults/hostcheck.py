"""Host figures of a fault history (pure): who each observer names as a model's host, and how
often each node started or stopped a backend. Split from checker.py to keep modules small.

Rules:
- once an observer names exactly `[host]` for the model (after `after`), every later sample
  of that observer names exactly `[host]`: one host, no flapping back to anyone else;
- a crashed host is never named again by an observer once that observer saw it dead (plus the
  election's re-plan delay); an observer that never saw it dead (a newcomer that learned it
  from others) counts from the first death declaration in the mesh;
- backend starts/stops per node are counted from the nodes' own `backend_starting` /
  `backend_stopping` log events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .checker import Check, Record, of_kind, samples


def hosts_named(sample: Record, model: str) -> list[str] | None:
    """The hosts a sample's placement names for `model`; None when it has no placement of it."""
    p = sample.get("placement", {}).get(model)
    return None if p is None else [str(h) for h in p[1]]


def check_one_host(hist: Sequence[Record], model: str, host: str, after: float,
                   observers: Sequence[str], name: str = "one_host") -> Check:
    """Each observer comes to name exactly `[host]` after `after` and never names another."""
    first: dict[str, float] = {}
    bad: list[str] = []
    for r in samples(hist):
        o, t = str(r["observer"]), float(r["t"])
        if o not in observers or t < after:
            continue
        named = hosts_named(r, model)
        if o not in first:
            if named == [host]:
                first[o] = t
            continue
        if named != [host]:
            bad.append(f"{o[:8]} named {[h[:8] for h in named or []]} at {t - after:.1f}s")
    missing = [o[:8] for o in observers if o not in first]
    detail = "; ".join(([f"never named {host[:8]}: {missing}"] if missing else []) + bad[:6])
    return Check(name, not missing and not bad, detail,
                 {"settled_s": round(max(first.values(), default=math.nan) - after, 2),
                  "observers": len(observers), "flaps": len(bad)})


def _first_seen_dead(hist: Sequence[Record], victim: str) -> dict[str, float]:
    """observer -> when it first showed `victim` dead (its member_dead log or a sample)."""
    out: dict[str, float] = {}
    for r in hist:
        if r["kind"] == "log" and r["event"] == "member_dead" and r.get("peer") == victim:
            o = str(r["node"])
        elif (r["kind"] == "sample" and "members" in r
              and r["members"].get(victim, ["?"])[0] == "dead"):
            o = str(r["observer"])
        else:
            continue
        out.setdefault(o, float(r["t"]))
    return out


REPLAN_GRACE_S = 1.0  # the election re-plans election_debounce (0.3 s) after a death


def check_dead_host_never_named(hist: Sequence[Record], model: str, victim: str,
                                grace: float = REPLAN_GRACE_S,
                                name: str = "dead_host_never_named") -> Check:
    """No observer names `victim` as host of `model` from `grace` s after it saw it dead (or,
    for an observer that never did, after the mesh first declared it dead)."""
    seen = _first_seen_dead(hist, victim)
    declared = min(seen.values(), default=math.inf)
    bad: list[str] = []
    for r in samples(hist):
        o, t = str(r["observer"]), float(r["t"])
        since = seen[o] + grace if o in seen else declared
        if o != victim and t >= since and victim in (hosts_named(r, model) or []):
            bad.append(f"{o[:8]} at {t - declared:.1f}s after the death")
    return Check(name, declared < math.inf and not bad,
                 "never declared dead" if declared == math.inf else "; ".join(bad[:6]),
                 {"samples_naming_it": len(bad)})


def backend_events(hist: Sequence[Record], model: str, after: float) -> dict[str, dict[str, int]]:
    """node -> {"starts": n, "stops": n} of `model`'s backend, from log events at/after `after`."""
    out: dict[str, dict[str, int]] = {}
    for r in of_kind(hist, "log"):
        if r.get("model") != model or float(r["t"]) < after:
            continue
        key = {"backend_starting": "starts", "backend_stopping": "stops"}.get(str(r["event"]))
        if key:
            counts = out.setdefault(str(r["node"]), {"starts": 0, "stops": 0})
            counts[key] += 1
    return out


def check_backend_starts(hist: Sequence[Record], model: str, after: float,
                         expect: Mapping[str, int], name: str = "backend_starts") -> Check:
    """Each node of `expect` started `model`'s backend exactly that often after `after`, and
    none stopped it."""
    got = backend_events(hist, model, after)
    bad = [f"{n[:8]}: {got.get(n, {}).get('starts', 0)} starts (want {want}), "
           f"{got.get(n, {}).get('stops', 0)} stops" for n, want in expect.items()
           if got.get(n, {}).get("starts", 0) != want or got.get(n, {}).get("stops", 0)]
    return Check(name, not bad, "; ".join(bad),
                 {"starts": sum(c["starts"] for c in got.values()),
                  "stops": sum(c["stops"] for c in got.values())})
