"""Node TOML for lab hosts: no models and no demo (no llama-server on 2 shared cores), JSON logs.

    toml = lab_node_toml("h1", tmp / "h1", secret=LAB_SECRET, peers=["10.77.5.2:9338"])
    node = lab.host(1).start_node(toml, env=lab_node_env(tmp))

Only what a lab scenario varies is a parameter; everything else is the shipped default
(timings included: the lab measures what we claim).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

LAB_MESH = "lab-mesh"
LAB_SECRET = "lab-gossip-secret-0123456789"  # every node of a lab mesh uses it
LAB_WRONG_SECRET = "not-the-lab-secret-9876543210"
LAB_API_PORT = 9337
LAB_GOSSIP_PORT = 9338


def _q(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(value)


def lab_node_toml(name: str, data_dir: Path, *, secret: str | None = LAB_SECRET,
                  mdns: bool = True, peers: Sequence[str] = (), mesh: str = LAB_MESH,
                  api_port: int = LAB_API_PORT, gossip_port: int = LAB_GOSSIP_PORT,
                  memory_bytes: int = 8 << 30, log_level: str = "info") -> str:
    """The config of one lab node; `secret=None` makes an unauthenticated mesh."""
    lines = [
        "demo_model = false",
        "model_dirs = []",
        "",
        "[node]",
        f"name = {_q(name)}",
        f"data_dir = {_q(str(data_dir))}",
        # fixed, so the election sees the same offer on every host whatever the machine has
        f"memory_bytes = {memory_bytes}",
        "",
        "[mesh]",
        f"name = {_q(mesh)}",
        *([f"secret = {_q(secret)}"] if secret is not None else []),
        f"mdns = {'true' if mdns else 'false'}",
        f"peers = [{', '.join(_q(p) for p in peers)}]",
        f"gossip_port = {gossip_port}",
        "",
        "[api]",
        'host = "0.0.0.0"',
        f"port = {api_port}",
        "",
        "[log]",
        f"level = {_q(log_level)}",
        'format = "json"',
        "",
    ]
    return "\n".join(lines)


def lab_peer(address: str, gossip_port: int = LAB_GOSSIP_PORT) -> str:
    """A `[mesh] peers` entry for a lab host address."""
    return f"{address}:{gossip_port}"


def lab_node_env(workdir: Path) -> dict[str, str]:
    """Environment for lab nodes: an empty Hugging Face cache, so no model is ever found."""
    empty = workdir / "empty-hf-cache"
    empty.mkdir(parents=True, exist_ok=True)
    return {"HF_HUB_CACHE": str(empty), "HF_HOME": str(workdir / "empty-hf-home")}
