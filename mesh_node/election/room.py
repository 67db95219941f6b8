"""Making room: the demand side of `plan` (election/planner.py calls these). Pure.

- `wanted`: the models to place (demand.py's wanted set, plus the llama export of a wanted MLX
  model that fits nowhere as MLX);
- `charge_stopping`: a role being left keeps its memory charged until its record is gone;
- `make_room`: a wanted model left unplaced is unservable only when it fits nowhere on an empty
  mesh; else it waits, and with a request open it evicts the fewest least-recently-used idle
  models that let it fit (WantedModel.lru_key: idle before preloaded, oldest request first,
  ties by id; never a model with a request open, never a pinned one);
- `not_wanted`: how an unwanted model is listed (available, or unservable, with the reason).

`place` is the planner's own placement of one model from scratch against a ledger, so every
trial here packs exactly as the plan would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mesh_node.election.rules import Ledger, model_commitments
from mesh_node.election.snapshot import Snapshot, WantedModel
from mesh_node.records import ModelPlacement

Place = Callable[[Snapshot, WantedModel, Ledger], ModelPlacement]


def wanted(s: Snapshot, place: Place) -> list[WantedModel]:
    """Models to place: the wanted ones, plus the llama exports of a wanted MLX model that fits
    nowhere as MLX (the fallback serves it through one of them)."""
    keys = {m.key for m in s.models if m.wanted and m.backend == "mlx"
            and _never(s, m, place) is not None}
    return [m for m in s.models if m.wanted or (m.backend == "llama" and m.key in keys)]


def charge_stopping(s: Snapshot, led: Ledger, kept: dict[str, ModelPlacement]) -> None:
    """Memory a node still holds for a role it is leaving (a model no longer wanted, a dropped
    replica) stays charged until its serving record is gone, so nothing starts on top of it:
    a swap never over-commits. A wanted model being moved is not charged (as before)."""
    if s.previous is None:
        return
    wanted = {m.id for m in s.models if m.wanted}
    memory = {m.id: m.memory_bytes for m in s.models}
    for prev in s.previous.models:
        if prev.model in wanted and prev.model not in kept:
            continue
        # the rebuilt previous placement carries no memory figure: the model's estimate
        prev = dataclasses.replace(prev, memory_bytes=memory.get(prev.model, 0))
        keep = model_commitments(kept[prev.model], s.headroom) if prev.model in kept else {}
        for node, amount in model_commitments(prev, s.headroom).items():
            if node in led.free and node not in keep:
                led.free[node] -= amount
        if prev.model not in kept:
            led.workers.update(w.node_id for w in prev.workers if w.node_id in led.free)


def make_room(s: Snapshot, led: Ledger, order: list[WantedModel],
              results: dict[str, ModelPlacement], place: Place) -> None:
    """Each wanted model left unplaced: unservable only when it fits nowhere even on an empty
    mesh; otherwise it waits for memory, and when a request for it is open, the least recently
    used idle models whose unloading lets it fit are evicted (they stop now; it is placed once
    their records are gone, by a later plan)."""
    for m in order:
        if results[m.id].mode != "unservable":
            continue
        never = _never(s, m, place)
        if never is not None:
            results[m.id] = never
            continue
        why = results[m.id].reason
        if m.demand.inflight == 0:
            results[m.id] = _available(m, f"waiting for memory: {why}")
            continue
        victims = _victims(s, m, led, results, place)
        if victims is None:
            results[m.id] = _available(m, f"waiting for memory, nothing idle to unload: {why}",
                                       waiting=True)
            continue
        names = ", ".join(v.id for v in victims)
        for v in victims:
            results[v.id] = _available(v, f"evicted (least recently used) to make room for {m.id}")
        results[m.id] = _available(m, f"loading once {names} unloaded", waiting=True)


def _victims(s: Snapshot, m: WantedModel, led: Ledger, results: dict[str, ModelPlacement],
             place: Place) -> list[WantedModel] | None:
    """The fewest least-recently-used evictable placed models whose memory lets m fit."""
    placed = [o for o in s.models if o.id != m.id and o.evictable and o.id in results
              and results[o.id].mode in ("solo", "split") and results[o.id].served_as is None]
    pool = sorted(placed, key=lambda o: o.lru_key)
    chosen: list[WantedModel] = []
    for v in pool:
        chosen.append(v)
        if _fits_without(s, m, led, chosen, results, place):
            break
    else:
        return None
    for v in reversed(chosen[:-1]):  # keep only the evictions it needs (oldest preferred)
        rest = [c for c in chosen if c is not v]
        if _fits_without(s, m, led, rest, results, place):
            chosen = rest
    return chosen


def _fits_without(s: Snapshot, m: WantedModel, led: Ledger, victims: list[WantedModel],
                  results: dict[str, ModelPlacement], place: Place) -> bool:
    trial = Ledger(dict(led.free), set(led.workers))
    for v in victims:
        for node, amount in model_commitments(results[v.id], s.headroom).items():
            trial.free[node] += amount
        trial.workers.difference_update(w.node_id for w in results[v.id].workers)
    return place(s, m, trial).mode != "unservable"


def _never(s: Snapshot, m: WantedModel, place: Place) -> ModelPlacement | None:
    """m's unservable placement when it fits nowhere even with every node's memory free."""
    empty = Ledger({c.node_id: c.memory_offered for c in s.members})
    placed = place(s, m, empty)
    return placed if placed.mode == "unservable" else None


def not_wanted(s: Snapshot, m: WantedModel, place: Place) -> ModelPlacement:
    never = _never(s, m, place)
    if never is not None:
        return never
    d = m.demand
    if d.age is None:
        return _available(m, "not requested yet (loads on the first request)")
    if d.keep == 0:
        return _available(m, "unloaded: the last request asked for keep_alive 0")
    return _available(m, f"idle: no request for {d.age} s (loads on the next request)")


def _available(m: WantedModel, reason: str, waiting: bool = False) -> ModelPlacement:
    return ModelPlacement(m.id, "available", m.backend, (), (), reason, None, m.memory_bytes,
                          waiting)
