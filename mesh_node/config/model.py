"""Typed, frozen configuration objects. Loading and validation live in `load.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mesh_node.timing import DEFAULT_TIMINGS


@dataclass(frozen=True)
class NodeConfig:
    name: str
    data_dir: Path
    memory_bytes: int | None = None  # None: detected at start
    advertise_address: str | None = None  # None: first usable interface address
    interfaces: tuple[str, ...] = ()  # empty: all but loopback/docker/virtual bridges
    # issue 14, models travel: where copies fetched from peers go (None: data_dir/store), its
    # bound (None: only the disk's free space; copies the node made are evicted LRU past it),
    # and whether this node serves its own model files to peers
    model_store: Path | None = None
    max_store_bytes: int | None = None
    share_models: bool = True

    @property
    def store_dir(self) -> Path:
        """The model store: `model_store`, else `data_dir/store`."""
        return (self.model_store or self.data_dir / "store").expanduser()


@dataclass(frozen=True)
class MeshConfig:
    name: str = "default"
    secret: str | None = field(default=None, repr=False)
    secret_file: Path | None = None
    peers: tuple[str, ...] = ()  # static "host:port" gossip addresses
    mdns: bool = True
    gossip_port: int = 9338


@dataclass(frozen=True)
class ApiConfig:
    host: str = "0.0.0.0"  # a LAN daemon: reachable from the other machines
    port: int = 9337
    api_key: str | None = field(default=None, repr=False)
    max_body_bytes: int = 8 * 1024 * 1024
    ollama_port: int | None = None  # a second listener for the Ollama API (11434 by habit)
    # Client-facing HTTPS: a listener of its own on tls_port (the plain port stays: the mesh
    # forwards over it, sealed when the mesh has a secret)
    tls_cert: Path | None = None  # PEM certificate (chain)
    tls_key: Path | None = None  # its PEM private key; both or neither
    tls_port: int = 9443


@dataclass(frozen=True)
class LlamaConfig:
    server_bin: Path | None = None
    rpc_bin: Path | None = None
    threads: int | None = None  # None: all cores
    extra_args: tuple[str, ...] = ()
    ctx_size: int = 4096
    rpc_port: int = 50052


@dataclass(frozen=True)
class MlxConfig:
    server_bin: Path | None = None
    python: Path | None = None


@dataclass(frozen=True)
class BackendsConfig:
    llama: LlamaConfig = LlamaConfig()
    mlx: MlxConfig = MlxConfig()


@dataclass(frozen=True)
class ModelConfig:
    path: Path
    alias: str | None = None
    replicas: int = 1
    pin: str | None = None  # node name or id that must host it
    preload: bool = False  # load at start and keep loaded (evicted only after idle models)
    idle_unload: float | None = None  # s without a request before unloading; None: [election]


@dataclass(frozen=True)
class ElectionConfig:
    headroom: float = 1.1  # mesh-llm's rule: solo when memory >= 1.1x the model
    max_rtt_ms: float = 80.0  # RPC workers further away than this are skipped
    idle_unload: float = 900.0  # s without a request before a model is unloaded (15 min)
    load_timeout: float = DEFAULT_TIMINGS.load_timeout  # s a request waits for a model to load
    max_replicas: int = 8  # hosts load may add per model ([[models]] replicas is the floor)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"  # auto: console on a TTY, json otherwise


@dataclass(frozen=True)
class Config:
    node: NodeConfig
    mesh: MeshConfig = MeshConfig()
    api: ApiConfig = ApiConfig()
    backends: BackendsConfig = BackendsConfig()
    models: tuple[ModelConfig, ...] = ()
    model_dirs: tuple[Path, ...] = ()
    demo_model: bool = False  # serve the `demo` extra's Gemma 3 270M when it is installed
    scan_hf_cache: bool = True  # list the Hugging Face cache's models (they load on request)
    election: ElectionConfig = ElectionConfig()
    log: LogConfig = LogConfig()
    source: Path | None = None  # the file it came from, None for the embedded default
