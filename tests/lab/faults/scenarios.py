"""The fault-matrix scenarios: each injects faults into a running `FaultMesh`, records them in
its history, waits (bounded) for the mesh to react, and returns the checker's `Check`s.

The checks are computed from the history file alone (`read_history`), so what a test asserts
is exactly what the JSON-lines record shows. Durations are parameters: the fast subset
(`make test`) passes short ones, `make lab` (MESH_NODE_LAB_FULL=1) long ones.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from election_configs import ElabNode, elab_toml

from . import checker as ck
from . import reqcheck as rq
from .drive import FAULT_START_S, FaultMesh, Requester, alive_exactly, status_of
from .history import read_history

FAULT_CONVERGE_S = 60.0  # APIs up to one agreed view, on 2 cores shared by every lab process
FAULT_DETECT_S = 20.0  # crash -> dead: probe + Lifeguard suspicion (min 4 x log10(5) s) + load
FAULT_HEAL_S = 90.0  # heal -> one view: push-pull every 15 s (+ jitter) to any dead/seed peer


def fault_tomls(lab_hosts: list[tuple[str, Path]], memory: int, demo_on: set[int]
                ) -> dict[int, str]:
    """Configs for hosts 1..N (address, data dir): static peers to all others, mDNS off."""
    addrs = [a for a, _ in lab_hosts]
    return {k: elab_toml(ElabNode(name=f"f{k}", address=a, data_dir=d,
                                  peers=[x for x in addrs if x != a], memory_bytes=memory,
                                  demo=k in demo_on))
            for k, (a, d) in enumerate(lab_hosts, start=1)}


def _hist(mesh: FaultMesh) -> list[dict[str, Any]]:
    mesh.import_logs()
    return read_history(mesh.history.path)


def _ids(mesh: FaultMesh, ks: list[int]) -> set[str]:
    return {mesh.ids[k] for k in ks}


def all_status(ids: set[str], status: str) -> Callable[[dict[str, Any]], bool]:
    """Status predicate: every id in `ids` shows `status`."""
    return lambda st: all(status_of(i, status)(st) for i in ids)


def cold_start(mesh: FaultMesh, ks: list[int]) -> list[ck.Check]:
    """Start `ks` together: every node sees exactly them alive."""
    t0 = mesh.history.mark("cold_start")
    mesh.start(*ks)
    mesh.wait_up(*ks)
    t_up = mesh.history.mark("apis_up")
    mesh.wait_all(alive_exactly(_ids(mesh, ks)), FAULT_CONVERGE_S, what="cold start")
    hist = _hist(mesh)
    # from the processes' start: APIs come up at different times, gossip joins them at once
    c = ck.check_converged(hist, _ids(mesh, ks), t0, FAULT_START_S + FAULT_CONVERGE_S,
                           "cold_start_converged")
    return [c, ck.Check("cold_start_apis_up", True, "", {"seconds": round(t_up - t0, 2)}),
            ck.check_never_twice(hist)]


def crash_member(mesh: FaultMesh, k: int, name: str = "kill9_member") -> list[ck.Check]:
    """kill -9 of node hk: every other node declares it dead."""
    victim = mesh.ids[k]
    mesh.crash(k)
    mesh.history.fault(name, [victim], [victim])
    mesh.wait_all(status_of(victim, "dead"), FAULT_DETECT_S + 10, what=f"{name} seen dead")
    hist = _hist(mesh)
    return [ck.check_detected(hist, name, FAULT_DETECT_S), ck.check_no_false_death(hist)]


def restart_same_id(mesh: FaultMesh, k: int, fault_name: str, expect: list[int]
                    ) -> list[ck.Check]:
    """Restart hk with its data_dir: same id, higher incarnation, never listed twice."""
    old = mesh.ids[k]
    pivot = mesh.history.mark("restart", label=f"h{k}")
    mesh.start(k)
    new = mesh.wait_up(k)[0]
    mesh.wait_all(alive_exactly(_ids(mesh, expect)), FAULT_CONVERGE_S, what="rejoin")
    mesh.history.fault_end(fault_name)
    hist = _hist(mesh)
    return [ck.Check("restart_same_id", new == old, f"{old} -> {new}"),
            ck.check_converged(hist, _ids(mesh, expect), pivot, FAULT_CONVERGE_S,
                               "restart_rejoined"),
            ck.check_incarnation_raised(hist, old, pivot), ck.check_never_twice(hist)]


def pause(mesh: FaultMesh, k: int, seconds: float, expect: list[int]) -> list[ck.Check]:
    """SIGSTOP hk for `seconds`: short -> never dead; long -> dead, then back, higher incarnation."""
    node, name = mesh.ids[k], f"sigstop_{seconds:g}s"
    long = seconds > 10
    mesh.pause(k)
    t0 = mesh.history.fault(name, [node], [node] if long else [])
    time.sleep(seconds)
    mesh.resume(k)
    if long:
        mesh.wait_all(alive_exactly(_ids(mesh, expect)), FAULT_CONVERGE_S, what="back alive")
        mesh.history.fault_end(name)
        hist = _hist(mesh)
        return [ck.check_detected(hist, name, seconds, name=f"{name}_declared_dead"),
                ck.check_incarnation_raised(hist, node, t0 + seconds, f"{name}_incarnation"),
                ck.check_never_twice(hist), ck.check_no_false_death(hist)]
    mesh.history.fault_end(name)
    time.sleep(8.0)  # a late death would come within a suspicion timeout of the resume
    hist = _hist(mesh)
    return [ck.check_never_status(hist, node, "dead", t0, time.time(), f"{name}_not_dead"),
            ck.check_no_false_death(hist)]


def leave(mesh: FaultMesh, k: int) -> list[ck.Check]:
    """SIGTERM hk: exit 0, `left` (never `dead`) in every other view."""
    node = mesh.ids[k]
    mesh.history.fault("leave", [node], [], watch=[node])  # before: the leave is broadcast before exit
    code = mesh.stop(k)
    mesh.wait_all(status_of(node, "left"), 20.0, what="left")
    hist = _hist(mesh)
    return [ck.Check("leave_exit_0", code == 0, f"exit {code}"),
            ck.check_detected(hist, "leave", 10.0, status="left"), ck.check_no_false_death(hist)]


def join(mesh: FaultMesh, k: int, expect: list[int]) -> list[ck.Check]:
    """A new node hk joins: every node sees `expect` alive."""
    t0 = mesh.history.mark("join_start", label=f"h{k}")
    mesh.start(k)
    mesh.wait_up(k)
    mesh.wait_all(alive_exactly(_ids(mesh, expect)), FAULT_CONVERGE_S, what="join")
    hist = _hist(mesh)
    return [ck.check_converged(hist, _ids(mesh, expect), t0, FAULT_START_S + FAULT_CONVERGE_S,
                               "join_converged_from_process_start"),
            ck.check_never_twice(hist)]


def loss(mesh: FaultMesh, percent: int, seconds: float) -> list[ck.Check]:
    """`percent`% of incoming UDP dropped on every live host for `seconds`: nobody dies."""
    live = sorted(mesh.live())
    name = f"loss{percent}"
    for k in live:
        mesh.lab.drop(k, percent)
    t0 = mesh.history.fault(name, _ids(mesh, live), [], percent=percent)
    try:
        time.sleep(seconds)
    finally:
        for k in live:
            mesh.lab.drop(k, 0)
    mesh.history.fault_end(name)
    mesh.wait_all(alive_exactly(_ids(mesh, live)), 30.0, what="alive after loss")
    hist = _hist(mesh)
    window = [r for r in hist if t0 <= r["t"] <= t0 + seconds]
    c = ck.check_no_false_death(window, f"{name}_no_false_death")
    return [ck.Check(c.name, c.ok, c.detail, {**c.figures, "seconds": seconds}),
            ck.check_converged(hist, _ids(mesh, live), t0, seconds + 30.0, f"{name}_all_alive")]


def partition(mesh: FaultMesh, groups: list[list[int]], hold: float) -> list[ck.Check]:
    """Cut `groups` apart for `hold` s, then heal: each side saw the other dead; one view again."""
    everyone = [k for g in groups for k in g]
    mesh.lab.partition(groups)
    mesh.history.fault("partition", [], _ids(mesh, everyone), groups=groups)
    for side in groups:
        other = _ids(mesh, [k for k in everyone if k not in side])
        mesh.wait_all(all_status(other, "dead"), FAULT_DETECT_S + 10, ks=side,
                      what="other side dead")
    time.sleep(hold)
    mesh.lab.heal()
    t_heal = mesh.history.mark("heal")
    mesh.wait_all(alive_exactly(_ids(mesh, everyone)), FAULT_HEAL_S, what="healed view")
    mesh.history.fault_end("partition")
    hist = _hist(mesh)
    return [ck.check_detected(hist, "partition", FAULT_DETECT_S, name="partition_sides_dead"),
            ck.check_one_view(hist, _ids(mesh, everyone), t_heal, FAULT_HEAL_S,
                              "partition_healed"),
            ck.check_never_twice(hist)]


def asymmetric(mesh: FaultMesh, src: int, dst: int, seconds: float) -> list[ck.Check]:
    """hk=dst drops everything from src (one way) for `seconds`: indirect probes keep both alive."""
    live = sorted(mesh.live())
    mesh.lab.block(src, dst)
    t0 = mesh.history.fault("asymmetric", _ids(mesh, [src, dst]), [])
    time.sleep(seconds)
    mesh.lab.heal()
    mesh.history.fault_end("asymmetric")
    mesh.wait_all(alive_exactly(_ids(mesh, live)), 30.0, what="alive after one-way block")
    hist = _hist(mesh)
    window = [r for r in hist if t0 <= r["t"] <= t0 + seconds]
    c = ck.check_no_false_death(window, "asymmetric_no_false_death")
    return [ck.Check(c.name, c.ok, c.detail, {**c.figures, "seconds": seconds})]


def churn(mesh: FaultMesh, pool: list[int], seconds: float, seed: int,
          min_live: int = 3, every: tuple[float, float] = (4.0, 7.0)) -> list[ck.Check]:
    """Kill (-9) or start a random node of `pool` every few seconds; placement follows membership."""
    rng, n, ends = random.Random(seed), 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        live = [k for k in pool if k in mesh.live()]
        dead = [k for k in pool if k not in live]
        if dead and (len(live) <= min_live or rng.random() < 0.5):
            mesh.start(rng.choice(dead))
        else:
            k = rng.choice(live)
            mesh.crash(k)
            n += 1
            mesh.history.fault(f"churn_{n}", [mesh.ids[k]], [mesh.ids[k]])
            ends.append(f"churn_{n}")
        time.sleep(rng.uniform(*every))
    return _churn_settle(mesh, pool, ends)


def _churn_settle(mesh: FaultMesh, pool: list[int], ends: list[str]) -> list[ck.Check]:
    for k in pool:
        if k not in mesh.live():
            mesh.start(k)
    mesh.wait_up(*pool)
    everyone = sorted(mesh.ids)
    mesh.wait_all(alive_exactly(_ids(mesh, everyone)), FAULT_CONVERGE_S, what="after churn")
    for name in ends:
        mesh.history.fault_end(name)
    hist = _hist(mesh)
    return [ck.check_placement_explained(hist, 10.0), ck.check_no_false_death(hist),
            ck.check_never_twice(hist),
            ck.Check("churn_kills", bool(ends), "", {"kills": len(ends)})]


def kill_during_requests(mesh: FaultMesh, model: str, role: str,
                         placement: Callable[[], dict[str, object]], settle: float
                         ) -> list[ck.Check]:
    """Crash the current `role` ("host"/"worker") of `model` while requests run; service resumes."""
    p = placement()
    ids = {v: k for k, v in mesh.ids.items()}
    victim = str(p["hosts"][0] if role == "host" else p["workers"][0])  # type: ignore[index]
    k = ids[victim]
    if mesh.router == k:  # requests go through a survivor, never the victim
        mesh.router = next(j for j in sorted(mesh.live()) if j != k)
        time.sleep(3.0)
    mesh.crash(k)
    name = f"kill9_{role}"
    t0 = mesh.history.fault(name, [victim], [victim])
    mesh.wait_all(status_of(victim, "dead"), FAULT_DETECT_S + 10, what=f"{role} dead")
    time.sleep(settle)
    hist = [r for r in _hist(mesh) if r["t"] >= t0]
    gap = rq.service_gap(hist, t0)
    figs = rq.request_figures(hist)
    ok = figs["requests"] > figs["errors"] and gap == gap  # some success after the crash
    return [ck.Check(f"{name}_service_resumed", ok, "",
                     {"gap_s": round(gap, 2), "errors": figs["errors"],
                      "requests": figs["requests"]}), ck.check_no_false_death(_hist(mesh))]


__all__ = ["FaultMesh", "Requester", "asymmetric", "churn", "cold_start", "crash_member",
           "fault_tomls", "join", "kill_during_requests", "leave", "loss", "partition", "pause",
           "restart_same_id"]
