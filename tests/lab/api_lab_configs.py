"""Node TOML for the API lab: the lab defaults plus the Gemma demo model on chosen hosts.

    toml = apilab_node_toml("h1", tmp / "h1", demo=True, peers=[...], replicas=2)

A holder's data_dir gets the shared Gemma GGUF hard-linked where the demo loader looks for it
(data_dir/models/), so no node spends CPU assembling and hashing its own 253 MB copy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lab_configs import LAB_SECRET, lab_node_toml

from tests.support.api_llama import gemma_gguf

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


def apilab_node_toml(name: str, data_dir: Path, *, demo: bool, peers: Sequence[str] = (),
                     replicas: int = 1, secret: str = LAB_SECRET) -> str:
    """One API-lab node; a `demo` holder serves Gemma with 1 thread, `replicas` > 1 asks the
    mesh to host it on that many nodes (a [[models]] entry naming the demo file)."""
    base: str = lab_node_toml(name, data_dir, secret=secret, peers=peers)
    if not demo:
        return base
    toml: str = base.replace("demo_model = false", "demo_model = true", 1)
    toml += f"\n[backends.llama]\nthreads = {APILAB_THREADS}\nctx_size = 2048\n"
    path = apilab_place_demo(data_dir)
    if replicas > 1:
        # no alias on purpose: the path alone must name the model for the election
        toml += f'\n[[models]]\npath = "{path}"\nreplicas = {replicas}\n'
    return toml
