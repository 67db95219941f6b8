"""Demand-driven placement in the pure planner (issue 13): what is wanted, LRU eviction, never
an in-flight eviction, no over-commit during a swap, replicas from load, stable as ages tick."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_node.election.demand import Demand, merge, quantise_age, replica_target
from mesh_node.election.planner import plan, snapshot_from_states
from mesh_node.records import (
    KEEP_DEFAULT,
    KEEP_FOREVER,
    BackendCapability,
    Load,
    ModelDemand,
    ModelPlacement,
    ModelSummary,
    NodeState,
    Placement,
    Serving,
)

MIB = 1 << 20
LLAMA = BackendCapability("llama", "b1", ("gguf",), True, True)


def gguf(mid: str, mib: int = 100) -> ModelSummary:
    return ModelSummary(mid, mid, "llama", "gguf", mib * MIB, mib * MIB)


FIVE = tuple(gguf(m) for m in ("m1", "m2", "m3", "m4", "m5"))


def node(nid: str, mib: int, catalog: tuple[ModelSummary, ...] = FIVE, serving: tuple[str, ...] = (),
         **kw: object) -> NodeState:
    sv = tuple(Serving(m, "host", "llama", True, 9337, "ready", (), 100) for m in serving)
    return NodeState(nid, nid, f"10.0.0.{len(nid)}", 9337, 9338, mib * MIB, mib * MIB, (LLAMA,),
                     catalog, sv, **kw)  # type: ignore[arg-type]


def demand(*entries: tuple[str, int, int], keep: int = KEEP_DEFAULT, load: float = 0.0) -> Load:
    """(model, inflight, age) entries."""
    return Load(sum(e[1] for e in entries),
                tuple(ModelDemand(m, i, load, a, keep) for m, i, a in sorted(entries)))


def placed(states: list[NodeState], loads: dict[str, Load]) -> Placement:
    return plan(snapshot_from_states(states, loads))


def mode(p: Placement, mid: str) -> ModelPlacement:
    mp = p.for_model(mid)
    assert mp is not None
    return mp


# memory for two 100 MiB models at headroom 1.1 (2 x 110 = 220 MiB), not three
TWO = 230


def test_found_is_not_wanted_models_are_listed_available() -> None:
    p = placed([node("a", TWO)], {})
    assert {mp.mode for mp in p.models} == {"available"}
    assert "not requested yet" in mode(p, "m1").reason


def test_demanded_model_is_placed_and_idle_one_unloaded() -> None:
    loads = {"a": demand(("m1", 1, 0), ("m2", 0, 899), ("m3", 0, 900))}
    p = placed([node("a", TWO)], loads)
    assert mode(p, "m1").hosts == ("a",)
    assert mode(p, "m2").hosts == ("a",)  # 899 s < the 15-minute window
    assert mode(p, "m3").mode == "available" and "idle" in mode(p, "m3").reason


def test_idle_window_per_model_override_and_keep_alive() -> None:
    st = node("a", 10_000, idle=(("m1", 60),), idle_unload=120)
    loads = {"a": Load(0, (ModelDemand("m1", 0, 0.0, 61, KEEP_DEFAULT),
                           ModelDemand("m2", 0, 0.0, 119, KEEP_DEFAULT),
                           ModelDemand("m3", 0, 0.0, 5, 0),
                           ModelDemand("m4", 0, 0.0, 10**6, KEEP_FOREVER),
                           ModelDemand("m5", 0, 0.0, 30, 20)))}
    p = placed([st], loads)
    assert mode(p, "m1").mode == "available"  # its own window: 60 s
    assert mode(p, "m2").mode == "solo"  # the node default: 120 s
    assert mode(p, "m3").mode == "available" and "keep_alive 0" in mode(p, "m3").reason
    assert mode(p, "m4").mode == "solo"  # keep_alive -1: until told otherwise
    assert mode(p, "m5").mode == "available"  # keep_alive 20 s, 30 s ago


def test_lru_idle_model_is_evicted_for_a_waiting_request() -> None:
    st = node("a", TWO, serving=("m1", "m2"))
    loads = {"a": demand(("m1", 0, 300), ("m2", 0, 20), ("m3", 1, 0))}
    p = placed([st], loads)
    assert mode(p, "m1").mode == "available" and "evicted" in mode(p, "m1").reason
    assert mode(p, "m2").hosts == ("a",)
    m3 = mode(p, "m3")
    assert m3.mode == "available" and m3.waiting and "m1" in m3.reason


def test_never_evict_in_flight() -> None:
    st = node("a", TWO, serving=("m1", "m2"))
    p = placed([st], {"a": demand(("m1", 2, 300), ("m2", 0, 20), ("m3", 1, 0))})
    assert mode(p, "m1").hosts == ("a",)  # older, but answering a request
    assert "evicted" in mode(p, "m2").reason
    busy = placed([st], {"a": demand(("m1", 1, 300), ("m2", 1, 20), ("m3", 1, 0))})
    assert mode(busy, "m1").hosts == mode(busy, "m2").hosts == ("a",)
    assert mode(busy, "m3").waiting and "nothing idle" in mode(busy, "m3").reason


def test_preloaded_evicted_last_pinned_never() -> None:
    st = node("a", TWO, serving=("m1", "m2"), preload=("m1",))
    p = placed([st], {"a": demand(("m2", 0, 5), ("m3", 1, 0))})
    assert mode(p, "m1").hosts == ("a",) and "evicted" in mode(p, "m2").reason
    pinned = node("a", TWO, serving=("m1", "m2"), pins=(("m1", "a"), ("m2", "a")))
    p = placed([pinned], {"a": demand(("m3", 1, 0))})
    assert mode(p, "m1").hosts == mode(p, "m2").hosts == ("a",)
    assert mode(p, "m3").waiting


def test_no_over_commit_during_a_swap() -> None:
    """The newcomer is placed only once the evicted model's serving record is gone."""
    loads = {"a": demand(("m1", 0, 300), ("m2", 0, 20), ("m3", 1, 0))}
    during = placed([node("a", TWO, serving=("m1", "m2"))], loads)
    assert mode(during, "m3").hosts == ()
    after = placed([node("a", TWO, serving=("m2",))], loads)  # m1 stopped, record gone
    assert mode(after, "m3").hosts == ("a",) and mode(after, "m1").mode == "available"
    # a model no longer wanted still holds its memory while its record says it runs
    idle = {"a": demand(("m1", 0, 5000), ("m3", 1, 0), ("m2", 1, 0))}
    busy = placed([node("a", TWO, serving=("m1",))], idle)
    assert sum(1 for m in ("m2", "m3") if mode(busy, m).hosts) == 1


def test_never_placeable_is_unservable_at_once() -> None:
    huge = gguf("huge", 10_000)
    p = placed([node("a", TWO, catalog=(huge, *FIVE))], {"a": demand(("huge", 1, 0))})
    assert mode(p, "huge").mode == "unservable" and "offers" in mode(p, "huge").reason
    quiet = placed([node("a", TWO, catalog=(huge,))], {})
    assert mode(quiet, "huge").mode == "unservable"  # also when nobody asked yet


def test_lru_order_is_the_same_whatever_the_gossip_order() -> None:
    states = [node("a", TWO, serving=("m1", "m2")), node("b", 50, catalog=())]
    loads = {"a": demand(("m1", 0, 40), ("m3", 1, 0)), "b": demand(("m2", 0, 40))}
    first = placed(states, loads)
    again = placed(states[::-1], dict(reversed(loads.items())))
    assert first == again
    assert "evicted" in mode(first, "m1").reason  # equal ages: ties broken by id


@given(st.lists(st.tuples(st.sampled_from(["m1", "m2", "m3"]), st.integers(0, 3),
                          st.floats(0, 20, allow_nan=False), st.integers(0, 2000),
                          st.sampled_from([KEEP_DEFAULT, KEEP_FOREVER, 0, 60])),
                max_size=6), st.randoms())
@settings(max_examples=200, deadline=None)
def test_demand_merge_is_order_free(entries: list[tuple[str, int, float, int, int]],
                                    rng: random.Random) -> None:
    loads = [Load(0, (ModelDemand(*e),)) for e in entries]
    shuffled = list(loads)
    rng.shuffle(shuffled)
    assert merge(loads) == merge(shuffled)
    for mid, d in merge(loads).items():
        mine = [e for e in entries if e[0] == mid]
        assert d.inflight == sum(e[1] for e in mine)
        assert d.age == min(e[3] for e in mine)


@given(st.integers(0, 880))
@settings(max_examples=60, deadline=None)
def test_plan_stable_as_ages_tick(tick: int) -> None:
    """Within the idle window, ticking ages change no placement."""
    states = [node("a", TWO, serving=("m1", "m2"))]
    base = placed(states, {"a": demand(("m1", 0, 10), ("m2", 0, 15))})
    later = placed(states, {"a": demand(("m1", 0, quantise_age(10 + tick)),
                                        ("m2", 0, quantise_age(15 + tick)))})
    assert [(m.model, m.mode, m.hosts) for m in base.models] == \
        [(m.model, m.mode, m.hosts) for m in later.models]


def test_quantised_ages() -> None:
    assert [quantise_age(x) for x in (0.4, 59.9, 61, 599, 601, 3599)] == [0, 59, 60, 590, 600,
                                                                         3540]


def test_replica_target_hysteresis_floor_and_cap() -> None:
    assert replica_target(1, 8, 1, 3.0) == 1
    assert replica_target(1, 8, 1, 4.5) == 2  # more than one host's 4 slots
    assert replica_target(1, 8, 2, 3.0) == 2  # inside the band: keep
    assert replica_target(1, 8, 2, 1.9) == 1  # below half of one host's slots: drop one
    assert replica_target(3, 8, 1, 0.0) == 3  # replicas = N is a floor
    assert replica_target(1, 1, 1, 50.0) == 1  # capped
    assert replica_target(1, 8, 0, 9.0) == 2  # one step at a time


def test_replica_added_under_load_on_a_holder_with_memory() -> None:
    one = gguf("m1")
    states = [node(n, 150, catalog=(one,), serving=("m1",) if n == "a" else ())
              for n in ("a", "b", "c")]
    busy = placed(states, {"a": demand(("m1", 12, 0), load=12.0)})
    assert len(mode(busy, "m1").hosts) == 2
    calm = placed(states, {"a": demand(("m1", 1, 0), load=1.0)})
    assert mode(calm, "m1").hosts == ("a",)


def test_merged_demand_defaults() -> None:
    assert merge([]) == {}
    assert Demand().age is None


def test_mlx_demand_loads_the_llama_export_only_when_mlx_cannot_serve() -> None:
    mlx_cap = BackendCapability("mlx", "0.2", ("mlx",), False, True)
    q_mlx = ModelSummary("q-mlx", "q", "mlx", "mlx", 300 * MIB, 300 * MIB)
    q_gguf = ModelSummary("q-gguf", "q", "llama", "gguf", 300 * MIB, 300 * MIB)
    big = NodeState("a", "a", "10.0.0.1", 9337, 9338, 1000 * MIB, 1000 * MIB, (LLAMA, mlx_cap),
                    (q_mlx, q_gguf))
    p = placed([big], {"a": demand(("q-mlx", 1, 0))})
    assert mode(p, "q-mlx").mode == "solo" and mode(p, "q-mlx").served_as is None
    assert mode(p, "q-gguf").mode == "available"  # not loaded beside it
    small = [NodeState(n, n, f"10.0.0.{i}", 9337, 9338, 200 * MIB, 200 * MIB, (LLAMA, mlx_cap),
                       (q_mlx, q_gguf)) for i, n in enumerate(("a", "b"))]
    p = placed(small, {"a": demand(("q-mlx", 1, 0))})  # MLX cannot split; llama can
    assert mode(p, "q-mlx").served_as == "q-gguf" and mode(p, "q-gguf").mode == "split"
