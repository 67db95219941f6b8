"""The planner's input: live candidates, the models wanted, the previous placement (pure, frozen).

Everything the plan reads comes from the gossiped records of the live members, so every node
with the same view computes the same plan:
- the previous placement is rebuilt from the serving records (a split host names its workers
  and weights), ranked ready before starting, then longest serving, then node id;
- the headroom is the largest any live member asks for; "far" (round trip above a node's
  max_rtt_ms) is what the nodes themselves measured and published.
Everything is normalised here (members sorted by node id, models by id, catalogs and serving
sorted) so that `plan` is deterministic whatever order gossip delivered the records in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from mesh_node.election.demand import (
    DEFAULT_IDLE_UNLOAD,
    Demand,
    demanded,
    idle_windows,
    merge,
    remaining,
    replica_target,
)
from mesh_node.records import (
    KEEP_FOREVER,
    Load,
    MemberView,
    ModelPlacement,
    ModelSummary,
    NodeState,
    Placement,
    Serving,
    WorkerAssignment,
)

DEFAULT_HEADROOM = 1.1  # mesh-llm's rule: solo when memory >= 1.1x the model
DEFAULT_MAX_RTT_MS = 80.0  # RPC workers further away than this are skipped (config default)


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
    far: tuple[str, ...] = ()  # peers this node measured beyond its max_rtt_ms (sorted)
    rpc_port: int = 50052  # where its RPC worker listens (NodeState.rpc_port)
    llama_build: str = ""  # llama.cpp version line: the RPC protocol changes with the build
    copies: tuple[str, ...] = ()  # issue 14: model ids it holds as a copy fetched from a peer

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

    def near(self, other: Candidate) -> bool:
        """Neither node measured the other beyond its round-trip limit."""
        return other.node_id not in self.far and self.node_id not in other.far


@dataclass(frozen=True)
class WantedModel:
    """One model the mesh offers (the union of catalog entries with that id), and whether it
    is wanted now (election/demand.py): only wanted models are placed."""

    id: str
    key: str
    backend: str
    memory_bytes: int
    aliases: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()  # node names or ids it is pinned to, sorted
    replicas: int = 1  # hosts to place: the config floor, raised by load (demand.replica_target)
    wanted: bool = True
    preload: bool = False  # a config preloads it: evicted only after every idle model
    demand: Demand = Demand()
    window: int = DEFAULT_IDLE_UNLOAD  # its idle window (s), from the members' configs

    @property
    def expires_in(self) -> int | None:
        """Seconds until it idles out (None: never: pinned, preloaded or kept forever)."""
        if self.pins or self.preload:
            return None
        return remaining(self.demand, self.window)

    @property
    def evictable(self) -> bool:
        """May be unloaded to make room: not pinned, no request open."""
        return not self.pins and self.demand.inflight == 0

    @property
    def lru_key(self) -> tuple[bool, bool, int, str]:
        """Eviction order, first evicted first: idle before preloaded/kept-forever, then the
        oldest last request (never requested counts as oldest), then id."""
        d = self.demand
        lasting = self.preload or d.keep == KEEP_FOREVER
        return (lasting, d.keep == KEEP_FOREVER, -(d.age if d.age is not None else 1 << 62),
                self.id)


@dataclass(frozen=True)
class Snapshot:
    """Everything `plan` reads; normalised on construction."""

    members: tuple[Candidate, ...]
    models: tuple[WantedModel, ...]
    previous: Placement | None = None  # rebuilt from serving records by snapshot_from_states
    headroom: float = DEFAULT_HEADROOM

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


def candidate_from_state(state: NodeState) -> Candidate:
    """Build a planner candidate from a gossiped node state."""
    caps = sorted(state.capabilities, key=lambda c: (c.name, c.available, c.reason))
    available = sorted({c.name for c in caps if c.available})
    splittable = sorted({c.name for c in caps if c.available and c.splittable})
    unavailable = sorted({(c.name, c.reason) for c in caps if c.name not in available})
    llama = state.capability("llama")
    return Candidate(
        node_id=state.node_id, name=state.name, address=state.address,
        memory_offered=max(0, state.memory_offered),
        backends=tuple(available), splittable=tuple(splittable), unavailable=tuple(unavailable),
        holds=tuple(sorted({m.id for m in state.catalog})),
        serving=tuple(sorted(state.serving, key=lambda s: (s.model, s.role, s.state, s.port))),
        far=tuple(sorted(set(state.far))), rpc_port=state.rpc_port,
        llama_build=llama.version if llama is not None else "",
        copies=tuple(sorted({m.id for m in state.catalog if m.copied})),
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


def wanted_models(states: Iterable[NodeState], loads: Iterable[Load] = (),
                  previous: Placement | None = None) -> tuple[WantedModel, ...]:
    """Every model a live node offers (plus config pins and replicas), each marked wanted or
    not from the config (pins, preload) and the merged demand."""
    states = list(states)
    grouped: dict[str, list[ModelSummary]] = {}
    for st in states:
        for entry in st.catalog:
            grouped.setdefault(entry.id, []).append(entry)
    models = {mid: _merge_entries(es) for mid, es in grouped.items()}
    pins: dict[str, set[str]] = {}
    replicas: dict[str, int] = {}
    preload: set[str] = set()
    refs: dict[str, list[str]] = {}
    for st in states:
        for ref in {*(r for r, _ in st.pins), *(r for r, _ in st.replicas), *st.preload,
                    *(r for r, _ in st.idle)}:
            refs[ref] = _resolve(ref, models)
    for st in states:
        for ref, node in st.pins:
            for mid in refs[ref]:
                pins.setdefault(mid, set()).add(node)
        for ref, count in st.replicas:
            for mid in refs[ref]:
                replicas[mid] = max(replicas.get(mid, 1), count)
        for ref in st.preload:
            preload.update(mid for mid in refs[ref] if mid in models)
    for mid in sorted(set(pins) | set(replicas)):
        base = models.get(mid) or _placeholder(mid)
        models[mid] = replace(base, pins=tuple(sorted(pins.get(mid, ()))),
                              replicas=max(1, replicas.get(mid, 1)))
    demand = merge(loads)
    default_window, windows = idle_windows(states, refs)
    cap = min((st.max_replicas for st in states), default=1)
    out = []
    for mid in sorted(models):
        m, d = models[mid], demand.get(mid, Demand())
        window = windows.get(mid, default_window)
        wanted = bool(m.pins) or mid in preload or demanded(d, window)
        prev = previous.for_model(mid) if previous is not None else None
        current = len(prev.hosts) if prev is not None and prev.mode == "solo" else 0
        count = replica_target(m.replicas, cap, current, d.load) if wanted else m.replicas
        out.append(replace(m, replicas=count, wanted=wanted, preload=mid in preload, demand=d,
                           window=window))
    return tuple(out)


def _rank(c: Candidate, sv: Serving) -> tuple[bool, int, str]:
    """Incumbents of one model: ready before starting, then served longest, then node id."""
    return (not sv.ready, sv.ready_at if sv.ready_at > 0 else 1 << 62, c.node_id)


def previous_placement(members: Iterable[Candidate]) -> Placement:
    """The placement the mesh is carrying out now, from the live members' serving records."""
    by_id = {c.node_id: c for c in members}
    hosts: dict[str, list[tuple[tuple[bool, int, str], Candidate, Serving]]] = {}
    for c in by_id.values():
        for sv in c.serving:
            if sv.role == "host" and sv.state in ("starting", "ready"):
                hosts.setdefault(sv.model, []).append((_rank(c, sv), c, sv))
    out = []
    for model in sorted(hosts):
        ranked = sorted(hosts[model], key=lambda t: t[0])
        _, best, sv = ranked[0]
        if sv.workers:  # a split: the host's record names its workers and weights
            workers = tuple(WorkerAssignment(w, by_id[w].address if w in by_id else "",
                                             by_id[w].rpc_port if w in by_id else 0, wt)
                            for w, wt in sv.workers)
            out.append(ModelPlacement(model, "split", sv.backend, (best.node_id,), workers,
                                      "incumbent split"))
        else:
            solo = tuple(c.node_id for _, c, s in ranked if not s.workers)
            out.append(ModelPlacement(model, "solo", sv.backend, solo, (), "incumbent"))
    return Placement(tuple(out))


def snapshot_from_states(states: Iterable[NodeState], loads: Mapping[str, Load] | None = None
                         ) -> Snapshot:
    """Snapshot of the live members' states (the caller passes only live members) and their
    gossiped loads by node id (no loads: no demand; only pinned and preloaded models are
    wanted)."""
    by_id: dict[str, NodeState] = {}
    # Duplicate ids should not happen; keep one chosen by content so every node agrees.
    for st in sorted(states, key=lambda s: (s.node_id, repr(candidate_from_state(s)))):
        by_id[st.node_id] = st
    live = list(by_id.values())
    members = tuple(candidate_from_state(s) for s in live)
    headroom = max((s.headroom for s in live), default=DEFAULT_HEADROOM)
    previous = previous_placement(members)
    member_loads = [loads[n] for n in sorted(by_id) if loads is not None and n in loads]
    return Snapshot(members, wanted_models(live, member_loads, previous), previous, headroom)


def snapshot_from_members(views: Iterable[MemberView]) -> Snapshot:
    """Snapshot of a gossip view: live members (records.is_live) with a valid state record."""
    live = [v for v in views if v.live and v.state is not None]
    return snapshot_from_states((v.state for v in live if v.state is not None),
                                {v.node_id: v.load for v in live})
