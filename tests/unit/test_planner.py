"""Table-driven tests of the pure election planner: one row per rule of issue 5."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from mesh_node.election.planner import plan, snapshot_from_states
from mesh_node.election.rules import host_share, node_commitments
from mesh_node.records import (
    BackendCapability,
    ModelSummary,
    NodeState,
    Placement,
    Serving,
)
from mesh_node.testing.carry import carry_out

GIB = 1024**3
LLAMA = BackendCapability("llama", "b1", ("gguf",), True, True)
LLAMA_B2 = BackendCapability("llama", "b2", ("gguf",), True, True)
MLX = BackendCapability("mlx", "0.20", ("mlx",), False, True)
MLX_OFF = BackendCapability("mlx", "", ("mlx",), False, False, "mlx not installed")


def gguf(mid: str, gib: float, key: str | None = None) -> ModelSummary:
    return ModelSummary(mid, key or mid, "llama", "gguf", int(gib * GIB), int(gib * GIB))


def mlx(mid: str, gib: float, key: str | None = None) -> ModelSummary:
    return ModelSummary(mid, key or mid, "mlx", "mlx", int(gib * GIB), int(gib * GIB))


def node(nid: str, gib: float, models: tuple[ModelSummary, ...] = (),
         caps: tuple[BackendCapability, ...] = (LLAMA,), serving: tuple[Serving, ...] = (),
         pins: tuple[tuple[str, str], ...] = (), replicas: tuple[tuple[str, int], ...] = (),
         name: str | None = None) -> NodeState:
    mem = int(gib * GIB)
    return NodeState(nid, name or nid, f"10.0.0.{ord(nid[0]) % 250}", 9337, 9338, mem, mem,
                     caps, models, serving, pins=pins, replicas=replicas,
                     preload=tuple(m.id for m in models))  # the eager tests: all wanted


def hosting(model: str, state: str = "ready") -> Serving:
    return Serving(model, "host", "llama", state == "ready", 9337, state)


@dataclass(frozen=True)
class Expect:
    mode: str
    hosts: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    reason: str = ""  # a substring the reason must contain
    served_as: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    states: tuple[NodeState, ...]
    expect: dict[str, Expect]
    before: tuple[NodeState, ...] | None = None  # planned and carried out first (incumbents)
    far: dict[str, tuple[str, ...]] = field(default_factory=dict)  # node -> peers it finds far


def _planned(states: tuple[NodeState, ...], far: dict[str, tuple[str, ...]] | None = None,
             previous: Placement | None = None) -> Placement:
    """Plan `states`; with `previous`, first carry it out (serving records, as nodes do),
    except on nodes whose serving records the case states itself."""
    far = far or {}
    states = tuple(dataclasses.replace(s, far=far.get(s.node_id, ())) for s in states)
    if previous is not None:
        done = {s.node_id: s for s in carry_out(states, previous)}
        states = tuple(s if s.serving else done[s.node_id] for s in states)
    return plan(snapshot_from_states(states))


M13 = gguf("m", 1.3)
BIG3 = gguf("big", 3.0)
SHARED = gguf("m", 2.0)
CASES = [
    Case("fits_solo", (node("a", 6.0, (M13,)),),
         {"m": Expect("solo", ("a",), (), "fits solo on a (needs 1.3 GiB x1.1, 6.0 GiB free)")}),
    Case("fits_nowhere_llama_splits",
         (node("a", 2.0, (BIG3,)), node("b", 1.0), node("c", 1.0), node("d", 0.5)),
         {"big": Expect("split", ("a",), ("b", "c"), "no single node has 3.3 GiB free")}),
    Case("mlx_too_large_unservable", (node("a", 2.0, (mlx("q", 3.0),), (MLX,)), node("b", 2.0)),
         {"q": Expect("unservable", (), (),
                      "MLX cannot split; needs 3.0 GiB x1.1, largest node offers 2.0 GiB")}),
    Case("mlx_too_large_served_as_llama_export",
         (node("a", 2.0, (mlx("q-mlx", 3.0, "q"),), (MLX, LLAMA)),
          node("b", 2.0, (gguf("q-gguf", 3.0, "q"),)), node("c", 2.0)),
         {"q-mlx": Expect("split", ("b",), ("a",), "served as q-gguf (llama export with the "
                                                   "same key q)", served_as="q-gguf"),
          "q-gguf": Expect("split", ("b",), ("a",))}),
    Case("mlx_unservable_on_node_without_mlx", (node("a", 8.0, (mlx("q", 1.0),), (MLX_OFF,)),),
         {"q": Expect("unservable", (), (), "no node with an available mlx backend "
                                            "(a: mlx not installed)")}),
    Case("two_models_packed_third_goes_elsewhere",
         (node("a", 8.0, (gguf("m1", 3.0), gguf("m2", 3.0), gguf("m3", 3.0))),
          node("b", 4.0, (gguf("m3", 3.0),))),
         {"m1": Expect("solo", ("a",)), "m2": Expect("solo", ("a",)),
          "m3": Expect("solo", ("b",), (), "fits solo on b (needs 3.0 GiB x1.1, 4.0 GiB free)")}),
    Case("two_models_packed_third_splits",
         (node("a", 8.0, (gguf("m1", 3.0), gguf("m2", 3.0), gguf("m3", 2.0))), node("b", 2.0)),
         {"m1": Expect("solo", ("a",)), "m2": Expect("solo", ("a",)),
          "m3": Expect("split", ("a",), ("b",), "largest holder offers 1.4 GiB")}),
    Case("incumbent_kept_on_unrelated_join",
         (node("a", 8.0, (SHARED,), serving=(hosting("m"),)), node("b", 4.0, (SHARED,)),
          node("c", 32.0, (SHARED,))),
         {"m": Expect("solo", ("a",), (), "kept solo on a (incumbent")},
         before=(node("a", 8.0, (SHARED,)), node("b", 4.0, (SHARED,)))),
    Case("host_lost_replaced", (node("b", 4.0, (SHARED,)),),
         {"m": Expect("solo", ("b",), (), "fits solo on b")},
         before=(node("a", 8.0, (SHARED,)), node("b", 4.0, (SHARED,)))),
    Case("failed_host_is_not_incumbent",
         (node("a", 8.0, (SHARED,), serving=(hosting("m", "failed: exit 1"),)),
          node("b", 4.0, (SHARED,))),
         {"m": Expect("solo", ("b",))},
         before=(node("a", 8.0, (SHARED,)), node("b", 4.0, (SHARED,)))),
    Case("incumbent_memory_shrank_moves",
         (node("a", 2.0, (SHARED,)), node("b", 4.0, (SHARED,))),
         {"m": Expect("solo", ("b",))},
         before=(node("a", 8.0, (SHARED,)), node("b", 4.0, (SHARED,)))),
    Case("worker_lost_resplit",
         (node("a", 2.0, (BIG3,)), node("b", 1.0), node("d", 0.9)),
         {"big": Expect("split", ("a",), ("b", "d"))},
         before=(node("a", 2.0, (BIG3,)), node("b", 1.0), node("c", 1.0), node("d", 0.9))),
    Case("tie_break_by_free_memory", (node("a", 8.0, (SHARED,)), node("b", 9.0, (SHARED,))),
         {"m": Expect("solo", ("b",))}),
    Case("tie_break_by_id", (node("b", 8.0, (SHARED,)), node("a", 8.0, (SHARED,))),
         {"m": Expect("solo", ("a",))}),
    Case("holder_required_to_host", (node("a", 3.0, (SHARED,)), node("b", 64.0)),
         {"m": Expect("solo", ("a",))}),
    Case("rtt_limit_skips_far_worker",
         (node("a", 2.0, (BIG3,)), node("b", 1.0), node("c", 4.0), node("d", 1.0)),
         {"big": Expect("split", ("a",), ("b", "d"),
                        "skipped c (round trip to a above the max_rtt_ms limit)")},
         far={"c": ("a",)}),
    Case("worker_of_another_llama_build_skipped",
         (node("a", 2.0, (BIG3,)), node("b", 1.0), node("c", 4.0, caps=(LLAMA_B2,)),
          node("d", 1.0)),
         {"big": Expect("split", ("a",), ("b", "d"),
                        "skipped c (llama.cpp build b2, host has b1)")}),
    Case("split_short_unservable", (node("a", 2.0, (BIG3,)), node("b", 1.0)),
         {"big": Expect("unservable", (), (), "split needs 3.3 GiB (3.0 GiB x1.1), "
                                              "the mesh offers 3.0 GiB")}),
    Case("pin_honoured_over_free_memory",
         (node("a", 8.0, (SHARED,), pins=(("m", "b"),)), node("b", 4.0, (SHARED,))),
         {"m": Expect("solo", ("b",))}),
    Case("pin_by_name_and_alias",
         (node("a", 8.0, (ModelSummary("m", "m", "llama", "gguf", GIB, GIB, ("gem",)),),
               pins=(("gem", "studio"),)),
          node("b", 4.0, (gguf("m", 1.0),), name="studio")),
         {"m": Expect("solo", ("b",))}),
    Case("pin_not_honoured_says_why",
         (node("a", 8.0, (SHARED,), pins=(("m", "c"),)), node("c", 8.0)),
         {"m": Expect("solo", ("a",), (), "pin to c not honoured: c cannot host it")}),
    Case("pin_to_missing_model", (node("a", 8.0, pins=(("ghost", "a"),)),),
         {"ghost": Expect("unservable", (), (), "no live node has the file")}),
    Case("replicas_two_hosts",
         (node("a", 8.0, (SHARED,), replicas=(("m", 2),)), node("b", 4.0, (SHARED,)),
          node("c", 3.0, (SHARED,))),
         {"m": Expect("solo", ("a", "b"), (), "replica on b (4.0 GiB free)")}),
    Case("replicas_short_says_so",
         (node("a", 8.0, (SHARED,), replicas=(("m", 3),)), node("b", 4.0, (SHARED,))),
         {"m": Expect("solo", ("a", "b"), (), "2 of 3 replicas")}),
    Case("one_rpc_worker_role_per_node",
         (node("a", 2.0, (BIG3,)), node("b", 2.0, (gguf("big2", 3.0),)), node("c", 4.0),
          node("d", 4.0)),
         {"big": Expect("split", ("a",), ("c",)), "big2": Expect("split", ("b",), ("d",))}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_planner_table(case: Case) -> None:
    previous = _planned(case.before) if case.before is not None else None
    placement = _planned(case.states, case.far, previous)
    assert {p.model for p in placement.models} == set(case.expect)
    for model, want in case.expect.items():
        got = placement.for_model(model)
        assert got is not None
        assert (got.mode, got.hosts) == (want.mode, want.hosts), got.reason
        assert tuple(w.node_id for w in got.workers) == want.workers, got.reason
        assert want.reason in got.reason
        assert got.served_as == want.served_as
        assert got.reason


def test_split_weights_follow_memory_and_sum_to_one() -> None:
    states = (node("a", 2.0, (BIG3,)), node("b", 1.0), node("c", 1.0))
    p = _planned(states).for_model("big")
    assert p is not None and p.mode == "split"
    weights = [w.weight for w in p.workers]
    assert weights == pytest.approx([0.25, 0.25])
    assert host_share(weights) + sum(weights) == pytest.approx(1.0)
    assert host_share(weights) == pytest.approx(0.5)
    assert all(w.rpc_port == 50052 and w.address.startswith("10.0.0.") for w in p.workers)


def test_served_as_is_not_double_counted() -> None:
    states = (node("a", 2.0, (mlx("q-mlx", 3.0, "q"),), (MLX, LLAMA)),
              node("b", 2.0, (gguf("q-gguf", 3.0, "q"),)), node("c", 2.0))
    placement = _planned(states)
    used = node_commitments(placement, 1.1)
    assert sum(used.values()) <= int(3.0 * GIB * 1.1) + 2  # one split's worth, rounding only


def test_memory_never_over_committed_when_packing() -> None:
    models = tuple(gguf(f"m{i}", 1.0 + i * 0.5) for i in range(6))
    states = (node("a", 4.0, models), node("b", 3.0, models[:3]), node("c", 2.0))
    placement = _planned(states)
    used = node_commitments(placement, 1.1)
    offered = {s.node_id: s.memory_offered for s in states}
    assert used and all(used[n] <= offered[n] for n in used)
    # it ran out and said so: fits on an empty mesh, so it waits for memory (not unservable)
    assert any(p.mode == "available" and "waiting for memory" in p.reason
               for p in placement.models)


def test_previous_split_kept_when_unchanged() -> None:
    states = (node("a", 2.0, (BIG3,)), node("b", 1.0), node("c", 1.0))
    first = _planned(states)
    grown = (*states, node("e", 64.0))
    again = _planned(grown, None, first)
    p = again.for_model("big")
    assert p is not None and p.reason.startswith("kept split (incumbent)")
    assert p.workers == first.models[0].workers


def test_worker_rpc_port_comes_from_its_node_state() -> None:
    worker = dataclasses.replace(node("b", 2.0), rpc_port=50111)
    p = _planned((node("a", 2.0, (BIG3,)), worker)).for_model("big")
    assert p is not None and p.mode == "split"
    assert [(w.node_id, w.rpc_port) for w in p.workers] == [("b", 50111)]


def test_unrelated_join_would_win_without_incumbency() -> None:
    joined = (node("a", 8.0, (SHARED,)), node("b", 4.0, (SHARED,)), node("c", 32.0, (SHARED,)))
    fresh = _planned(joined).for_model("m")
    assert fresh is not None and fresh.hosts == ("c",)  # so keeping "a" above is stability
    before = _planned(joined[:2])
    kept = _planned(joined, None, before).for_model("m")
    assert kept is not None and kept.hosts == ("a",)
