"""Tiny GGUF files for catalog tests, written with the real `gguf` writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter


def write_tiny_gguf(path: Path, *, arch: str = "llama", n_layers: int = 2, ctx: int = 256,
                    heads: int = 4, kv_heads: int = 2, embd: int = 64, file_type: int = 15,
                    n_tensor_elems: int = 1024) -> Path:
    """Write a valid GGUF with llama-style metadata and one f32 tensor; return path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(path), arch)
    w.add_block_count(n_layers)
    w.add_context_length(ctx)
    w.add_embedding_length(embd)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_file_type(file_type)
    w.add_tensor("token_embd.weight", np.ones(n_tensor_elems, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def truncate(path: Path, keep: int) -> Path:
    """Cut a file down to its first `keep` bytes (a partial download)."""
    data = path.read_bytes()[:keep]
    path.write_bytes(data)
    return path
