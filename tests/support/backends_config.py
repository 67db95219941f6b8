"""Config for backend tests: one llama thread (2 shared cores), a small context."""

from __future__ import annotations

from pathlib import Path

from mesh_node.config.model import BackendsConfig, Config, LlamaConfig, NodeConfig


def backends_test_config(data_dir: Path, ctx_size: int = 512) -> Config:
    llama = LlamaConfig(threads=1, ctx_size=ctx_size)
    return Config(node=NodeConfig(name="backends-test", data_dir=data_dir),
                  backends=BackendsConfig(llama=llama))
