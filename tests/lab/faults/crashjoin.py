"""The control-loop scenario of issue 11: kill -9 of a model's host, a new node joins in the
same minute; the model must end up served from one host (the other holder) whose backend is
started once and never restarted.

Why the join matters: a push-pull "dead" is believed as "suspect", so a newcomer learns the
crashed host as a live suspect from the tombstones of the others, and nodes that reclaimed
the tombstone (`dead_reclaim`, 30 s) can take it back from the newcomer. The watch therefore
lasts past the reclaim on every node plus two push-pull rounds (15 s each).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from election_configs import elab_chat, elab_placement

from . import checker as ck
from . import hostcheck as hc
from .drive import FAULT_START_S, FaultMesh, alive_exactly, status_of
from .scenarios import FAULT_CONVERGE_S, FAULT_DETECT_S, _hist, _ids

CRASHJOIN_SERVE_S = 120.0  # crash -> the survivor's llama-server ready (detection + load)


def served_by(model: str, host: str) -> Callable[[dict[str, Any]], bool]:
    """Status predicate: the placement of `model` names exactly `[host]`, ready."""
    def check(st: dict[str, Any]) -> bool:
        p = elab_placement(st, model)
        return bool(p and [h["id"] for h in p["hosts"]] == [host] and p["ready"])
    return check


def current_host(mesh: FaultMesh, model: str) -> str:
    """The one ready host of `model` as a live node shows it."""
    for k in sorted(mesh.live()):
        st = mesh.status(k)
        p = elab_placement(st, model) if st else None
        if p and p["ready"] and len(p["hosts"]) == 1:
            return str(p["hosts"][0]["id"])
    raise AssertionError(f"no live node shows one ready host of {model}")


def crash_host_and_join(mesh: FaultMesh, model: str, holders: list[int], joiner: int,
                        join_after: float, watch: float) -> list[ck.Check]:
    """Crash the host of `model` (one of `holders`); once the others see it dead, start
    `joiner` (`join_after` s after the crash at the earliest, so its push-pull meets their
    tombstones); watch the mesh until `watch` s after the crash."""
    victim = current_host(mesh, model)
    by_id = {v: k for k, v in mesh.ids.items()}
    k_victim = by_id[victim]
    assert k_victim in holders, f"host {victim[:8]} is no holder"
    k_surv = next(k for k in holders if k != k_victim)
    survivor = mesh.ids[k_surv]
    mesh.crash(k_victim)
    t0 = mesh.history.fault("kill9_host", [victim], [victim])
    mesh.wait_all(status_of(victim, "dead"), FAULT_DETECT_S + 10, what="crashed host dead")
    time.sleep(max(0.0, t0 + join_after - time.time()))  # the scripted join time, not a sync
    t_join = mesh.history.mark("join_start", label=f"h{joiner}")
    mesh.start(joiner)
    mesh.wait_up(joiner)
    live = sorted(mesh.live())
    mesh.wait_all(alive_exactly(_ids(mesh, live)), FAULT_CONVERGE_S, what="joined view")
    mesh.wait_all(served_by(model, survivor), CRASHJOIN_SERVE_S, what="survivor serving")
    time.sleep(max(0.0, t0 + watch - time.time()))  # the watch window of the scenario
    not_served = [f"h{k}" for k in live if not ((st := mesh.status(k)) and served_by(model, survivor)(st))]
    via = mesh.nodes[joiner]
    res = elab_chat(via.ns, via.base_url, model, max_tokens=4, timeout=60.0)
    hist = _hist(mesh)
    observers = [mesh.ids[k] for k in live]
    others = {mesh.ids[k]: 0 for k in live if k != k_surv}
    before_join = [r for r in hist if r["t"] < t_join]  # the joiner never knew the host alive
    return [
        ck.check_detected(before_join, "kill9_host", FAULT_DETECT_S),
        ck.check_converged(hist, _ids(mesh, live), t_join, FAULT_START_S + FAULT_CONVERGE_S,
                           "join_converged_from_process_start"),
        hc.check_one_host(hist, model, survivor, t0, observers),
        hc.check_dead_host_never_named(hist, model, victim),
        hc.check_backend_starts(hist, model, t0, {survivor: 1, **others}),
        ck.Check("served_by_survivor_at_end", not not_served,
                 f"not shown ready on {survivor[:8]} by {not_served}" if not_served else ""),
        ck.Check("completion_via_joiner", res.status == 200,
                 "" if res.status == 200 else f"{res.status} {(res.error or res.body)[:120]}",
                 {"watch_s": watch, "join_after_s": join_after}),
        ck.check_no_false_death(hist), ck.check_never_twice(hist),
    ]
