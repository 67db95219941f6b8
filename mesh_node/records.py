"""The records nodes share: what each node can run, has, and serves.

These are plain frozen data. Gossip carries a node's `NodeState` as opaque msgpack bytes built
from `to_wire`; `records_wire.decode_state` is the one seam that turns bytes off the wire back
into these types, with bounds. Wire dicts use short stable keys; unknown keys are ignored so
newer nodes can add fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Backend = Literal["llama", "mlx"]
MemberStatus = Literal["alive", "suspect", "dead", "left"]


@dataclass(frozen=True)
class BackendCapability:
    """What one backend can do on one node."""

    name: str  # "llama" | "mlx"
    version: str
    formats: tuple[str, ...]  # ("gguf",) | ("mlx",)
    splittable: bool  # llama: True (RPC workers); mlx: False, never
    available: bool
    reason: str = ""  # why not available

    def to_wire(self) -> dict[str, Any]:
        return {
            "n": self.name, "v": self.version, "f": list(self.formats),
            "s": self.splittable, "a": self.available, "r": self.reason,
        }


@dataclass(frozen=True)
class ModelSummary:
    """One catalog entry as the mesh sees it."""

    id: str
    key: str  # comparison key (quantization/format collapsed)
    backend: str
    format: str
    size_bytes: int
    memory_bytes: int  # estimated to serve: weights + KV cache
    aliases: tuple[str, ...] = ()
    # issue 14: sha256 of the file (MLX: of its manifest), "" until computed in the background;
    # the same digest is the same model whatever its name (transfer/digest.py)
    digest: str = ""
    copied: bool = False  # a copy this node fetched from a peer into its model store

    def to_wire(self) -> dict[str, Any]:
        return {"i": self.id, "k": self.key, "b": self.backend, "f": self.format,
                "s": self.size_bytes, "m": self.memory_bytes, "a": list(self.aliases),
                "d": self.digest, "cp": self.copied}


@dataclass(frozen=True)
class Serving:
    """A role this node is carrying out right now, with readiness (routing trusts this)."""

    model: str
    role: Literal["host", "worker"]
    backend: str
    ready: bool
    port: int  # host: the node's API port serves it; worker: the RPC port
    state: str = ""  # starting | ready | failed: reason | retrying: reason | stopped
    # a split host names its workers and their tensor-split weights, so every node rebuilds the
    # same previous placement from gossip alone (incumbency of splits, not only of solos)
    workers: tuple[tuple[str, float], ...] = ()
    # wall-clock second the role became ready (0: not yet). Only a preference between two
    # incumbents of one model ("served longest wins"), never an order of protocol events:
    # every node reads the same number from the same record, so skew cannot split the mesh.
    ready_at: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"m": self.model, "r": self.role, "b": self.backend, "ok": self.ready,
                "p": self.port, "st": self.state, "w": [list(w) for w in self.workers],
                "ra": self.ready_at}


@dataclass(frozen=True)
class NodeState:
    """The state record each node publishes about itself (versioned by gossip).

    Only what changes with roles, catalog or config lives here: load, which changes with every
    request, travels beside it as an unversioned `Load` (records_wire.py), so a busy node does
    not make its peers pull this record over TCP once a second.
    """

    node_id: str
    name: str
    address: str  # mesh address (gossip, node-to-node HTTP, RPC workers)
    api_port: int
    gossip_port: int
    memory_offered: int
    memory_free: int
    capabilities: tuple[BackendCapability, ...] = ()
    catalog: tuple[ModelSummary, ...] = ()
    serving: tuple[Serving, ...] = ()
    version: str = ""
    rpc_port: int = 50052  # where this node's RPC worker listens when it is elected one
    pins: tuple[tuple[str, str], ...] = ()  # (model id/alias, node name-or-id) from config
    replicas: tuple[tuple[str, int], ...] = ()  # (model id/alias, replicas) from config
    headroom: float = 1.1  # this node's [election] headroom; the mesh plans with the largest
    far: tuple[str, ...] = ()  # peers this node measured beyond its [election] max_rtt_ms
    # demand-driven placement (election/demand.py): what this node's config says about idling
    preload: tuple[str, ...] = ()  # model ids/aliases its config preloads ([[models]] preload)
    idle: tuple[tuple[str, int], ...] = ()  # (model id/alias, idle_unload seconds) overrides
    idle_unload: int = 900  # its [election] idle_unload (s); the mesh uses the largest
    max_replicas: int = 8  # its [election] max_replicas; the mesh uses the smallest
    # issue 14: bytes this node can take into its model store now (0: it takes no copies), and
    # whether it serves its files to peers ([node] share_models)
    store_free: int = 0
    shares: bool = True

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.node_id, "n": self.name, "a": self.address, "ap": self.api_port,
            "gp": self.gossip_port, "mo": self.memory_offered, "mf": self.memory_free,
            "c": [c.to_wire() for c in self.capabilities],
            "cat": [m.to_wire() for m in self.catalog],
            "sv": [s.to_wire() for s in self.serving],
            "v": self.version, "rp": self.rpc_port,
            "pin": [list(p) for p in self.pins], "rep": [list(r) for r in self.replicas],
            "hr": self.headroom, "far": list(self.far),
            "pl": list(self.preload), "idl": [list(i) for i in self.idle],
            "iu": self.idle_unload, "mr": self.max_replicas,
            "sf": self.store_free, "sh": self.shares,
        }

    def capability(self, backend: str) -> BackendCapability | None:
        return next((c for c in self.capabilities if c.name == backend and c.available), None)


KEEP_DEFAULT = -2  # ModelDemand.keep: no request asked for a keep-alive; the idle window rules
KEEP_FOREVER = -1  # Ollama keep_alive < 0: keep it loaded until a request says otherwise


@dataclass(frozen=True)
class ModelDemand:
    """This node's client demand for one model (requests that entered the mesh here).

    Ages, never clock readings: the receiver plans with the number as published (quantised,
    election/demand.py), so every node reads the same value from the same bytes.
    """

    model: str
    inflight: int = 0  # client requests open now (waiting for a host or being answered)
    load: float = 0.0  # smoothed in-flight count (rises fast, falls slowly): drives replicas
    age: int = 0  # seconds since the last request began, quantised
    keep: int = KEEP_DEFAULT  # keep-alive (s) the last request asked for; KEEP_* otherwise

    def to_wire(self) -> list[Any]:
        return [self.model, self.inflight, self.load, self.age, self.keep]


@dataclass(frozen=True)
class Load:
    """A node's volatile load, gossiped outside the versioned state record."""

    inflight: int = 0
    demand: tuple[ModelDemand, ...] = ()  # per model, sorted by model id

    def to_wire(self) -> dict[str, Any]:
        return {"if": self.inflight, "d": [d.to_wire() for d in self.demand]}


def is_live(status: str) -> bool:
    """THE liveness rule, for the election, routing, /v1/models, status and metrics alike.

    A suspect is still a member: SWIM has not confirmed its death, and moving models or refusing
    routes on a suspicion would flap under packet loss (a refused connection fails fast and the
    router retries elsewhere).
    """
    return status in ("alive", "suspect")


@dataclass(frozen=True)
class MemberView:
    """One member as the local gossip view has it."""

    node_id: str
    status: MemberStatus
    incarnation: int
    address: str
    gossip_port: int
    state: NodeState | None  # None until its first valid state record arrives
    rtt_ms: float | None = None
    load: Load = Load()
    backed: bool = False  # suspect, and this node's own TCP probe of it failed too (gossip)

    @property
    def live(self) -> bool:
        return is_live(self.status)

    def serves(self, model: str) -> bool:
        """THE usable-host rule: a live member whose record says it hosts `model`, ready."""
        return self.live and self.state is not None and any(
            s.model == model and s.role == "host" and s.ready for s in self.state.serving)


@dataclass(frozen=True)
class WorkerAssignment:
    node_id: str
    address: str
    rpc_port: int
    weight: float  # tensor-split share, follows offered memory


@dataclass(frozen=True)
class ModelPlacement:
    model: str  # model id
    # available: wanted by nobody now, or waiting for memory (the reason says which)
    mode: Literal["solo", "split", "unservable", "available"]
    backend: str
    hosts: tuple[str, ...] = ()  # node ids; >1 when replicas
    workers: tuple[WorkerAssignment, ...] = ()
    reason: str = ""
    served_as: str | None = None  # id of the export actually served (an MLX model served via llama)
    memory_bytes: int = 0
    waiting: bool = False  # available, but a request waits for it (loading once memory frees)


@dataclass(frozen=True)
class Placement:
    models: tuple[ModelPlacement, ...] = field(default_factory=tuple)

    def for_model(self, model_id: str) -> ModelPlacement | None:
        return next((p for p in self.models if p.model == model_id), None)
