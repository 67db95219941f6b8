"""Hypothesis properties of the election planner over random meshes."""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Sequence
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_node.election.planner import plan, snapshot_from_states
from mesh_node.election.rules import node_commitments
from mesh_node.records import (
    BackendCapability,
    ModelPlacement,
    ModelSummary,
    NodeState,
    Placement,
    Serving,
)
from mesh_node.testing.carry import carry_out

QUARTER_GIB = 1024**3 // 4
NODE_IDS = ["n0", "n1", "n2", "n3", "n4", "n5"]
MODEL_IDS = ["m0", "m1", "m2", "m3", "m4", "m5"]
KEYS = ["k0", "k1", "k2"]
# PLANNER_EXAMPLES=5000 soaks the properties; 300 keeps the unit run near 20 s on 2 shared cores.
SETTINGS = settings(max_examples=int(os.environ.get("PLANNER_EXAMPLES", "300")), deadline=None)
T = TypeVar("T")


@st.composite
def models(draw: st.DrawFn) -> list[ModelSummary]:
    ids = draw(st.lists(st.sampled_from(MODEL_IDS), min_size=1, max_size=5, unique=True))
    out = []
    for mid in ids:
        backend = draw(st.sampled_from(["llama", "mlx"]))
        mem = draw(st.integers(1, 40)) * QUARTER_GIB + draw(st.integers(0, 3))
        out.append(ModelSummary(mid, draw(st.sampled_from(KEYS)), backend,
                                "gguf" if backend == "llama" else "mlx", mem, mem))
    return out


@st.composite
def node_state(draw: st.DrawFn, nid: str, pool: list[ModelSummary]) -> NodeState:
    llama_ok, mlx_ok = draw(st.booleans()), draw(st.booleans())
    caps = (BackendCapability("llama", "b1", ("gguf",), True, llama_ok, "" if llama_ok else "no bin"),
            BackendCapability("mlx", "0.2", ("mlx",), False, mlx_ok, "" if mlx_ok else "linux"))
    catalog = tuple(draw(st.lists(st.sampled_from(pool), unique_by=lambda m: m.id, max_size=4)))
    states = st.sampled_from(["ready", "starting", "failed: exit 1", "stopped"])
    serving = tuple(Serving(m.id, draw(st.sampled_from(["host", "worker"])), m.backend,
                            False, 50052, draw(states))
                    for m in draw(st.lists(st.sampled_from(pool), unique_by=lambda m: m.id,
                                           max_size=2)))
    pins = tuple((m.id, draw(st.sampled_from(NODE_IDS)))
                 for m in draw(st.lists(st.sampled_from(pool), max_size=1)))
    reps = tuple((m.id, draw(st.integers(1, 3)))
                 for m in draw(st.lists(st.sampled_from(pool), max_size=1)))
    mem = draw(st.integers(0, 48)) * QUARTER_GIB + draw(st.integers(0, 5))
    return NodeState(nid, f"name-{nid}", f"10.1.0.{NODE_IDS.index(nid)}", 9337, 9338, mem, 0,
                     caps, catalog, serving, pins=pins, replicas=reps,
                     preload=tuple(m.id for m in catalog))  # every model wanted, as before


@st.composite
def meshes(draw: st.DrawFn) -> list[NodeState]:
    pool = draw(models())
    ids = draw(st.lists(st.sampled_from(NODE_IDS), min_size=1, max_size=5, unique=True))
    states = [draw(node_state(nid, pool)) for nid in ids]
    # each node publishes the peers it measured beyond its round-trip limit
    return [dataclasses.replace(s, far=tuple(sorted(draw(st.lists(st.sampled_from(ids),
                                                                  unique=True, max_size=2)))))
            for s in states]


def _plan(states: Sequence[NodeState]) -> Placement:
    return plan(snapshot_from_states(states))


def _structure(p: Placement) -> list[ModelPlacement]:
    return [dataclasses.replace(m, reason="") for m in p.models]


def _shuffled(states: list[NodeState], rng: random.Random) -> list[NodeState]:
    def mix(t: tuple[T, ...]) -> tuple[T, ...]:
        return tuple(rng.sample(t, len(t)))

    out = [dataclasses.replace(s, capabilities=mix(s.capabilities), catalog=mix(s.catalog),
                               serving=mix(s.serving)) for s in states]
    return rng.sample(out, len(out))


SETTLE_ROUNDS = 10  # replicas follow load one host per plan (election/demand.py), at most 8


def _settled(states: list[NodeState]) -> tuple[tuple[NodeState, ...], Placement]:
    """Plan, carry the plan out (serving records), plan again, until the plan is its own
    effect: the mesh at rest. A generated mesh may start with more hosts serving a model than
    its demand keeps (replicas then step down one per plan), so this takes a few rounds."""
    placement = _plan(states)
    carried = carry_out(states, placement)
    for _ in range(SETTLE_ROUNDS):
        again = _plan(carried)
        if _structure(again) == _structure(placement):
            return carried, again
        placement, carried = again, carry_out(carried, again)
    raise AssertionError(f"no fixed point after {SETTLE_ROUNDS} rounds: {placement}")


@SETTINGS
@given(meshes(), st.randoms(use_true_random=False))
def test_planner_permutation_invariant(states: list[NodeState], rng: random.Random) -> None:
    assert _plan(states) == _plan(_shuffled(states, rng))


@SETTINGS
@given(meshes())
def test_planner_deterministic_and_complete(states: list[NodeState]) -> None:
    snap = snapshot_from_states(states)
    placement = plan(snap)
    assert placement == plan(snapshot_from_states(states))
    assert [p.model for p in placement.models] == [m.id for m in snap.models]
    assert all(p.reason for p in placement.models)


@SETTINGS
@given(meshes())
def test_planner_never_over_commits(states: list[NodeState]) -> None:
    used = node_commitments(_plan(states), 1.1)
    offered = {s.node_id: s.memory_offered for s in states}
    assert all(used[n] <= offered[n] for n in used), (used, offered)


@SETTINGS
@given(meshes())
def test_planner_roles_are_sound(states: list[NodeState]) -> None:
    by_id = {s.node_id: s for s in states}
    placement = _plan(states)
    worker_roles: list[str] = []
    for p in placement.models:
        if p.mode == "split":
            assert p.backend == "llama"  # never an MLX split, served_as included
            assert len(p.hosts) == 1 and p.workers
            host = by_id[p.hosts[0]]
            assert host.node_id not in {w.node_id for w in p.workers}
            for w in p.workers:  # near the host, by both nodes' published measurements
                assert w.node_id not in host.far and host.node_id not in by_id[w.node_id].far
            assert abs(sum(w.weight for w in p.workers)) < 1.0
        served = p.served_as or p.model
        for h in p.hosts:
            assert served in {m.id for m in by_id[h].catalog}
            assert by_id[h].capability(p.backend) is not None
        if p.served_as is None:
            worker_roles += [w.node_id for w in p.workers]
        else:
            assert p.mode != "unservable" and placement.for_model(p.served_as) is not None
    assert len(worker_roles) == len(set(worker_roles))  # one RPC port per node


@SETTINGS
@given(meshes())
def test_planner_placement_is_a_fixed_point_of_its_effects(states: list[NodeState]) -> None:
    """Plan, carry it out, plan again: within a few rounds the same placement, the same split
    weights (the shipped path: incumbency comes only from the serving records the plan's
    effects publish), and only replica counts step on the way."""
    first = _plan(states)
    carried, second = _settled(states)
    assert [(m.model, m.mode) for m in second.models] == [(m.model, m.mode) for m in first.models]
    assert _plan(carry_out(carried, second)) == second


@SETTINGS
@given(meshes())
def test_planner_unrelated_join_changes_nothing(states: list[NodeState]) -> None:
    carried, settled = _settled(states)
    stranger = NodeState("zz", "stranger", "10.1.0.99", 9337, 9338, 64 * 4 * QUARTER_GIB, 0)
    assert _structure(_plan([*carried, stranger])) == _structure(settled)


@SETTINGS
@given(meshes(), st.data())
def test_planner_leave_replans_only_what_it_touches(states: list[NodeState],
                                                    data: st.DataObject) -> None:
    carried, settled = _settled(states)
    leaving = data.draw(st.sampled_from(carried))
    gone = leaving.node_id
    # Pins and replicas are config the leaving node carried: its models are touched too.
    configured = {ref for ref, _ in leaving.pins} | {ref for ref, _ in leaving.replicas}
    after = _plan([s for s in carried if s.node_id != gone])
    for before in settled.models:
        touched = (gone in before.hosts or gone in {w.node_id for w in before.workers}
                   or before.model in configured)
        if before.reason.startswith("kept") and not touched:
            now = after.for_model(before.model)
            assert now is not None
            assert dataclasses.replace(now, reason="") == dataclasses.replace(before, reason="")
