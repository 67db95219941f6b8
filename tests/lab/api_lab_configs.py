"""Node TOML for the API lab: the lab defaults plus the Gemma demo model on chosen hosts.

    toml = apilab_node_toml("h1", tmp / "h1", demo=True, peers=[...], replicas=2)

A holder's data_dir gets the shared Gemma GGUF hard-linked where the demo loader looks for it
(data_dir/models/), so no node spends CPU assembling and hashing its own 253 MB copy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from lab_configs import LAB_SECRET, lab_node_toml

from tests.support.api_llama import gemma_gguf
from tests.support.tiny_mlx import make_tiny_mlx_model

APILAB_MLX = "tiny-mlx-llama"  # the MLX model's folder name, hence its model id
APILAB_THREADS = 1  # two shared cores: one decode thread per llama-server


def apilab_place_demo(data_dir: Path) -> Path:
    """Hard-link the demo GGUF into data_dir/models/ (catalog.demo's path); returns it."""
    src: Path = gemma_gguf()
    dest = data_dir / "models" / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        try:
            os.link(src, dest)
        except OSError:  # another filesystem: a symlink reads the same
            dest.symlink_to(src)
    return dest


def apilab_place_mlx(workdir: Path) -> Path:
    """A folder holding the tiny generated MLX model (made once per lab); for model_dirs."""
    folder = workdir / "mlx-models"
    if not (folder / APILAB_MLX / "model.safetensors").exists():
        make_tiny_mlx_model(folder / APILAB_MLX)
    return folder


def apilab_node_toml(name: str, data_dir: Path, *, demo: bool, peers: Sequence[str] = (),
                     replicas: int = 1, secret: str = LAB_SECRET, mlx_dir: Path | None = None,
                     api_key: str | None = None, ollama_port: int | None = None) -> str:
    """One API-lab node; a `demo` holder serves Gemma with 1 thread, `replicas` > 1 asks the
    mesh to host it on that many nodes (a [[models]] entry naming the demo file); `mlx_dir`
    (see apilab_place_mlx) makes it hold the tiny MLX model; `api_key` requires that key;
    `ollama_port` opens the Ollama listener there."""
    base: str = lab_node_toml(name, data_dir, secret=secret, peers=peers)
    if api_key is not None:
        base = base.replace("[api]\n", f"[api]\napi_key = {json.dumps(api_key)}\n", 1)
    if ollama_port is not None:
        base = base.replace("[api]\n", f"[api]\nollama_port = {ollama_port}\n", 1)
    if mlx_dir is not None:
        base = base.replace("model_dirs = []", f"model_dirs = [{json.dumps(str(mlx_dir))}]", 1)
        # the lab serves it from the start (models found in model_dirs load on request)
        base += f"\n[[models]]\npath = {json.dumps(str(mlx_dir / APILAB_MLX))}\npreload = true\n"
    if not demo:
        return base
    toml: str = base.replace("demo_model = false", "demo_model = true", 1)
    toml += f"\n[backends.llama]\nthreads = {APILAB_THREADS}\nctx_size = 2048\n"
    path = apilab_place_demo(data_dir)
    if replicas > 1:
        # no alias on purpose: the path alone must name the model for the election
        toml += f'\n[[models]]\npath = "{path}"\nreplicas = {replicas}\npreload = true\n'
    return toml
