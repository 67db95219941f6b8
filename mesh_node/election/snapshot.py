"""The planner's input: live candidates, the models wanted, the previous placement (pure, frozen).

Everything is normalised here (members sorted by node id, models by id, catalogs and serving
sorted) so that `plan` is deterministic whatever order gossip delivered the records in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mesh_node.records import (
    MemberView,
    ModelPlacement,
    ModelSummary,
    NodeState,
    Placement,
    Serving,
)

DEFAULT_HEADROOM = 1.1  # mesh-llm's rule: solo when memory >= 1.1x the model
DEFAULT_MAX_RTT_MS = 80.0  # RPC workers further away than this are skipped


@dataclass(frozen=True)
class Candidate:
    """One live member as the planner sees it."""

    node_id: str
    name: str
    address: str
    memory_offered: int
    backends: tuple[str, ...] = ()  # available backend names, sorted
    splittable: tuple[str, ...] = ()  # available backends that can split (llama)
    unavailable: tuple[tuple[str, str], ...] = ()  # (backend, why not available)
    holds: tuple[str, ...] = ()  # model ids in its catalog (the file is on this node)
    serving: tuple[Serving, ...] = ()
    rtt_ms: float | None = None  # None: not measured (treated as near)
    rpc_port: int = 50052  # where its RPC worker listens (NodeState.rpc_port)

    @property
    def label(self) -> str:
        """The name operators know this node by."""
        return self.name or self.node_id

    def can_host(self, model: WantedModel) -> bool:
        """Has the file and an available backend for it."""
        return model.id in self.holds and model.backend in self.backends

    def can_work(self) -> bool:
        """Can run an llama RPC worker (which needs no model file)."""
        return "llama" in self.splittable

    def role_state(self, model_id: str, role: str) -> str | None:
        """The state of this node's serving record for (model, role), if any."""
        for s in self.serving:
            if s.model == model_id and s.role == role:
                return s.state or ("ready" if s.ready else "starting")
        return None

    def failed(self, model_id: str, role: str) -> bool:
        """The node reported a failure carrying out this role."""
        state = self.role_state(model_id, role)
        return state is not None and state.startswith("failed")

    def active(self, model_id: str, role: str) -> bool:
        """The node is starting or serving this role right now."""
        return self.role_state(model_id, role) in ("starting", "ready")


@dataclass(frozen=True)
class WantedModel:
    """One model the mesh should serve: the union of catalog entries with that id."""

    id: str
    key: str
    backend: str
    memory_bytes: int
    aliases: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()  # node names or ids it is pinned to, sorted
    replicas: int = 1


@dataclass(frozen=True)
class Snapshot:
    """Everything `plan` reads; normalised on construction."""

    members: tuple[Candidate, ...]
    models: tuple[WantedModel, ...]
    previous: Placement | None = None
    headroom: float = DEFAULT_HEADROOM
    max_rtt_ms: float = DEFAULT_MAX_RTT_MS

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(sorted(self.members, key=lambda c: c.node_id)))
        object.__setattr__(self, "models", tuple(sorted(self.models, key=lambda m: m.id)))

    def member(self, node_id: str) -> Candidate | None:
        """The live candidate with this id, if any."""
        return next((c for c in self.members if c.node_id == node_id), None)

    def _previous(self, model_id: str) -> ModelPlacement | None:
        prev = self.previous.for_model(model_id) if self.previous is not None else None
        return prev if prev is not None and prev.served_as is None else None

    def incumbent_hosts(self, model_id: str) -> set[str]:
        """Previous hosts of the model plus live nodes starting/serving it as host."""
        prev = self._previous(model_id)
        ids = set(prev.hosts) if prev is not None else set()
        return ids | {c.node_id for c in self.members if c.active(model_id, "host")}

    def incumbent_workers(self, model_id: str) -> set[str]:
        """Previous RPC workers of the model plus live nodes starting/serving as its worker."""
        prev = self._previous(model_id)
        ids = {w.node_id for w in prev.workers} if prev is not None else set()
        return ids | {c.node_id for c in self.members if c.active(model_id, "worker")}

    def pin_targets(self, model: WantedModel) -> list[Candidate]:
        """Live members the model is pinned to (by node id or name)."""
        return [c for c in self.members
                if c.node_id in model.pins or (c.name and c.name in model.pins)]


def candidate_from_state(state: NodeState, rtt_ms: float | None = None) -> Candidate:
    """Build a planner candidate from a gossiped node state."""
    caps = sorted(state.capabilities, key=lambda c: (c.name, c.available, c.reason))
    available = sorted({c.name for c in caps if c.available})
    splittable = sorted({c.name for c in caps if c.available and c.splittable})
    unavailable = sorted({(c.name, c.reason) for c in caps if c.name not in available})
    return Candidate(
        node_id=state.node_id, name=state.name, address=state.address,
        memory_offered=max(0, state.memory_offered),
        backends=tuple(available), splittable=tuple(splittable), unavailable=tuple(unavailable),
        holds=tuple(sorted({m.id for m in state.catalog})),
        serving=tuple(sorted(state.serving, key=lambda s: (s.model, s.role, s.state, s.port))),
        rtt_ms=rtt_ms, rpc_port=state.rpc_port,
    )


def _merge_entries(entries: list[ModelSummary]) -> WantedModel:
    # Nodes may estimate memory differently (context size): plan for the largest estimate.
    # Other fields come from the smallest entry so every node picks the same one.
    first = min(entries, key=lambda e: (e.backend, e.key, e.format))
    aliases = sorted({a for e in entries for a in e.aliases})
    memory = max(e.memory_bytes for e in entries)
    return WantedModel(first.id, first.key, first.backend, memory, tuple(aliases))


def _resolve(ref: str, models: Mapping[str, WantedModel]) -> list[str]:
    """Model ids a config reference (id or alias) names; the ref itself when nothing matches."""
    if ref in models:
        return [ref]
    by_alias = sorted(m.id for m in models.values() if ref in m.aliases)
    return by_alias or [ref]


def _placeholder(ref: str) -> WantedModel:
    # A pinned/replicated model no live node offers: still wanted, so it shows as unservable.
    return WantedModel(id=ref, key=ref, backend="", memory_bytes=0)


def wanted_models(states: Iterable[NodeState]) -> tuple[WantedModel, ...]:
    """Every model a live node offers, plus config pins and replicas."""
    states = list(states)
    grouped: dict[str, list[ModelSummary]] = {}
    for st in states:
        for entry in st.catalog:
            grouped.setdefault(entry.id, []).append(entry)
    models = {mid: _merge_entries(es) for mid, es in grouped.items()}
    pins: dict[str, set[str]] = {}
    replicas: dict[str, int] = {}
    for st in states:
        for ref, node in st.pins:
            for mid in _resolve(ref, models):
                pins.setdefault(mid, set()).add(node)
        for ref, count in st.replicas:
            for mid in _resolve(ref, models):
                replicas[mid] = max(replicas.get(mid, 1), count)
    for mid in sorted(set(pins) | set(replicas)):
        base = models.get(mid) or _placeholder(mid)
        models[mid] = WantedModel(base.id, base.key, base.backend, base.memory_bytes,
                                  base.aliases, tuple(sorted(pins.get(mid, ()))),
                                  max(1, replicas.get(mid, 1)))
    return tuple(models[k] for k in sorted(models))


def snapshot_from_states(
    states: Iterable[NodeState],
    rtt_ms: Mapping[str, float] | None = None,
    previous: Placement | None = None,
    headroom: float = DEFAULT_HEADROOM,
    max_rtt_ms: float = DEFAULT_MAX_RTT_MS,
) -> Snapshot:
    """Snapshot of the live members' states (the caller passes only alive members)."""
    rtts = rtt_ms or {}
    by_id: dict[str, NodeState] = {}
    # Duplicate ids should not happen; keep one chosen by content so every node agrees.
    for st in sorted(states, key=lambda s: (s.node_id, repr(candidate_from_state(s)))):
        by_id[st.node_id] = st
    live = list(by_id.values())
    members = tuple(candidate_from_state(s, rtts.get(s.node_id)) for s in live)
    return Snapshot(members, wanted_models(live), previous, headroom, max_rtt_ms)


def snapshot_from_members(
    views: Iterable[MemberView],
    previous: Placement | None = None,
    headroom: float = DEFAULT_HEADROOM,
    max_rtt_ms: float = DEFAULT_MAX_RTT_MS,
) -> Snapshot:
    """Snapshot of a gossip view: alive members with a state record; rtt from the view."""
    alive = [v for v in views if v.status == "alive" and v.state is not None]
    states = [v.state for v in alive if v.state is not None]
    rtts = {v.node_id: v.rtt_ms for v in alive if v.rtt_ms is not None}
    return snapshot_from_states(states, rtts, previous, headroom, max_rtt_ms)
