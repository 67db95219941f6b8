"""The pure fault-history checker (tests/lab/faults/checker.py) on hand-built histories, and
the history writer/reader round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.lab.faults import checker as ck
from tests.lab.faults import reqcheck as rq
from tests.lab.faults.history import History, compact_status, parse_log_events, read_history

A, B, C = "aaaa", "bbbb", "cccc"


def fc_sample(t: float, observer: str, members: dict[str, tuple[str, int]],
              placement: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    return {"t": t, "kind": "sample", "observer": observer,
            "members": {k: [s, inc, k.upper()] for k, (s, inc) in members.items()},
            "placement": placement or {}}


def fc_all_alive(t: float, ids: tuple[str, ...] = (A, B, C)) -> list[dict[str, Any]]:
    return [fc_sample(t, o, {i: ("alive", 0) for i in ids}) for o in ids]


def fc_fault(t: float, name: str, targets: list[str], victims: list[str]) -> dict[str, Any]:
    return {"t": t, "kind": "fault", "name": name, "targets": targets, "victims": victims}


def test_fc_dead_without_a_fault_is_a_false_death() -> None:
    hist = [*fc_all_alive(0.0), fc_sample(1.0, A, {A: ("alive", 0), B: ("dead", 0)})]
    c = ck.check_no_false_death(hist)
    assert not c.ok and c.figures["false_deaths"] == 1 and "dead" in c.detail


def test_fc_dead_victim_is_explained_until_shortly_after_fault_end() -> None:
    hist = [*fc_all_alive(0.0), fc_fault(1.0, "kill", [B], [B]),
            fc_sample(5.0, A, {A: ("alive", 0), B: ("dead", 0)}),
            {"t": 6.0, "kind": "log", "node": C, "event": "member_dead", "peer": B},
            {"t": 20.0, "kind": "fault_end", "name": "kill"},
            fc_sample(25.0, A, {A: ("alive", 0), B: ("dead", 0)})]  # within the grace
    assert ck.check_no_false_death(hist).ok
    late = [*hist, fc_sample(20.0 + ck.EXPLAIN_GRACE_S + 1, A, {B: ("dead", 0)})]
    assert not ck.check_no_false_death(late).ok
    other = [*hist, {"t": 7.0, "kind": "log", "node": B, "event": "member_dead", "peer": C}]
    assert ck.check_no_false_death(other).figures["false_deaths"] == 1  # C was no victim


def test_fc_suspicions_and_refutations_are_counted() -> None:
    hist = [{"t": 1.0, "kind": "log", "node": A, "event": "member_suspected", "peer": B},
            {"t": 2.0, "kind": "log", "node": B, "event": "member_refuted"}]
    c = ck.check_no_false_death(hist)
    assert c.ok and c.figures["suspicions"] == 1 and c.figures["refutations"] == 1


def test_fc_converged_takes_the_slowest_observer() -> None:
    hist = [fc_sample(1.0, A, {A: ("alive", 0)}), fc_sample(2.0, A, {A: ("alive", 0), B: ("alive", 0)}),
            fc_sample(4.5, B, {A: ("alive", 0), B: ("alive", 0)})]
    c = ck.check_converged(hist, {A, B}, 0.5, within=10.0)
    assert c.ok and c.figures["seconds"] == 4.0
    assert not ck.check_converged(hist, {A, B}, 0.5, within=3.0).ok
    assert not ck.check_converged(hist, {A, B, C}, 0.5, within=10.0).ok  # C never seen


def test_fc_an_extra_alive_member_is_no_convergence() -> None:
    hist = [fc_sample(1.0, A, {A: ("alive", 0), B: ("alive", 0)})]
    assert not ck.check_converged(hist, {A}, 0.0, 10.0, observers=[A]).ok


def test_fc_detection_prefers_the_earliest_of_log_and_sample() -> None:
    hist = [*fc_all_alive(0.0), fc_fault(10.0, "kill", [C], [C]),
            {"t": 16.0, "kind": "log", "node": A, "event": "member_dead", "peer": C},
            fc_sample(17.0, A, {C: ("dead", 0)}), fc_sample(18.0, B, {C: ("dead", 0)})]
    times = ck.detection_times(hist, ck.first_fault(hist, "kill"))
    assert times == {A: 6.0, B: 8.0}  # C is the target; a node only sampled before is none
    gone = [fc_sample(-5.0, "dddd", {}), *hist]
    assert ck.detection_times(gone, ck.first_fault(gone, "kill")) == times
    assert ck.check_detected(hist, "kill", within=10.0).figures["max_s"] == 8.0
    assert not ck.check_detected(hist, "kill", within=7.0).ok


def test_fc_partition_sides_observe_each_other() -> None:
    hist = [*fc_all_alive(0.0), fc_fault(1.0, "partition", [], [A, B, C]),
            fc_sample(3.0, A, {A: ("alive", 0), B: ("alive", 0), C: ("dead", 0)}),
            fc_sample(3.0, B, {A: ("alive", 0), B: ("alive", 0), C: ("dead", 0)}),
            fc_sample(3.0, C, {A: ("alive", 0), B: ("alive", 0), C: ("alive", 0)})]
    times = ck.detection_times(hist, ck.first_fault(hist, "partition"))
    assert times == {A: 2.0, B: 2.0, C: None}  # C never saw A or B dead


def test_fc_unknown_fault_name_raises() -> None:
    with pytest.raises(KeyError):
        ck.first_fault([], "nope")


def test_fc_incarnation_must_rise_after_the_pivot() -> None:
    hist = [fc_sample(1.0, A, {B: ("alive", 0)}), fc_sample(2.0, A, {B: ("dead", 0)}),
            fc_sample(9.0, A, {B: ("alive", 1)})]
    assert ck.check_incarnation_raised(hist, B, pivot=5.0).ok
    same = [*hist[:2], fc_sample(9.0, A, {B: ("alive", 0)})]
    assert not ck.check_incarnation_raised(same, B, pivot=5.0).ok


def test_fc_a_node_listed_twice_fails() -> None:
    s = fc_sample(1.0, A, {A: ("alive", 0), B: ("alive", 0)})
    s["members"]["other-id"] = ["alive", 0, "BBBB"]  # a second id under B's name
    assert not ck.check_never_twice([s]).ok
    assert ck.check_never_twice(fc_all_alive(1.0)).ok
    dup = [*fc_all_alive(1.0), {"t": 2.0, "kind": "log", "node": A, "event": "duplicate_node_id"}]
    assert not ck.check_never_twice(dup).ok


def test_fc_never_status_in_window() -> None:
    hist = [fc_sample(5.0, A, {B: ("dead", 0)})]
    assert not ck.check_never_status(hist, B, "dead", 0.0, 10.0, "x").ok
    assert ck.check_never_status(hist, B, "dead", 6.0, 10.0, "x").ok


def test_fc_placement_change_needs_a_membership_change() -> None:
    p1 = {"m": ["solo", [A], [], True]}
    p2 = {"m": ["solo", [B], [], True]}
    alive = {A: ("alive", 0), B: ("alive", 0)}
    quiet = [fc_sample(1.0, C, alive, p1), fc_sample(2.0, C, alive, p2)]
    c = ck.check_placement_explained(quiet, window=5.0)
    assert not c.ok and c.figures["unexplained"] == 1
    by_sample = [fc_sample(1.0, C, alive, p1),
                 fc_sample(2.0, C, {A: ("dead", 0), B: ("alive", 0)}, p2)]
    assert ck.check_placement_explained(by_sample, window=5.0).ok
    by_log = [*quiet, {"t": 0.5, "kind": "log", "node": C, "event": "member_alive", "peer": A}]
    assert ck.check_placement_explained(by_log, window=5.0).ok
    elsewhere = [*quiet, {"t": 0.5, "kind": "log", "node": A, "event": "member_dead", "peer": B}]
    assert not ck.check_placement_explained(elsewhere, window=5.0).ok  # another observer's
    ready_only = [fc_sample(1.0, C, alive, p1), fc_sample(2.0, C, alive, {"m": ["solo", [A], [], False]})]
    assert ck.check_placement_explained(ready_only, window=5.0).figures["placement_changes"] == 0


def test_fc_one_view_after_heal() -> None:
    split = [fc_sample(1.0, A, {A: ("alive", 0), B: ("dead", 0)}),
             fc_sample(1.0, B, {A: ("dead", 0), B: ("alive", 0)})]
    healed = [fc_sample(8.0, A, {A: ("alive", 0), B: ("alive", 0)}),
              fc_sample(9.0, B, {A: ("alive", 0), B: ("alive", 0)})]
    c = ck.check_one_view([*split, *healed], {A, B}, after=1.0, within=20.0)
    assert c.ok and c.figures["seconds"] == 8.0
    assert not ck.check_one_view(split, {A, B}, after=0.0, within=20.0).ok
    assert not ck.check_one_view([*split, *healed], {A, B}, after=1.0, within=5.0).ok
    # each side agreeing with itself is no single view: the other side must be in it
    sides = [fc_sample(2.0, A, {A: ("alive", 0)}), fc_sample(2.0, B, {B: ("alive", 0)})]
    assert not ck.check_one_view(sides, {A, B}, after=0.0, within=20.0).ok


def test_fc_request_figures_and_percentiles() -> None:
    reqs = [{"t": float(i), "kind": "request", "via": "h1", "start": float(i), "end": i + 0.1 * i,
             "status": 200, "error": "", "tokens": 4, "ttft": 0.05} for i in range(1, 11)]
    reqs.append({"t": 30.0, "kind": "request", "via": "h1", "start": 29.0, "end": 30.0,
                 "status": 503, "error": "no_ready_host", "tokens": 0, "ttft": None})
    figs = rq.request_figures(reqs)
    assert figs["requests"] == 11 and figs["errors"] == 1
    assert figs["p50_ms"] == pytest.approx(550.0) and figs["max_ms"] == pytest.approx(1000.0)
    assert figs["req_per_s"] == pytest.approx(10 / 29.0, rel=1e-2)
    assert not rq.check_requests(reqs).ok and rq.check_requests(reqs, max_errors=1).ok
    assert rq.service_gap(reqs, 0.0) == pytest.approx(1.1)
    assert math.isnan(rq.percentile([], 50)) and rq.percentile([3.0], 99) == 3.0


def test_fc_verdict_collects_figures_and_failures() -> None:
    v = ck.verdict("s", [ck.Check("a", True, "", {"x": 1.0}), ck.Check("b", False, "why")])
    assert not v.ok and [c.name for c in v.failures] == ["b"]
    assert v.figures() == {"a.x": 1.0}
    assert "FAIL" in v.summary() and "why" in v.summary()


def test_fc_history_round_trip(tmp_path: Path) -> None:
    status = {"node": {"id": A}, "members": [
        {"id": A, "status": "alive", "incarnation": 2, "name": "h1"},
        {"id": B, "status": "suspect", "incarnation": 0, "name": "h2"}],
        "placement": [{"model": "m", "mode": "split", "hosts": [{"id": A}],
                       "workers": [{"id": C}, {"id": B}], "ready": True}]}
    assert compact_status(status)["placement"] == {"m": ["split", [A], [B, C], True]}
    h = History(tmp_path / "h.jsonl")
    h.node("h1", A)
    h.sample(status, "h1")
    h.sample(None, "h2", "refused")
    t = h.fault("kill", [B], [B])
    log = "\n".join([json.dumps({"event": "member_dead", "peer": B, "incarnation": 0,
                                 "timestamp": "2030-01-01T00:00:00Z"}),
                     "Traceback (most recent call last):",
                     json.dumps({"event": "request_done", "timestamp": "2030-01-01T00:00:01Z"})])
    assert h.logs(A, log) == 1
    h.close()
    recs = read_history(tmp_path / "h.jsonl")
    assert [r["kind"] for r in recs] == ["node", "sample", "sample", "fault", "log"]
    assert recs[1]["members"][B] == ["suspect", 0, "h2"] and recs[2]["error"] == "refused"
    assert recs[3]["t"] == t and ck.node_ids(recs) == {"h1": A}
    assert parse_log_events(A, log)[0]["t"] == pytest.approx(1893456000.0)
