"""The fault matrix: real `mesh-node` processes in network namespaces, faults injected, a
JSON-lines history recorded per lab (tests/lab/faults/history.py) and judged by the pure
checker (tests/lab/faults/checker.py).

Every scenario runs in `make test` and in `make lab`, with the same checks; only durations
differ. `make test` runs the short variants (loss soaks of 45 s, a 15 s SIGSTOP that still
outlasts detection, a 30 s one-way block, churn for 45 s, 25 s of service after each kill);
`make lab` (MESH_NODE_LAB_FULL=1) the full lengths (180 s soaks, SIGSTOP 30 s, a 60 s block,
churn for 120 s, 60 s after each kill). Scenarios: cold start of 5, kill -9, restart with the
same id, SIGSTOP short and long, graceful leave, join, 10% and 20% UDP loss, a one-way block,
a 2|3 partition held past `dead_reclaim` and its heal, churn, kill -9 of a split host and of
its RPC worker during requests, and kill -9 of a solo host with a join in the same minute
(Gemma demo model). Nodes use static peers (mDNS off) and the shipped timings. Each test
prints its verdict with figures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from election_configs import (
    GEMMA_ID,
    elab_catalog_memory,
    elab_gemma_file,
    elab_placement,
    elab_seed_demo,
    elab_split2_cap,
    elab_split_ready,
)
from faults import crashjoin as cj
from faults import scenarios as sc
from faults.checker import Check, verdict
from faults.drive import FaultMesh, Requester, Sampler, alive_exactly
from faults.history import History
from netlab import Lab

pytestmark = pytest.mark.lab

FM_FULL = os.environ.get("MESH_NODE_LAB_FULL") == "1"


def fm_len(full: float, short: float) -> float:
    """A scenario duration: the full one under `make lab`, the short one under `make test`."""
    return full if FM_FULL else short


FM_LOSS_S = fm_len(180.0, 45.0)
# Longer than detection (5.3-6.9 s measured; Lifeguard's minimum suspicion timeout is 4 s for
# up to 10 nodes, 24 s at most while nobody confirms, and four observers confirm at once).
FM_LONG_PAUSE_S = fm_len(30.0, 15.0)
FM_ONE_WAY_S = fm_len(60.0, 30.0)  # h1 probes h2 about every 4 s: 7 probes in the short one
# After both sides saw each other dead: past dead_reclaim (30 s) in both variants, so each
# side forgets the other and must find it again through its static peers.
FM_PARTITION_HOLD_S = fm_len(40.0, 33.0)
FM_CHURN_S = fm_len(120.0, 45.0)  # a kill or a start every 4-7 s: ~20 rounds, ~8 short
FM_AFTER_KILL_S = fm_len(60.0, 25.0)  # service watched after a crash is declared dead
# kill -9 of a host + a join: the joiner starts 15 s after the crash (the others still hold
# the tombstone); watched past dead_reclaim on every node and two push-pull rounds
FM_CRASHJOIN_JOIN_S = 15.0
FM_CRASHJOIN_WATCH_S = fm_len(180.0, 100.0)
FM_MEMORY = 8 << 30  # plenty: no model in the membership lab, solo placement in the churn lab
FM_RESULTS = os.environ.get("MESH_NODE_FAULT_RESULTS")  # optional JSON-lines of verdicts


def fm_judge(name: str, checks: list[Check]) -> None:
    """Print the verdict with its figures (and append it to FM_RESULTS); fail on any check."""
    v = verdict(name, checks)
    print("\n" + v.summary())
    if FM_RESULTS:
        with open(FM_RESULTS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"scenario": name, "ok": v.ok, "figures": v.figures(),
                                 "failures": [c.detail for c in v.failures]}) + "\n")
    assert v.ok, v.summary()


def fm_mesh(lab: Lab, memory: int = FM_MEMORY, demo_on: frozenset[int] = frozenset()
            ) -> FaultMesh:
    hosts = [(h.addr, h.workdir / "data") for h in lab.hosts]
    empty = lab.workdir / "hf-empty"
    empty.mkdir(exist_ok=True)
    # with FM_RESULTS, histories are kept beside it (pytest rotates its tmp dirs away)
    where = Path(FM_RESULTS).with_suffix("") if FM_RESULTS else lab.workdir
    hist = History(where / f"history-{lab.prefix}.jsonl")
    print(f"\nfault matrix history: {hist.path}")
    return FaultMesh(lab, hist, sc.fault_tomls(hosts, memory, set(demo_on)),
                     {"HF_HUB_CACHE": str(empty)})


def fm_ensure(mesh: FaultMesh, ks: list[int]) -> None:
    """Bring the mesh back to: nodes `ks` running (others as they are), no fault, one view."""
    for k in list(mesh.paused):
        mesh.resume(k)
    mesh.lab.heal()
    for h in mesh.lab.hosts:
        mesh.lab.drop(h.index, 0)
    mesh.start(*[k for k in ks if k not in mesh.live()])
    mesh.wait_up(*ks)
    live = {mesh.ids[k] for k in mesh.live()}
    mesh.wait_all(alive_exactly(live), sc.FAULT_CONVERGE_S, what="a settled mesh")


@pytest.fixture(scope="module")
def fm_labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[int], Lab]]:
    labs: list[Lab] = []

    def make(n: int) -> Lab:
        labs.append(Lab(n, workdir=tmp_path_factory.mktemp("faults")))
        return labs[-1]

    yield make
    for lab in labs:
        lab.close()


@pytest.fixture(scope="module")
def fm_members(fm_labs: Callable[[int], Lab]) -> Iterator[FaultMesh]:
    """Six hosts, no models; at most five nodes run at once. Sampled every second."""
    mesh = fm_mesh(fm_labs(6))
    with Sampler(mesh):
        yield mesh
    mesh.history.close()


# --- membership: six hosts, no model ---------------------------------------------------------
def test_cold_start_of_five_nodes(fm_members: FaultMesh) -> None:
    fm_judge("cold start of 5", sc.cold_start(fm_members, [1, 2, 3, 4, 5]))


def test_kill_9_of_a_member_then_restart_with_the_same_id(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 4, 5])
    fm_judge("kill -9 of a member", sc.crash_member(fm_members, 5))
    fm_judge("restart with the same id", sc.restart_same_id(fm_members, 5, "kill9_member",
                                                            [1, 2, 3, 4, 5]))


def test_sigstop_2s_is_no_death(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 4, 5])
    fm_judge("SIGSTOP 2 s", sc.pause(fm_members, 3, 2.0, [1, 2, 3, 4, 5]))


def test_graceful_leave_then_a_new_node_joins(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 4, 5])
    fm_judge("graceful leave", sc.leave(fm_members, 4))
    fm_judge("join", sc.join(fm_members, 6, [1, 2, 3, 5, 6]))


def test_loss_10_percent_no_false_death(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 5, 6])
    fm_judge(f"10% UDP loss for {FM_LOSS_S:.0f} s", sc.loss(fm_members, 10, FM_LOSS_S))


def test_loss_20_percent_no_false_death(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 5, 6])
    fm_judge(f"20% UDP loss for {FM_LOSS_S:.0f} s", sc.loss(fm_members, 20, FM_LOSS_S))


def test_long_sigstop_is_dead_then_rejoins(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 5, 6])
    fm_judge(f"SIGSTOP {FM_LONG_PAUSE_S:.0f} s",
             sc.pause(fm_members, 2, FM_LONG_PAUSE_S, [1, 2, 3, 5, 6]))


def test_asymmetric_partition_no_false_death(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 5, 6])
    fm_judge(f"one-way block h1 -> h2 for {FM_ONE_WAY_S:.0f} s",
             sc.asymmetric(fm_members, 1, 2, FM_ONE_WAY_S))


def test_partition_2_3_and_heal(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 5, 6])
    fm_judge(f"2|3 partition held {FM_PARTITION_HOLD_S:.0f} s and heal",
             sc.partition(fm_members, [[1, 2], [3, 5, 6]], FM_PARTITION_HOLD_S))


# --- with the Gemma demo model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def fm_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = elab_gemma_file(tmp_path_factory.mktemp("fm-cache"))
    return path


def fm_model_mesh(lab: Lab, gguf: Path, memory: int, demo_on: frozenset[int]) -> FaultMesh:
    mesh = fm_mesh(lab, memory, demo_on)
    for k in demo_on:
        elab_seed_demo(lab.host(k).workdir / "data", gguf)
    return mesh


def test_churn_placement_follows_membership(fm_labs: Callable[[int], Lab], fm_gguf: Path) -> None:
    mesh = fm_model_mesh(fm_labs(5), fm_gguf, FM_MEMORY, frozenset({1, 2}))
    with Sampler(mesh):
        sc.cold_start(mesh, [1, 2, 3, 4, 5])
        mesh.wait_all(lambda st: bool((p := elab_placement(st, GEMMA_ID)) and p["ready"]),
                      120.0, what="gemma served")
        fm_judge(f"churn for {FM_CHURN_S:.0f} s", sc.churn(mesh, [1, 2, 3, 4], FM_CHURN_S, seed=8))
    mesh.history.close()


def test_host_crash_and_join_same_minute_one_host_no_restart(
        fm_labs: Callable[[int], Lab], fm_gguf: Path) -> None:
    """Two holders that each fit the demo model solo, a bystander, and a fourth node that joins
    15 s after the host's kill -9: the other holder serves it, started once, never restarted."""
    mesh = fm_model_mesh(fm_labs(4), fm_gguf, FM_MEMORY, frozenset({1, 2}))
    with Sampler(mesh):
        sc.cold_start(mesh, [1, 2, 3])
        mesh.wait_all(lambda st: bool((p := elab_placement(st, GEMMA_ID)) and p["ready"]),
                      120.0, what="gemma served")
        fm_judge("kill -9 of the host and a join in the same minute",
                 cj.crash_host_and_join(mesh, GEMMA_ID, [1, 2], 4, FM_CRASHJOIN_JOIN_S,
                                        FM_CRASHJOIN_WATCH_S))
    mesh.history.close()


def test_kill_9_of_split_worker_and_host_during_requests(
        fm_labs: Callable[[int], Lab], fm_gguf: Path) -> None:
    lab = fm_labs(4)
    cap = elab_split2_cap(elab_catalog_memory(fm_gguf, lab.workdir / "probe"))
    mesh = fm_model_mesh(lab, fm_gguf, cap, frozenset({1, 2, 3}))
    with Sampler(mesh):
        sc.cold_start(mesh, [1, 2, 3, 4])
        mesh.wait_all(elab_split_ready(GEMMA_ID, 4, 1), 180.0, what="split ready")
        plan = fm_plan(mesh)
        used = {plan["hosts"][0], *plan["workers"]}
        mesh.router = next(k for k, i in mesh.ids.items() if i not in used)
        checks: list[Check] = []
        with Requester(mesh, GEMMA_ID, lambda: mesh.router) as req:
            req.wait_ok(3, 60.0)  # requests are served before anything breaks
            checks += sc.kill_during_requests(mesh, GEMMA_ID, "worker", lambda: fm_plan(mesh),
                                              FM_AFTER_KILL_S)
            checks += sc.kill_during_requests(mesh, GEMMA_ID, "host", lambda: fm_plan(mesh),
                                              FM_AFTER_KILL_S)
        fm_judge("kill -9 of split worker and host during requests", checks)
    mesh.history.close()


def fm_plan(mesh: FaultMesh) -> dict[str, Any]:
    """The current placement of the demo model, as one live node shows it (ids only)."""
    for k in mesh.live():
        st = mesh.status(k)
        p = elab_placement(st, GEMMA_ID) if st else None
        if p is not None:
            return {"hosts": [h["id"] for h in p["hosts"]],
                    "workers": [w["id"] for w in p["workers"]], "mode": p["mode"]}
    raise AssertionError("no live node shows a placement of the demo model")
