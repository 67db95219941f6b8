"""Targets: a local backend started through the supervisor, or a running server / mesh node.

Local backends reuse the node's own command builders (`llama.host_spec`, `mlx.host_spec`)
and `Supervisor`, without restarts: a crash during a benchmark is a result, not something to
hide. Startup seconds run from the spawn to the first 200 from /health.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import trio

from mesh_node.backends import llama, mlx
from mesh_node.backends.supervisor import ChildSpec, Supervisor
from mesh_node.bench.runner import Endpoint, chat_url
from mesh_node.bench.spec import Settings, Target
from mesh_node.catalog.entry import CatalogEntry, gguf_entry, mlx_entry
from mesh_node.catalog.identity import model_id_from_path
from mesh_node.config.model import BackendsConfig, Config, LlamaConfig, NodeConfig


class TargetError(RuntimeError):
    """A target could not be prepared or started; the message says why."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_config(settings: Settings, threads: int | None, data_dir: Path) -> Config:
    """The node config the command builders need: threads and context for llama."""
    llama_cfg = LlamaConfig(threads=threads or settings.threads, ctx_size=settings.ctx_size)
    return Config(node=NodeConfig(name="bench", data_dir=data_dir),
                  backends=BackendsConfig(llama=llama_cfg))


def local_entry(target: Target, ctx: int) -> CatalogEntry:
    """The catalog entry of a local model file/folder; TargetError when it cannot be read."""
    path = Path(target.model).expanduser()
    if target.kind == "llama":
        if not path.is_file():
            raise TargetError(f"{target.name}: {path} is not a file (want a .gguf)")
        entry = gguf_entry(model_id_from_path(path), [path], ctx)
    else:
        if not path.is_dir():
            raise TargetError(f"{target.name}: {path} is not a folder (want an MLX model folder)")
        entry = mlx_entry(model_id_from_path(path), path, ctx)
    if entry.error is not None:
        raise TargetError(f"{target.name}: cannot read {path}: {entry.error}")
    return entry


def child_spec(target: Target, entry: CatalogEntry, port: int, config: Config,
               settings: Settings) -> tuple[ChildSpec, str]:
    """(supervisor spec without restarts, the `model` value requests must carry)."""
    try:
        if target.kind == "llama":
            spec, model = llama.host_spec(entry, port, config=config), entry.id
        else:
            # mlx_lm.server takes any other `model` as a Hugging Face repo to fetch
            spec, model = mlx.host_spec(entry, port, config), str(entry.path)
    except llama.BackendUnavailable as exc:
        raise TargetError(f"{target.name}: {exc} (pip install -e '.[llama]')") from exc
    return replace(spec, restart=False, health_timeout=settings.startup_timeout), model


@asynccontextmanager
async def open_target(target: Target, settings: Settings, supervisor: Supervisor,
                      data_dir: Path) -> AsyncIterator[Endpoint]:
    """Yield the endpoint of `target`; a local backend is started first and stopped after."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    if target.kind in ("url", "mesh"):
        assert target.url is not None  # parse_target guarantees it
        yield Endpoint(target.name, chat_url(target.url), target.model, headers)
        return
    entry = local_entry(target, settings.ctx_size)
    port = free_port()
    spec, model = child_spec(target, entry, port, bench_config(settings, target.threads, data_dir),
                             settings)
    t0 = trio.current_time()
    child = await supervisor.start(spec)
    try:
        with trio.fail_after(settings.startup_timeout + 10):  # the health watch fails it first
            state = await child.wait_ready()
        if state.status != "ready":
            raise TargetError(f"{target.name}: backend did not start: {state}")
        startup = trio.current_time() - t0
        yield Endpoint(target.name, f"http://127.0.0.1:{port}/v1/chat/completions", model,
                       headers, startup_s=startup)
    finally:
        with trio.CancelScope(shield=True):
            await supervisor.stop(spec.name)
