"""`BackendChildren`: the election's `ChildControl` over the backend supervisor.

Translates roles into child processes (llama-server / mlx_lm.server as host, the llama RPC
worker) and child states into the `Serving` records this node publishes through gossip.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from mesh_node.backends import llama, mlx
from mesh_node.backends.supervisor import ChildSpec, Supervisor
from mesh_node.catalog.entry import CatalogEntry
from mesh_node.config.model import Config
from mesh_node.election.roles import HostRole
from mesh_node.records import Serving
from mesh_node.timing import DEFAULT_TIMINGS, Timings

log = structlog.get_logger("mesh_node.children")


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on `host` (the backend binds it a moment later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class _Host:
    key: object
    child: str
    port: int
    entry: CatalogEntry
    backend: str
    failed: str = ""  # set when the child could not even be built (binary missing)
    workers: tuple[tuple[str, float], ...] = ()  # a split's RPC workers and weights
    ready_at: int = 0  # wall second it first became ready (incumbent rank), 0 before

    @property
    def split(self) -> bool:
        return bool(self.workers)

    def published(self, state: str) -> str:
        """The state gossiped for this host. A split host fails whenever one of its RPC
        workers vanishes; that is the worker's failure, which gossip reports by itself, so
        the host says `retrying` (neither incumbent nor failed) instead of disqualifying a
        healthy holder of the file for the failure cool-down."""
        if self.split and state.startswith("failed"):
            return "retrying: " + state.removeprefix("failed: ")
        return state


class BackendChildren:
    """Idempotent start/stop of this node's backend children."""

    def __init__(self, supervisor: Supervisor, config: Config, address: str,
                 on_change: Callable[[], None], timings: Timings = DEFAULT_TIMINGS) -> None:
        self._timings = timings
        self._sup = supervisor
        self._config = config
        self._address = address
        self._on_change = on_change
        self._hosts: dict[str, _Host] = {}
        self._worker: str | None = None
        self._worker_models: tuple[str, ...] = ()
        self._worker_failed = ""
        # model -> (state, until): a host that failed keeps saying so for a while after its
        # role ends, so the planner (which trusts serving records) does not hand it back at once
        self._failed: dict[str, tuple[str, float]] = {}

    def hosted(self) -> set[str]:
        return set(self._hosts)

    def _spec(self, role: HostRole, entry: CatalogEntry, port: int) -> ChildSpec:
        if entry.backend == "mlx":
            if role.workers:
                mlx.split_spec(entry)  # raises SplitNotSupported: MLX never splits
            return mlx.host_spec(entry, port, self._config)
        host_weight = max(0.0, 1.0 - sum(w.weight for w in role.workers))
        return llama.host_spec(entry, port, role.workers, self._config, host_weight=host_weight)

    async def ensure_host(self, role: HostRole, entry: CatalogEntry) -> None:
        cur = self._hosts.get(role.model)
        if cur is not None and cur.key == role.key:
            return
        if cur is not None:
            await self.stop_host(role.model)
        port = free_port()
        try:
            spec = self._spec(role, entry, port)
        except Exception as exc:  # binary missing, MLX split refused: report, never crash
            log.error("backend_start_refused", model=role.model, error=str(exc))
            self._hosts[role.model] = _Host(role.key, "", port, entry, entry.backend,
                                            failed=f"failed: {exc}")
            self._on_change()
            return
        log.info("backend_starting", model=role.model, backend=entry.backend, port=port,
                 workers=[f"{w.address}:{w.rpc_port}" for w in role.workers])
        self._hosts[role.model] = _Host(role.key, spec.name, port, entry, entry.backend,
                                        workers=tuple((w.node_id, w.weight)
                                                      for w in role.workers))
        await self._sup.start(spec)
        self._on_change()

    async def stop_host(self, model: str) -> None:
        cur = self._hosts.pop(model, None)
        if cur is not None:
            state = cur.published(cur.failed or self._child_state(cur.child))
            if state.startswith("failed"):
                self._failed[model] = (state, time.monotonic() + self._timings.failed_cooldown)
        if cur is not None and cur.child:
            log.info("backend_stopping", model=model)
            await self._sup.stop(cur.child)
        self._on_change()

    async def ensure_worker(self, models: tuple[str, ...]) -> None:
        if self._worker is not None or self._worker_failed:
            if models != self._worker_models:
                self._worker_models = models
                self._on_change()
            return
        self._worker_models = models
        port = self._config.backends.llama.rpc_port
        try:
            spec = llama.worker_spec(self._address, port, self._config)
        except Exception as exc:
            log.error("rpc_worker_refused", error=str(exc))
            self._worker_failed = f"failed: {exc}"
            self._on_change()
            return
        log.info("rpc_worker_starting", bind=f"{self._address}:{port}", models=list(models))
        self._worker = spec.name
        await self._sup.start(spec)
        self._on_change()

    async def stop_worker(self) -> None:
        self._worker_models = ()
        self._worker_failed = ""
        if self._worker is not None:
            name, self._worker = self._worker, None
            log.info("rpc_worker_stopping")
            await self._sup.stop(name)
            self._on_change()

    def _child_state(self, name: str) -> str:
        try:
            return str(self._sup.state(name))
        except KeyError:
            return "stopped"

    def serving(self) -> tuple[Serving, ...]:
        """The roles this node carries out now, with readiness, for gossip."""
        out = []
        api_port = self._config.api.port
        for model, h in sorted(self._hosts.items()):
            state = h.published(h.failed or self._child_state(h.child))
            if state == "ready" and not h.ready_at:
                h.ready_at = int(time.time())
            out.append(Serving(model, "host", h.backend, state == "ready", api_port, state,
                               h.workers, h.ready_at if state == "ready" else 0))
        now = time.monotonic()
        for model, (state, until) in sorted(self._failed.items()):
            if until <= now:
                del self._failed[model]
            elif model not in self._hosts:
                out.append(Serving(model, "host", "", False, api_port, state))
        if self._worker_models:
            state = self._worker_failed or (self._child_state(self._worker) if self._worker
                                            else "stopped")
            rpc_port = self._config.backends.llama.rpc_port
            out.extend(Serving(m, "worker", "llama", state == "ready", rpc_port, state)
                       for m in self._worker_models)
        return tuple(out)

    def local_backends(self) -> dict[str, tuple[int, str | None]]:
        """Ready local hosts: model id -> (loopback port, MLX rewrite path or None)."""
        out: dict[str, tuple[int, str | None]] = {}
        for model, h in self._hosts.items():
            if not h.failed and self._child_state(h.child) == "ready":
                out[model] = (h.port, str(h.entry.path) if h.backend == "mlx" else None)
        return out
