"""The fault matrix: real `mesh-node` processes in network namespaces, faults injected, a
JSON-lines history recorded per lab (tests/lab/faults/history.py) and judged by the pure
checker (tests/lab/faults/checker.py).

`make test` runs the fast subset (cold start of 5, kill -9, restart with the same id, SIGSTOP
2 s, graceful leave, join, 45 s of 10% loss: about 3 minutes). `make lab`
(MESH_NODE_LAB_FULL=1) adds the long scenarios: several minutes of 10% and 20% loss, SIGSTOP
30 s, a one-way block, a 2|3 partition and its heal, churn, and kill -9 of a split host and of
its RPC worker during requests (Gemma demo model). Nodes use static peers (mDNS off) and the
shipped timings. Each test prints its verdict with figures.
"""

from __future__ import annotations

import json
import os
import time
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
from faults import scenarios as sc
from faults.checker import Check, verdict
from faults.drive import FaultMesh, Requester, Sampler, alive_exactly
from faults.history import History
from netlab import Lab

pytestmark = pytest.mark.lab

FM_FULL = os.environ.get("MESH_NODE_LAB_FULL") == "1"
full_only = pytest.mark.skipif(not FM_FULL, reason="full fault matrix only: run `make lab` "
                                                   "(MESH_NODE_LAB_FULL=1)")
FM_LOSS_S = 180.0 if FM_FULL else 45.0
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


# --- fast subset (also in `make lab`) --------------------------------------------------------
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


# --- full matrix only --------------------------------------------------------------------------
@full_only
def test_loss_20_percent_no_false_death(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 5, 6])
    fm_judge(f"20% UDP loss for {FM_LOSS_S:.0f} s", sc.loss(fm_members, 20, FM_LOSS_S))


@full_only
def test_sigstop_30s_is_dead_then_rejoins(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 5, 6])
    fm_judge("SIGSTOP 30 s", sc.pause(fm_members, 2, 30.0, [1, 2, 3, 5, 6]))


@full_only
def test_asymmetric_partition_no_false_death(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 5, 6])
    fm_judge("one-way block h1 -> h2", sc.asymmetric(fm_members, 1, 2, 60.0))


@full_only
def test_partition_2_3_and_heal(fm_members: FaultMesh) -> None:
    fm_ensure(fm_members, [1, 2, 3, 5, 6])
    # held past dead_reclaim (30 s): each side forgets the other and must find it again
    fm_judge("2|3 partition and heal", sc.partition(fm_members, [[1, 2], [3, 5, 6]], 40.0))


# --- full matrix, with the Gemma demo model -----------------------------------------------------
@pytest.fixture(scope="module")
def fm_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = elab_gemma_file(tmp_path_factory.mktemp("fm-cache"))
    return path


def fm_model_mesh(lab: Lab, gguf: Path, memory: int, demo_on: frozenset[int]) -> FaultMesh:
    mesh = fm_mesh(lab, memory, demo_on)
    for k in demo_on:
        elab_seed_demo(lab.host(k).workdir / "data", gguf)
    return mesh


@full_only
def test_churn_placement_follows_membership(fm_labs: Callable[[int], Lab], fm_gguf: Path) -> None:
    mesh = fm_model_mesh(fm_labs(5), fm_gguf, FM_MEMORY, frozenset({1, 2}))
    with Sampler(mesh):
        sc.cold_start(mesh, [1, 2, 3, 4, 5])
        mesh.wait_all(lambda st: bool((p := elab_placement(st, GEMMA_ID)) and p["ready"]),
                      120.0, what="gemma served")
        fm_judge("churn", sc.churn(mesh, [1, 2, 3, 4], 120.0, seed=8))
    mesh.history.close()


@full_only
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
        with Requester(mesh, GEMMA_ID, lambda: mesh.router):
            time.sleep(10.0)
            checks += sc.kill_during_requests(mesh, GEMMA_ID, "worker", lambda: fm_plan(mesh), 60)
            checks += sc.kill_during_requests(mesh, GEMMA_ID, "host", lambda: fm_plan(mesh), 60)
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
