"""plan(snapshot) -> Placement: which node hosts each model. Pure: no I/O, clock or randomness.

Rules, in order:
  1. keep   - each model whose previous placement is still valid (hosts alive, holding the file,
              not failed; workers alive, near, of the host's llama.cpp build and not failed;
              memory still fits) keeps it, so a serving incumbent is never moved by an
              unrelated change. A split stays a split. The previous placement is what the
              serving records say (snapshot.previous_placement): the same on every node.
  2. place  - every other model, and replicas still missing: solo on a holder that fits
              (preferring pin target, then incumbent, then most free memory, then id); else, for
              a splittable backend (llama), the best holder hosts and RPC workers are added by
              free memory (skipping those far from the host or of another llama.cpp build,
              whose RPC protocol differs) until the shares fit; else unservable.
  3. fallback - an unservable MLX model is served as a placed llama export with the same key.
Only wanted models are placed (election/demand.py: pinned, preloaded, or requested within their
idle window); the others are listed `available`, or `unservable` when they fit nowhere even on
an empty mesh. Between the passes, every role being left (a model no longer wanted, a dropped
replica) stays charged to its node until its serving record is gone, so nothing starts on top
of it. After them (`_make_room`), a wanted model left unplaced that fits an empty mesh waits
(`available`); if a request for it is open, the fewest least-recently-used evictable models
(no request open, not pinned; preloaded ones last) whose memory lets it fit are evicted: they
stop now and it is placed by a later plan, once their records are gone.
Models are visited pinned first, then those with requests open, then by memory descending,
then id, in both passes.

Free memory for planning is memory_offered minus what this plan has assigned so far, NOT the
gossiped memory_free: memory_free already subtracts what a node serves now, so counting it would
charge an incumbent twice for its own model and make it look full (and flap).

Split weights: WorkerAssignment.weight is each worker's share, in listed order; the host's own
share is `rules.host_share(weights)` (1 - sum). Shares follow the free memory each node offers
the split. Order them for `--tensor-split` as llama.cpp lists its devices (RPC devices first,
in `--rpc` order, then the host's local devices). One RPC port per node (NodeState.rpc_port):
a node is the RPC worker of at most one model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mesh_node.election import room
from mesh_node.election.moves import copy_can_solo
from mesh_node.election.rules import (
    Ledger,
    fmt_bytes,
    fmt_need,
    host_share,
    need_bytes,
    no_backend_reason,
    served_as_fallback,
    split_commitments,
    split_weights,
)
from mesh_node.election.snapshot import (
    Candidate,
    Snapshot,
    WantedModel,
    previous_placement,
    snapshot_from_members,
    snapshot_from_states,
)
from mesh_node.records import ModelPlacement, Placement, WorkerAssignment

__all__ = ["Snapshot", "plan", "plan_from_file", "previous_placement", "snapshot_from_members",
           "snapshot_from_states"]

_BACKEND_LABEL = {"mlx": "MLX", "llama": "llama.cpp"}


def plan(snapshot: Snapshot) -> Placement:
    """The placement of every offered model; same snapshot in, same placement out."""
    led = Ledger({c.node_id: c.memory_offered for c in snapshot.members})
    wanted = room.wanted(snapshot, _fresh)
    order = sorted(wanted, key=lambda m: (not m.pins, m.demand.inflight == 0, -m.memory_bytes,
                                          m.id))
    kept = {m.id: p for m in order if (p := _keep(snapshot, m, led)) is not None}
    room.charge_stopping(snapshot, led, kept)
    results = {m.id: _place(snapshot, m, led, kept.get(m.id)) for m in order}
    room.make_room(snapshot, led, order, results, _fresh)
    for m in wanted:
        results[m.id] = served_as_fallback(m, wanted, results)
    for m in snapshot.models:
        if m.id not in results:
            results[m.id] = room.not_wanted(snapshot, m, _fresh)
    return Placement(tuple(results[m.id] for m in snapshot.models))


def _fresh(s: Snapshot, m: WantedModel, led: Ledger) -> ModelPlacement:
    """m placed from scratch against `led` (the shape election/room.py tries placements in)."""
    return _place(s, m, led, None)


def plan_from_file(path: Path) -> dict[str, Any]:
    """Plan a snapshot file (`mesh-node plan --snapshot` looks here); see explain.py."""
    from mesh_node.election import explain  # explain imports this module: import at call time

    return explain.plan_from_file(path)


# --- pass 1: keep what still works -------------------------------------------------------------

def _previous(s: Snapshot, m: WantedModel) -> ModelPlacement | None:
    return s.previous.for_model(m.id) if s.previous is not None else None


def _keep(s: Snapshot, m: WantedModel, led: Ledger, check_pin: bool = True
          ) -> ModelPlacement | None:
    """The still-valid previous placement of m, reserved in the ledger; None to re-place it."""
    prev = _previous(s, m)
    if prev is None or prev.served_as is not None or prev.mode == "unservable":
        return None
    hosts = prev.hosts  # ranked: ready before starting, then served longest
    if check_pin and _pin_pending(s, m, hosts):
        return None
    if prev is not None and prev.mode == "split":
        if copy_can_solo(s, m, led.free):  # issue 14: the copy made to end this split landed
            return None
        return _keep_split(s, m, prev, led)
    return _keep_solo(s, m, hosts, led)


def _pin_pending(s: Snapshot, m: WantedModel, hosts: Sequence[str]) -> bool:
    """A pin target that could host m is not among its hosts: re-place so the pin can win."""
    need = need_bytes(m.memory_bytes, s.headroom)
    targets = [c for c in s.pin_targets(m) if c.can_host(m) and not c.failed(m.id, "host")]
    able = [c for c in targets if c.memory_offered >= need]
    return bool(able) and not any(c.node_id in hosts for c in able)


def _keep_solo(s: Snapshot, m: WantedModel, hosts: Sequence[str], led: Ledger
               ) -> ModelPlacement | None:
    need = need_bytes(m.memory_bytes, s.headroom)
    picks: list[tuple[Candidate, int]] = []
    pinned = {c.node_id for c in s.pin_targets(m)}
    for h in sorted(hosts, key=lambda h: h not in pinned):  # stable: pin targets first
        c = s.member(h)
        if c is None or not c.can_host(m) or c.failed(m.id, "host") or len(picks) >= m.replicas:
            continue
        if led.free[h] >= need:
            picks.append((c, led.free[h]))
            led.take([h], [need])
    if not picks:
        return None
    return _solo(m, picks, "kept solo on", s.headroom, incumbent=True)


def _keep_split(s: Snapshot, m: WantedModel, prev: ModelPlacement, led: Ledger
                ) -> ModelPlacement | None:
    host = s.member(prev.hosts[0]) if prev.hosts else None
    if host is None or not _can_split_host(m, host):
        return None
    workers = [s.member(w.node_id) for w in prev.workers]
    ok = [w for w in workers if w is not None and _worker_ok(s, m, w, host, led)]
    if len(ok) != len(workers) or len({w.node_id for w in ok}) != len(ok):
        return None
    weights = [w.weight for w in prev.workers]
    commits = split_commitments(need_bytes(m.memory_bytes, s.headroom), weights)
    nodes = [host.node_id, *(w.node_id for w in ok)]
    if any(led.free[n] < b for n, b in zip(nodes, commits, strict=True)):
        return None
    return _commit_split(s, m, host, ok, weights, led, "kept split (incumbent)", "")


# --- pass 2: place what is left ----------------------------------------------------------------

def _place(s: Snapshot, m: WantedModel, led: Ledger, kept: ModelPlacement | None
           ) -> ModelPlacement:
    """Place m (or top up its replicas) against the ledger; unservable with the reason."""
    if kept is not None and (kept.mode == "split" or len(kept.hosts) >= m.replicas):
        return kept
    holders = [c for c in s.members if m.id in c.holds]
    if not holders:
        return _unservable(m, "no live node has the file")
    able = [c for c in holders if m.backend in c.backends]
    if not able:
        return _unservable(m, no_backend_reason(m, holders))
    able = [c for c in able if not c.failed(m.id, "host")]
    if not able:
        failed = ", ".join(f"{c.label}: {c.role_state(m.id, 'host')}" for c in holders)
        return _unservable(m, f"hosting failed on every holder ({failed})")
    pin_ids, pin_note = _pin_status(s, m, able, led)
    if kept is None and not pin_ids and m.pins:
        # pass 1 left the incumbent for a pin that, as it turns out, cannot take the model now:
        # the incumbent stays (a fixed point), rather than a fresh choice that is no better
        kept = _keep(s, m, led, check_pin=False)
        if kept is not None and (kept.mode == "split" or len(kept.hosts) >= m.replicas):
            return _with_reason(kept, f"{pin_note}; {kept.reason}")
    placed = _place_solo(s, m, able, led, kept, pin_ids)
    if placed is None and any(m.backend in c.splittable for c in able):
        placed = _place_split(s, m, able, led, pin_ids)
    if placed is None:
        biggest = max(led.free[c.node_id] for c in able)
        label = _BACKEND_LABEL.get(m.backend, m.backend)
        placed = _unservable(m, f"{label} cannot split; needs {_needs(s, m)}, "
                                f"largest node offers {fmt_bytes(biggest)}")
    if pin_note and not set(placed.hosts) & pin_ids:
        placed = _with_reason(placed, f"{pin_note}; {placed.reason}")
    return placed


def _place_solo(s: Snapshot, m: WantedModel, able: list[Candidate], led: Ledger,
                kept: ModelPlacement | None, pin_ids: set[str]) -> ModelPlacement | None:
    need = need_bytes(m.memory_bytes, s.headroom)
    have = set(kept.hosts) if kept is not None else set()
    inc = s.incumbent_hosts(m.id)
    fits = [c for c in able if c.node_id not in have and led.free[c.node_id] >= need]
    fits.sort(key=lambda c: (c.node_id not in pin_ids, c.node_id not in inc,
                             -led.free[c.node_id], c.node_id))
    picks = []
    for c in fits[: m.replicas - len(have)]:
        picks.append((c, led.free[c.node_id]))
        led.take([c.node_id], [need])
    if kept is None and not picks:
        return None
    placed = kept
    if picks:
        fresh = _solo(m, picks, "fits solo on", s.headroom, incumbent=False)
        placed = fresh if kept is None else ModelPlacement(
            m.id, "solo", m.backend, tuple(sorted(kept.hosts + fresh.hosts)), (),
            f"{kept.reason}; {fresh.reason.replace('fits solo on', 'replica on', 1)}",
            None, m.memory_bytes)
    assert placed is not None
    if len(placed.hosts) < m.replicas:
        placed = _with_reason(placed, f"{placed.reason}; {len(placed.hosts)} of {m.replicas} "
                                      f"replicas: no other holder has {fmt_bytes(need)} free")
    return placed


def _place_split(s: Snapshot, m: WantedModel, able: list[Candidate], led: Ledger,
                 pin_ids: set[str]) -> ModelPlacement | None:
    """A split hosted by the first holder (pin, incumbent, most free, id) from which one fits;
    unservable with the first host's shortfall when none does."""
    need = need_bytes(m.memory_bytes, s.headroom)
    inc = s.incumbent_hosts(m.id)
    hosts = [c for c in able if _can_split_host(m, c) and led.free[c.node_id] > 0]
    if not hosts:
        return _unservable(m, f"split needs {_needs(s, m)}, the holders have no free memory")
    hosts.sort(key=lambda c: (c.node_id not in pin_ids, c.node_id not in inc,
                              -led.free[c.node_id], c.node_id))
    head = (f"no single node has {fmt_bytes(need)} free ({_needs(s, m)}; largest holder offers "
            f"{fmt_bytes(max(led.free[c.node_id] for c in able))})")
    first_short = ""
    for host in hosts:
        placed, short = _split_from(s, m, host, led, need, head)
        if placed is not None:
            return placed
        first_short = first_short or short
    return _unservable(m, first_short)


def _split_from(s: Snapshot, m: WantedModel, host: Candidate, led: Ledger, need: int,
                head: str) -> tuple[ModelPlacement | None, str]:
    """The split of m hosted on `host` with the fewest workers that fit, or why none fits."""
    prev_workers = s.incumbent_workers(m.id)
    near = [c for c in s.members if _worker_ok(s, m, c, host, led, check_link=False)
            and led.free[c.node_id] > 0]
    problems = {c.node_id: _link_problem(c, host) for c in near}
    pool = sorted((c for c in near if problems[c.node_id] is None),
                  key=lambda c: (c.node_id not in prev_workers, -led.free[c.node_id], c.node_id))
    skipped = "".join(f"; skipped {c.label} ({problems[c.node_id]})" for c in near
                      if problems[c.node_id] is not None)
    for n in range(1, len(pool) + 1):
        chosen = pool[:n]
        frees = [led.free[host.node_id], *(led.free[c.node_id] for c in chosen)]
        weights = list(split_weights(frees[0], frees[1:]))
        commits = split_commitments(need, weights)
        if all(b <= f for b, f in zip(commits, frees, strict=True)):
            return _commit_split(s, m, host, chosen, weights, led, f"{head}; split", skipped), ""
    offered = led.free[host.node_id] + sum(led.free[c.node_id] for c in pool)
    return None, (f"split needs {fmt_bytes(need)} ({_needs(s, m)}), "
                  f"the mesh offers {fmt_bytes(offered)}{skipped}")


# --- helpers -----------------------------------------------------------------------------------

def _can_split_host(m: WantedModel, c: Candidate) -> bool:
    return c.can_host(m) and m.backend in c.splittable and not c.failed(m.id, "host")


def _worker_ok(s: Snapshot, m: WantedModel, c: Candidate, host: Candidate, led: Ledger,
               check_link: bool = True) -> bool:
    """c can be an RPC worker of m's split hosted on host."""
    return (c.node_id != host.node_id and c.can_work() and not c.failed(m.id, "worker")
            and c.node_id not in led.workers
            and (not check_link or _link_problem(c, host) is None))


def _link_problem(c: Candidate, host: Candidate) -> str | None:
    """Why c cannot serve host's split over RPC (None when it can)."""
    if c.llama_build != host.llama_build:
        return f"llama.cpp build {c.llama_build or '?'}, host has {host.llama_build or '?'}"
    if not c.near(host):
        return f"round trip to {host.label} above the max_rtt_ms limit"
    return None


def _pin_status(s: Snapshot, m: WantedModel, able: list[Candidate], led: Ledger
                ) -> tuple[set[str], str]:
    """Pin targets that can host m now, and why the others cannot ('' when none is pinned)."""
    need = need_bytes(m.memory_bytes, s.headroom)
    matches = s.pin_targets(m)
    why = [f"{ref} is not a live member" for ref in m.pins
           if not any(ref in (c.node_id, c.name) for c in matches)]
    ids: set[str] = set()
    for c in matches:
        if c not in able:
            why.append(f"{c.label} cannot host it (no file, no available {m.backend}, or failed)")
        elif led.free[c.node_id] < need:
            why.append(f"{c.label} has {fmt_bytes(led.free[c.node_id])} free, "
                       f"needs {fmt_bytes(need)}")
        else:
            ids.add(c.node_id)
    note = f"pin to {', '.join(m.pins)} not honoured: {'; '.join(why)}" if m.pins else ""
    return ids, note


def _needs(s: Snapshot, m: WantedModel) -> str:
    return fmt_need(m.memory_bytes, s.headroom)


def _label(s: Snapshot, node_id: str) -> str:
    c = s.member(node_id)
    return c.label if c is not None else node_id


def _solo(m: WantedModel, picks: list[tuple[Candidate, int]], verb: str, headroom: float,
          incumbent: bool) -> ModelPlacement:
    first, free = picks[0]
    tag = "incumbent; " if incumbent else ""
    reason = f"{verb} {first.label} ({tag}needs {fmt_need(m.memory_bytes, headroom)}, " \
             f"{fmt_bytes(free)} free)"
    reason += "".join(f"; replica on {c.label} ({fmt_bytes(f)} free)" for c, f in picks[1:])
    # replicas are a set: one canonical order, whichever pass chose them (a fixed point)
    hosts = tuple(sorted(c.node_id for c, _ in picks))
    return ModelPlacement(m.id, "solo", m.backend, hosts, (), reason, None, m.memory_bytes)


def _commit_split(s: Snapshot, m: WantedModel, host: Candidate, workers: Sequence[Candidate],
                  weights: Sequence[float], led: Ledger, head: str, tail: str) -> ModelPlacement:
    """Reserve a split's shares in the ledger and build its placement (reason names shares)."""
    commits = split_commitments(need_bytes(m.memory_bytes, s.headroom), weights)
    led.take([host.node_id, *(w.node_id for w in workers)], commits)
    led.workers.update(w.node_id for w in workers)
    assigned = tuple(WorkerAssignment(w.node_id, w.address, w.rpc_port, wt)
                     for w, wt in zip(workers, weights, strict=True))
    parts = [f"{c.label} {fmt_bytes(b)} ({100 * wt:.0f}%)" for c, b, wt in
             zip((host, *workers), commits, (host_share(weights), *weights), strict=True)]
    reason = f"{head}: host {parts[0]}, workers {', '.join(parts[1:])}{tail}"
    return ModelPlacement(m.id, "split", m.backend, (host.node_id,), assigned, reason,
                          None, m.memory_bytes)


def _unservable(m: WantedModel, reason: str) -> ModelPlacement:
    return ModelPlacement(m.id, "unservable", m.backend, (), (), reason, None, m.memory_bytes)


def _with_reason(p: ModelPlacement, reason: str) -> ModelPlacement:
    return dataclasses.replace(p, reason=reason)
