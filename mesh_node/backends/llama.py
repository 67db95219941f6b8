"""llama.cpp command builders: the host (`llama-server`, solo or split) and the RPC worker.

Device order for `--tensor-split` (llama.cpp src/llama.cpp, "add RPC servers at the front of
the list to minimize network transfers"): RPC devices first, in `--rpc` order, then local GPUs.
A CPU-only host is not an offload device at all: the layers it keeps are the ones *not*
offloaded, i.e. the first `n_layers + 1 - ngl` (llama-model.cpp: `i_gpu_start`). So the host's
own share is expressed through `-ngl`, and `--tensor-split` weighs the workers only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from mesh_node import records
from mesh_node.backends import binaries
from mesh_node.backends.supervisor import ChildSpec
from mesh_node.catalog.entry import CatalogEntry
from mesh_node.config.model import Config
from mesh_node.timing import DEFAULT_TIMINGS

ALL_LAYERS = 99  # llama.cpp's customary "offload everything" value
UNSAFE_BINDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


class BackendUnavailable(RuntimeError):
    """The backend's binary could not be resolved on this node."""


def _threads(config: Config) -> int:
    return config.backends.llama.threads or os.cpu_count() or 1


def _fmt(w: float) -> str:
    return f"{w:.4f}".rstrip("0").rstrip(".") or "0"


def split_args(workers: Sequence[records.WorkerAssignment], host_weight: float,
               n_layers: int | None) -> list[str]:
    """`--rpc`, `--tensor-split` and `-ngl` for a split; the host keeps `host_weight`'s share."""
    if not workers:
        return []
    total = sum(max(w.weight, 0.0) for w in workers)
    weights = [max(w.weight, 0.0) / total if total > 0 else 1.0 / len(workers) for w in workers]
    ngl = ALL_LAYERS
    if host_weight > 0 and n_layers and total > 0:
        offload = total / (total + host_weight)
        ngl = max(1, round((n_layers + 1) * offload))  # +1: the output layer counts as one
    return [
        "--rpc", ",".join(f"{w.address}:{w.rpc_port}" for w in workers),
        "--tensor-split", ",".join(_fmt(w) for w in weights),
        "-ngl", str(ngl),
    ]


# Jinja chat templates shipped with mesh-node, by architecture, for GGUF files that carry none
# (without one llama-server falls back to chatml, which Gemma answers with echoes of the
# prompt). Jinja, not llama.cpp's built-in template names: those run with --no-jinja, where
# a `tools` request fails ("tools param requires --jinja").
TEMPLATES = {"gemma": "gemma.jinja", "gemma2": "gemma.jinja", "gemma3": "gemma.jinja"}


def template_path(arch: str) -> Path:
    """The shipped template file for `arch` (a key of TEMPLATES)."""
    # package data is a plain file in every install we make (no zipped packages)
    return Path(str(files("mesh_node.backends").joinpath("templates", TEMPLATES[arch])))


def _template_args(entry: CatalogEntry) -> list[str]:
    if entry.chat_template or not entry.arch or entry.arch not in TEMPLATES:
        return []
    return ["--jinja", "--chat-template-file", str(template_path(entry.arch))]


def host_spec(entry: CatalogEntry, port: int, workers: Sequence[records.WorkerAssignment] = (),
              config: Config | None = None, *, host_weight: float = 0.0) -> ChildSpec:
    """llama-server for `entry` on 127.0.0.1:port, split over `workers` when given."""
    if config is None:
        raise TypeError("host_spec needs the node config")
    binary = binaries.llama_server(config)
    if binary is None:
        raise BackendUnavailable("llama-server not found")
    cfg = config.backends.llama
    argv = [
        str(binary.path), "--host", "127.0.0.1", "--port", str(port), "-m", str(entry.path),
        "--alias", entry.id, "-t", str(_threads(config)), "-c", str(cfg.ctx_size), "--metrics",
        *split_args(workers, host_weight, entry.n_layers), *_template_args(entry),
        *cfg.extra_args,
    ]
    return ChildSpec(
        name=f"llama-host:{entry.id}", argv=tuple(argv), env=binary.env,
        health_url=f"http://127.0.0.1:{port}/health",
        health_timeout=DEFAULT_TIMINGS.backend_health_timeout, restart=True,
    )


def worker_spec(bind_address: str, port: int, config: Config) -> ChildSpec:
    """The RPC worker bound to `bind_address` only (it has no authentication), cache on."""
    if bind_address.strip() in UNSAFE_BINDS:
        raise ValueError(f"refusing to bind the RPC worker to {bind_address!r}: it has no "
                         "authentication; bind it to the mesh address only")
    binary = binaries.rpc_server(config)
    if binary is None:
        raise BackendUnavailable("RPC worker (rpc-server / ggml-rpc-server) not found")
    argv = (str(binary.path), "-H", bind_address, "-p", str(port), "-t", str(_threads(config)), "-c")
    return ChildSpec(
        name=f"llama-worker:{port}", argv=argv, env=binary.env, health_url=None,
        health_tcp=(bind_address, port), health_timeout=30.0, restart=True,
    )
