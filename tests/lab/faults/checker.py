"""The pure checker of fault histories: records in, `Check`s (pass/fail + figures) out.

No clock, no I/O: every function reads the list `history.read_history` returns (or one built
by hand in a unit test). Rules:
- a member shown `dead` (status sample or `member_dead` log) is a *false death* unless a
  `fault` names it among its `victims` and the time falls between that fault and its
  `fault_end` (plus a short grace for gossip to spread the recovery);
- convergence is the first sample, per observer, whose alive set is exactly the expected one;
  its figure is the slowest observer's delay after the reference time;
- a placement change seen by an observer must follow a membership change seen by that same
  observer within `window` seconds (membership log event or a change between its samples).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Record = Mapping[str, Any]
MEMBERSHIP_EVENTS = frozenset({"member_joined", "member_alive", "member_suspected",
                               "member_dead", "member_left", "member_reclaimed"})


@dataclass(frozen=True)
class Check:
    """One property of a history: whether it holds, why not, and what was measured."""

    name: str
    ok: bool
    detail: str = ""
    figures: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """All checks of one scenario."""

    scenario: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def figures(self) -> dict[str, float]:
        """Every figure, keyed `check.figure`."""
        return {f"{c.name}.{k}": v for c in self.checks for k, v in c.figures.items()}

    def summary(self) -> str:
        lines = [f"{self.scenario}: {'PASS' if self.ok else 'FAIL'}"]
        for c in self.checks:
            figs = ", ".join(f"{k}={v:g}" for k, v in c.figures.items())
            lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}"
                         f"{' (' + figs + ')' if figs else ''}{': ' + c.detail if c.detail else ''}")
        return "\n".join(lines)


# --- reading ---------------------------------------------------------------------------------
def of_kind(hist: Iterable[Record], kind: str) -> list[Record]:
    return [r for r in hist if r["kind"] == kind]


def samples(hist: Iterable[Record]) -> list[Record]:
    """Successful status samples, in time order."""
    return [r for r in of_kind(hist, "sample") if "members" in r]


def node_ids(hist: Iterable[Record]) -> dict[str, str]:
    """label -> node id, from `node` records."""
    return {str(r["label"]): str(r["id"]) for r in of_kind(hist, "node")}


def alive_set(sample: Record) -> frozenset[str]:
    return frozenset(k for k, v in sample["members"].items() if v[0] == "alive")


def first_fault(hist: Iterable[Record], name: str) -> Record:
    found = [r for r in of_kind(hist, "fault") if r["name"] == name]
    if not found:
        raise KeyError(f"no fault named {name!r} in the history")
    return found[0]


EXPLAIN_GRACE_S = 10.0  # a view may show a victim dead this long after its fault_end


def _fault_window(hist: Sequence[Record], fault: Record) -> tuple[float, float]:
    """[start, end] during which `fault` explains its victims' deaths."""
    ends = [float(r["t"]) for r in hist if r["kind"] == "fault_end"
            and r["name"] == fault["name"] and r["t"] >= fault["t"]]
    return float(fault["t"]), (min(ends) + EXPLAIN_GRACE_S if ends else math.inf)


def _explained_dead(hist: Sequence[Record], peer: str, t: float) -> bool:
    for r in hist:
        if r["kind"] == "fault" and peer in r.get("victims", ()):
            start, end = _fault_window(hist, r)
            if start <= t <= end:
                return True
    return False


# --- checks ----------------------------------------------------------------------------------
def check_no_false_death(hist: Sequence[Record], name: str = "no_false_death") -> Check:
    """Nobody is seen dead unless a fault explains it; counts suspicions as a figure."""
    bad: list[str] = []
    for r in hist:
        if r["kind"] == "sample" and "members" in r:
            bad += [f"{r['observer'][:8]} saw {m[:8]} dead at {r['t']:.1f}"
                    for m, v in r["members"].items()
                    if v[0] == "dead" and not _explained_dead(hist, m, r["t"])]
        elif r["kind"] == "log" and r["event"] == "member_dead" and not _explained_dead(
                hist, str(r.get("peer")), r["t"]):
            bad.append(f"{r['node'][:8]} logged {str(r.get('peer'))[:8]} dead at {r['t']:.1f}")
    susp = sum(1 for r in of_kind(hist, "log") if r["event"] == "member_suspected")
    refuted = sum(1 for r in of_kind(hist, "log") if r["event"] == "member_refuted")
    return Check(name, not bad, "; ".join(bad[:5]),
                 {"false_deaths": len(bad), "suspicions": susp, "refutations": refuted})


def converged_at(hist: Sequence[Record], expect: Iterable[str], after: float,
                 observers: Iterable[str] | None = None) -> dict[str, float | None]:
    """observer -> time of its first sample at/after `after` with exactly `expect` alive."""
    want = frozenset(expect)
    obs = set(want if observers is None else observers)
    out: dict[str, float | None] = dict.fromkeys(sorted(obs))
    for r in samples(hist):
        o = r["observer"]
        if o in obs and out[o] is None and r["t"] >= after and alive_set(r) == want:
            out[o] = float(r["t"])
    return out


def check_converged(hist: Sequence[Record], expect: Iterable[str], after: float,
                    within: float, name: str = "converged",
                    observers: Iterable[str] | None = None) -> Check:
    """Every observer sees exactly `expect` alive within `within` s of `after`."""
    want = frozenset(expect)
    at = converged_at(hist, want, after, observers)
    late = {o[:8]: t for o, t in at.items() if t is None or t - after > within}
    took = max((t - after for t in at.values() if t is not None), default=math.nan)
    ok = not late and bool(at)
    return Check(name, ok, f"not converged on {len(want)} alive: {sorted(late)}" if late else "",
                 {"seconds": round(took, 2), "members": len(want)})


def detection_times(hist: Sequence[Record], fault: Record, status: str = "dead"
                    ) -> dict[str, float | None]:
    """observer -> seconds from `fault` until it first saw a victim as `status` (log or sample)."""
    event = {"dead": "member_dead", "left": "member_left", "suspect": "member_suspected"}[status]
    # `watch` names whom to watch when they are no victims (a graceful leave explains no death)
    victims, t0 = set(fault.get("watch") or fault["victims"]), float(fault["t"])
    # observers: everyone sampled since the fault but its targets (a partition has none: each
    # side observes the other's victims); a node gone before the fault cannot
    observers = {r["observer"] for r in samples(hist) if r["t"] >= t0} - set(fault["targets"])
    out: dict[str, float | None] = dict.fromkeys(sorted(observers))
    for r in hist:
        if r["t"] < t0:
            continue
        if r["kind"] == "log" and r["event"] == event and r.get("peer") in victims:
            o = r["node"]
        elif r["kind"] == "sample" and "members" in r and any(
                r["members"].get(v, ["?"])[0] == status for v in victims - {r["observer"]}):
            o = r["observer"]
        else:
            continue
        if o in out and out[o] is None:
            out[o] = round(float(r["t"]) - t0, 3)
    return out


def check_detected(hist: Sequence[Record], fault_name: str, within: float,
                   status: str = "dead", name: str | None = None) -> Check:
    """Every observer saw the fault's victims as `status` within `within` s; min/max figures."""
    times = detection_times(hist, first_fault(hist, fault_name), status)
    got = [t for t in times.values() if t is not None]
    missing = [o[:8] for o, t in times.items() if t is None or t > within]
    return Check(name or f"{fault_name}_detected", bool(times) and not missing,
                 f"not seen {status} by {missing} within {within}s" if missing else "",
                 {"min_s": min(got, default=math.nan), "max_s": max(got, default=math.nan),
                  "observers": len(times)})


def check_never_status(hist: Sequence[Record], node: str, status: str, start: float,
                       end: float, name: str) -> Check:
    """No observer shows `node` as `status` in [start, end] (samples and logs)."""
    event = {"dead": "member_dead", "suspect": "member_suspected", "left": "member_left"}[status]
    seen = [r for r in hist if start <= r["t"] <= end and (
        (r["kind"] == "sample" and r.get("members", {}).get(node, ["?"])[0] == status)
        or (r["kind"] == "log" and r["event"] == event and r.get("peer") == node))]
    return Check(name, not seen, f"{len(seen)} records show {node[:8]} {status}" if seen else "",
                 {"records": len(seen)})


def incarnations(hist: Sequence[Record], node: str, start: float, end: float) -> list[int]:
    """Incarnations of `node` shown by other observers in [start, end]."""
    return [int(r["members"][node][1]) for r in samples(hist)
            if start <= r["t"] <= end and node in r["members"] and r["observer"] != node]


def check_incarnation_raised(hist: Sequence[Record], node: str, pivot: float,
                             name: str = "incarnation_raised") -> Check:
    """After `pivot`, `node` is alive everywhere at an incarnation above any shown before."""
    before = incarnations(hist, node, -math.inf, pivot)
    after = [int(r["members"][node][1]) for r in samples(hist)
             if r["t"] > pivot and r["observer"] != node
             and r["members"].get(node, ["?"])[0] == "alive"]
    ok = bool(before) and bool(after) and max(after) > max(before)
    return Check(name, ok, "" if ok else f"before={sorted(set(before))} after={sorted(set(after))}",
                 {"before": max(before, default=-1), "after": max(after, default=-1)})


def check_never_twice(hist: Sequence[Record], name: str = "never_twice") -> Check:
    """No view lists one node twice: live members' names are unique in every sample."""
    bad = []
    for r in samples(hist):
        names = [v[2] for v in r["members"].values() if v[0] in ("alive", "suspect") and v[2]]
        if len(names) != len(set(names)):
            bad.append(f"{r['observer'][:8]} at {r['t']:.1f}: {sorted(names)}")
    dups = sum(1 for r in of_kind(hist, "log") if r["event"] == "duplicate_node_id")
    return Check(name, not bad and not dups, "; ".join(bad[:3]) + (f" dup logs={dups}" * bool(dups)),
                 {"samples": len(samples(hist))})


def check_one_view(hist: Sequence[Record], expect: Iterable[str], after: float, within: float,
                   name: str = "one_view") -> Check:
    """Within `within` s of `after`, every node of `expect` holds one view: exactly them alive."""
    want = frozenset(expect)
    latest: dict[str, Record] = {}
    for r in samples(hist):
        if r["t"] < after or r["observer"] not in want:
            continue
        latest[r["observer"]] = r
        if set(latest) == want and all(
                {k for k, v in s["members"].items() if v[0] != "left"} == want
                and alive_set(s) == want for s in latest.values()):
            return Check(name, r["t"] - after <= within, "",
                         {"seconds": round(r["t"] - after, 2), "members": len(want)})
    return Check(name, False, f"no single view of {len(want)} after {after:.1f}",
                 {"seconds": math.nan})


def _plan_key(sample: Record) -> dict[str, tuple[Any, ...]]:
    return {m: (p[0], tuple(p[1]), tuple(p[2])) for m, p in sample.get("placement", {}).items()}


def _membership_key(sample: Record) -> frozenset[tuple[str, str]]:
    return frozenset((k, v[0]) for k, v in sample["members"].items())


def placement_changes(hist: Sequence[Record]) -> list[tuple[str, float, float]]:
    """(observer, previous sample time, change time) for each placement change between samples."""
    prev: dict[str, Record] = {}
    out = []
    for r in samples(hist):
        o = r["observer"]
        if o in prev and _plan_key(prev[o]) != _plan_key(r):
            out.append((o, float(prev[o]["t"]), float(r["t"])))
        prev[o] = r
    return out


def membership_change_times(hist: Sequence[Record], observer: str) -> list[float]:
    """When `observer` saw membership change: its log events and diffs between its samples."""
    times = [float(r["t"]) for r in of_kind(hist, "log")
             if r["node"] == observer and r["event"] in MEMBERSHIP_EVENTS]
    prev: Record | None = None
    for r in samples(hist):
        if r["observer"] != observer:
            continue
        if prev is not None and _membership_key(prev) != _membership_key(r):
            times.append(float(r["t"]))
        prev = r
    return sorted(times)


def check_placement_explained(hist: Sequence[Record], window: float,
                              name: str = "placement_explained") -> Check:
    """Every placement change follows a membership change at the same observer within `window`."""
    changes = placement_changes(hist)
    bad = []
    for o, t_prev, t in changes:
        seen = membership_change_times(hist, o)
        if not any(t_prev - window <= m <= t for m in seen):
            bad.append(f"{o[:8]} at {t:.1f}")
    return Check(name, not bad, "unexplained: " + ", ".join(bad[:5]) if bad else "",
                 {"placement_changes": len(changes), "unexplained": len(bad),
                  "membership_changes": sum(len(membership_change_times(hist, o))
                                            for o in {r["observer"] for r in samples(hist)})})


def verdict(scenario: str, checks: Iterable[Check]) -> Verdict:
    return Verdict(scenario, tuple(checks))
