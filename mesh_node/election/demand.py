"""Demand: which models the mesh wants now, from the demand every live node gossips. Pure.

A model is *wanted* when a config pins or preloads it, when a request for it is open anywhere,
or when the last request for it (through any node) is younger than its idle window. The window
is the largest `idle_unload` any live member's config sets for the model (a per-model override
wins over the node defaults); a request's Ollama `keep_alive` replaces it (0: unload once
answered, -1: keep until told otherwise).

Merge, the same on every node whatever the order: in-flight and smoothed load are summed over
the live members (each counts the requests that entered the mesh through it, so none is counted
twice); the age is the smallest (the most recent request anywhere), and that request's
keep-alive applies (ties: the longest). Ages are quantised where they are published
(`quantise_age`), so a ticking age changes the bytes rarely and the plan never: the plan reads
only "within the window or not" and, when it must evict, the least-recently-used order.

Replicas follow load (`replica_target`): one more host while the mesh's smoothed in-flight count
exceeds what the current hosts' slots take; one fewer once it is below half of what one host
fewer would take. The gap between the two thresholds, and the slow fall of the smoothed load
(timing.py demand_fall), keep a replica from flapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mesh_node.records import KEEP_DEFAULT, KEEP_FOREVER, Load, ModelDemand, NodeState

# llama-server's default `--parallel` (auto) is 4 slots per host: a host with more than 4 open
# requests queues the rest, so a fifth concurrent request is the first that waits.
HOST_SLOTS = 4
REPLICA_DOWN_FRACTION = 0.5  # drop a replica once load < half of what the others' slots take
DEFAULT_IDLE_UNLOAD = 900  # s: 15 minutes, like LM Studio's JIT TTL default scale


@dataclass(frozen=True)
class Demand:
    """The mesh's merged demand for one model."""

    inflight: int = 0
    load: float = 0.0
    age: int | None = None  # seconds since the most recent request; None: never requested
    keep: int = KEEP_DEFAULT  # that request's keep-alive


def quantise_age(seconds: float) -> int:
    """Whole seconds below a minute, 10 s steps below 10 minutes, minutes beyond (floor)."""
    s = max(0, int(seconds))
    if s < 60:
        return s
    if s < 600:
        return s - s % 10
    return s - s % 60


def merge(loads: Iterable[Load]) -> dict[str, Demand]:
    """Per model, the live members' demand merged (commutative and associative)."""
    out: dict[str, Demand] = {}
    for load in loads:
        for d in load.demand:
            out[d.model] = _merge_one(out.get(d.model, Demand()), d)
    return out


def _merge_one(a: Demand, d: ModelDemand) -> Demand:
    if a.age is None or d.age < a.age:
        age, keep = d.age, d.keep
    elif d.age == a.age:
        age, keep = d.age, max(a.keep, d.keep)
    else:
        age, keep = a.age, a.keep
    return Demand(a.inflight + d.inflight, round(a.load + d.load, 6), age, keep)


def idle_windows(states: Iterable[NodeState], resolve: Mapping[str, list[str]]
                 ) -> tuple[int, dict[str, int]]:
    """(mesh default window, per-model overrides): the largest any live member configures.
    `resolve` maps a config reference (id or alias) to the model ids it names."""
    default, per_model = 0, dict[str, int]()
    for st in states:
        default = max(default, st.idle_unload)
        for ref, seconds in st.idle:
            for mid in resolve.get(ref, [ref]):
                per_model[mid] = max(per_model.get(mid, 0), seconds)
    return (default or DEFAULT_IDLE_UNLOAD), per_model


def remaining(d: Demand, window: int) -> int | None:
    """Seconds until the model idles out (0: now; None: never, or never requested)."""
    if d.age is None:
        return 0
    if d.keep == KEEP_FOREVER:
        return None
    limit = d.keep if d.keep >= 0 else window
    return max(0, limit - d.age)


def demanded(d: Demand, window: int) -> bool:
    """A request is open, or the last one is younger than its idle window / keep-alive."""
    if d.inflight > 0:
        return True
    left = remaining(d, window)
    return d.age is not None and (left is None or left > 0)


def replica_target(floor: int, cap: int, current: int, load: float) -> int:
    """Hosts a model should have: `current` moved by one toward its smoothed load, with
    hysteresis; never below the configured floor, never above the cap (floor wins)."""
    target = max(1, current)
    if load > target * HOST_SLOTS:
        target += 1
    elif target > 1 and load < (target - 1) * HOST_SLOTS * REPLICA_DOWN_FRACTION:
        target -= 1
    return max(floor, min(target, cap))
