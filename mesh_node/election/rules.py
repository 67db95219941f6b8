"""Rules shared by the planner and its readers: needs, split shares, commitments, fallbacks.

A node's commitment to a model is derived from the placement alone (memory_bytes, headroom and
the weights), so the planner, the status page and the tests all count memory the same way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mesh_node.election.snapshot import Candidate, WantedModel
from mesh_node.records import ModelPlacement, Placement

_GIB = 1024**3
_MIB = 1024**2


@dataclass
class Ledger:
    """Free memory per node and RPC ports taken, as the plan assigns them (local to one plan)."""

    free: dict[str, int]
    workers: set[str] = field(default_factory=set)

    def take(self, nodes: Sequence[str], amounts: Sequence[int]) -> None:
        for node, amount in zip(nodes, amounts, strict=True):
            self.free[node] -= amount


def need_bytes(memory_bytes: int, headroom: float) -> int:
    """Memory a model needs with headroom (rounded up to a byte)."""
    return math.ceil(memory_bytes * headroom)


def fmt_bytes(n: int) -> str:
    """Human size for reasons: GiB with one decimal, MiB below 1 GiB."""
    if n >= _GIB:
        return f"{n / _GIB:.1f} GiB"
    return f"{n / _MIB:.0f} MiB"


def fmt_need(memory_bytes: int, headroom: float) -> str:
    """'1.3 GiB x1.1': the model's memory and the headroom factor."""
    return f"{fmt_bytes(memory_bytes)} x{headroom:g}"


def host_share(worker_weights: Sequence[float]) -> float:
    """The split host's own share: what the workers' weights leave."""
    return max(0.0, 1.0 - sum(worker_weights))


def split_weights(host_free: int, workers_free: Sequence[int]) -> tuple[float, ...]:
    """Worker weights proportional to the memory each offers the split (host share excluded)."""
    total = host_free + sum(workers_free)
    return tuple(w / total for w in workers_free) if total > 0 else tuple(0.0 for _ in workers_free)


def split_commitments(need: int, worker_weights: Sequence[float]) -> tuple[int, ...]:
    """Bytes the host (first) and each worker commit to a split of `need` bytes."""
    shares = (host_share(worker_weights), *worker_weights)
    return tuple(min(need, math.ceil(need * s)) for s in shares)


def model_commitments(p: ModelPlacement, headroom: float) -> dict[str, int]:
    """Bytes each node commits to one placement (nothing for served_as or unservable)."""
    if p.served_as is not None or p.mode in ("unservable", "available"):
        return {}
    need = need_bytes(p.memory_bytes, headroom)
    if p.mode == "solo":
        return {h: need for h in p.hosts}
    out: dict[str, int] = {}
    nodes = (p.hosts[0], *(w.node_id for w in p.workers))
    for node, b in zip(nodes, split_commitments(need, [w.weight for w in p.workers]), strict=True):
        out[node] = out.get(node, 0) + b
    return out


def node_commitments(placement: Placement, headroom: float) -> dict[str, int]:
    """Bytes each node commits across the whole placement."""
    out: dict[str, int] = {}
    for p in placement.models:
        for node, b in model_commitments(p, headroom).items():
            out[node] = out.get(node, 0) + b
    return out


def no_backend_reason(m: WantedModel, holders: Sequence[Candidate]) -> str:
    """Why nobody holding the file can run it: each holder's reported capability reason."""
    notes = [f"{c.label}: {r or 'unavailable'}" for c in holders
             for b, r in c.unavailable if b == m.backend]
    detail = f" ({'; '.join(notes)})" if notes else ""
    return f"no node with an available {m.backend} backend{detail}"


def served_as_fallback(m: WantedModel, models: Sequence[WantedModel],
                       results: Mapping[str, ModelPlacement]) -> ModelPlacement:
    """An unservable MLX model points at a placed llama export with the same key, if any
    (that export's own placement carries the memory: nothing is placed twice)."""
    own = results[m.id]
    if m.backend != "mlx" or own.mode != "unservable":
        return own
    alts = [results[o.id] for o in models if o.backend == "llama" and o.key == m.key]
    placed = [a for a in alts if a.mode in ("solo", "split")]
    if not placed:
        extra = "".join(f"; llama export {a.model} is unservable too: {a.reason}" for a in alts)
        return dataclasses.replace(own, reason=own.reason + extra)
    a = placed[0]
    why = f"{own.reason}; served as {a.model} (llama export with the same key {m.key}): {a.reason}"
    return ModelPlacement(m.id, a.mode, a.backend, a.hosts, a.workers, why, a.model,
                          a.memory_bytes)
