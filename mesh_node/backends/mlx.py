"""MLX command builder: `mlx_lm.server` for one model folder. MLX is solo-only, never split."""

from __future__ import annotations

from typing import Any, NoReturn

from mesh_node.backends import binaries
from mesh_node.backends.supervisor import ChildSpec
from mesh_node.catalog.entry import CatalogEntry
from mesh_node.config.model import Config
from mesh_node.timing import DEFAULT_TIMINGS


class SplitNotSupported(ValueError):
    """MLX has no tensor-split across machines; only llama.cpp models can be split."""


def host_spec(entry: CatalogEntry, port: int, config: Config) -> ChildSpec:
    """mlx_lm's server for the folder of `entry` on 127.0.0.1:port; health is /health."""
    argv = (*binaries.mlx_server_argv(config), "--model", str(entry.path),
            "--host", "127.0.0.1", "--port", str(port))
    return ChildSpec(
        name=f"mlx-host:{entry.id}", argv=argv,
        # /health, not /v1/models: the latter fails without an HF cache dir (FIELD-NOTES)
        health_url=f"http://127.0.0.1:{port}/health",
        health_timeout=DEFAULT_TIMINGS.backend_health_timeout, restart=True,
    )


def split_spec(entry: CatalogEntry, *_args: object, **_kwargs: object) -> NoReturn:
    """Always refuses: MLX models are served solo."""
    raise SplitNotSupported(
        f"model {entry.id!r} is an MLX model: the MLX backend cannot split a model over "
        "several nodes; serve it solo on one node with enough memory, or use a GGUF export "
        "with the llama backend to split it")


def rewrite_request_body(body: dict[str, Any], entry: CatalogEntry) -> dict[str, Any]:
    """Copy of an OpenAI request body whose `model` is the folder mlx_lm.server loaded."""
    # mlx_lm.server treats any other `model` value as a repo to fetch from Hugging Face
    return {**body, "model": str(entry.path)}
