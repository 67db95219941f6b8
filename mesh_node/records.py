"""The records nodes share: what each node can run, has, and serves.

These are plain frozen data. Gossip carries a node's `NodeState` as an opaque msgpack-able
dict (`to_wire`/`from_wire`); the election reads them; the API and status render them.
Wire dicts use short stable keys; unknown keys are ignored so newer nodes can add fields.
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

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> BackendCapability:
        return cls(str(d["n"]), str(d.get("v", "")), tuple(d.get("f", ())), bool(d.get("s")),
                   bool(d.get("a")), str(d.get("r", "")))


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

    def to_wire(self) -> dict[str, Any]:
        return {"i": self.id, "k": self.key, "b": self.backend, "f": self.format,
                "s": self.size_bytes, "m": self.memory_bytes, "a": list(self.aliases)}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ModelSummary:
        return cls(str(d["i"]), str(d["k"]), str(d["b"]), str(d["f"]), int(d["s"]), int(d["m"]),
                   tuple(d.get("a", ())))


@dataclass(frozen=True)
class Serving:
    """A role this node is carrying out right now, with readiness (routing trusts this)."""

    model: str
    role: Literal["host", "worker"]
    backend: str
    ready: bool
    port: int  # host: the node's API port serves it; worker: the RPC port
    state: str = ""  # starting | ready | failed: reason | stopped

    def to_wire(self) -> dict[str, Any]:
        return {"m": self.model, "r": self.role, "b": self.backend, "ok": self.ready,
                "p": self.port, "st": self.state}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Serving:
        role: Literal["host", "worker"] = "worker" if d.get("r") == "worker" else "host"
        return cls(str(d["m"]), role, str(d.get("b", "")), bool(d.get("ok")), int(d.get("p", 0)),
                   str(d.get("st", "")))


@dataclass(frozen=True)
class NodeState:
    """The state record each node publishes about itself (versioned by gossip)."""

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
    inflight: int = 0
    version: str = ""
    rpc_port: int = 50052  # where this node's RPC worker listens when it is elected one
    pins: tuple[tuple[str, str], ...] = ()  # (model id/alias, node name-or-id) from config
    replicas: tuple[tuple[str, int], ...] = ()  # (model id/alias, replicas) from config

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.node_id, "n": self.name, "a": self.address, "ap": self.api_port,
            "gp": self.gossip_port, "mo": self.memory_offered, "mf": self.memory_free,
            "c": [c.to_wire() for c in self.capabilities],
            "cat": [m.to_wire() for m in self.catalog],
            "sv": [s.to_wire() for s in self.serving],
            "if": self.inflight, "v": self.version, "rp": self.rpc_port,
            "pin": [list(p) for p in self.pins], "rep": [list(r) for r in self.replicas],
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> NodeState:
        return cls(
            node_id=str(d["id"]), name=str(d.get("n", "")), address=str(d.get("a", "")),
            api_port=int(d.get("ap", 0)), gossip_port=int(d.get("gp", 0)),
            memory_offered=int(d.get("mo", 0)), memory_free=int(d.get("mf", 0)),
            capabilities=tuple(BackendCapability.from_wire(x) for x in d.get("c", ())),
            catalog=tuple(ModelSummary.from_wire(x) for x in d.get("cat", ())),
            serving=tuple(Serving.from_wire(x) for x in d.get("sv", ())),
            inflight=int(d.get("if", 0)), version=str(d.get("v", "")),
            rpc_port=int(d.get("rp", 50052)),
            pins=tuple((str(a), str(b)) for a, b in d.get("pin", ())),
            replicas=tuple((str(a), int(b)) for a, b in d.get("rep", ())),
        )

    def capability(self, backend: str) -> BackendCapability | None:
        return next((c for c in self.capabilities if c.name == backend and c.available), None)


@dataclass(frozen=True)
class MemberView:
    """One member as the local gossip view has it."""

    node_id: str
    status: MemberStatus
    incarnation: int
    address: str
    gossip_port: int
    state: NodeState | None  # None until its first state record arrives
    rtt_ms: float | None = None


@dataclass(frozen=True)
class WorkerAssignment:
    node_id: str
    address: str
    rpc_port: int
    weight: float  # tensor-split share, follows offered memory


@dataclass(frozen=True)
class ModelPlacement:
    model: str  # model id
    mode: Literal["solo", "split", "unservable"]
    backend: str
    hosts: tuple[str, ...] = ()  # node ids; >1 when replicas
    workers: tuple[WorkerAssignment, ...] = ()
    reason: str = ""
    served_as: str | None = None  # id of the export actually served (an MLX model served via llama)
    memory_bytes: int = 0


@dataclass(frozen=True)
class Placement:
    models: tuple[ModelPlacement, ...] = field(default_factory=tuple)

    def for_model(self, model_id: str) -> ModelPlacement | None:
        return next((p for p in self.models if p.model == model_id), None)
