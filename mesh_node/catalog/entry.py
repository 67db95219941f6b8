"""`CatalogEntry`: one model this node has, and how to build one from files (never raises)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mesh_node import records
from mesh_node.catalog.gguf_meta import GgufError, read_gguf
from mesh_node.catalog.identity import comparison_key
from mesh_node.catalog.memory import estimate_memory
from mesh_node.catalog.mlx_meta import MlxMetaError, read_mlx


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    path: Path  # GGUF: the file (first shard of a split); MLX: the folder
    format: Literal["gguf", "mlx"]
    backend: Literal["llama", "mlx"]
    size_bytes: int
    memory_bytes: int
    quantization: str | None
    key: str
    aliases: tuple[str, ...] = ()
    arch: str | None = None
    n_layers: int | None = None
    ctx_len: int | None = None
    params: int | None = None
    error: str | None = None  # set when the model could not be read; such entries are not served
    chat_template: bool = True  # GGUF: the file carries tokenizer.chat_template
    digest: str = ""  # sha256 (transfer/digest.py), "" until computed or when not computable
    copied: bool = False  # fetched from a peer into this node's model store (evictable)

    def to_summary(self) -> records.ModelSummary:
        """The gossip-facing summary of this entry."""
        return records.ModelSummary(
            id=self.id, key=self.key, backend=self.backend, format=self.format,
            size_bytes=self.size_bytes, memory_bytes=self.memory_bytes, aliases=self.aliases,
            digest=self.digest, copied=self.copied,
        )


def _size(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        try:
            total += os.path.getsize(p)  # follows HF cache symlinks to the blob
        except OSError:
            pass
    return total


def gguf_entry(model_id: str, paths: list[Path], ctx: int, aliases: tuple[str, ...] = (),
               error: str | None = None) -> CatalogEntry:
    """Entry for one GGUF model (several paths: the ordered shards of a split file)."""
    size = _size(paths)
    base = CatalogEntry(
        id=model_id, path=paths[0], format="gguf", backend="llama", size_bytes=size,
        memory_bytes=estimate_memory(size, ctx, None, None, None), quantization=None,
        key=comparison_key(model_id), aliases=aliases, error=error,
    )
    if error is not None:
        return base
    try:
        meta = read_gguf(paths)
    except (GgufError, OSError) as exc:
        return replace(base, error=str(exc))
    return replace(
        base, arch=meta.arch, n_layers=meta.n_layers, ctx_len=meta.ctx_len, params=meta.params,
        quantization=meta.quantization, chat_template=meta.chat_template,
        memory_bytes=estimate_memory(size, ctx or meta.ctx_len or 0, meta.n_layers,
                                     meta.n_kv_heads, meta.head_dim),
    )


def mlx_entry(model_id: str, folder: Path, ctx: int,
              aliases: tuple[str, ...] = ()) -> CatalogEntry:
    """Entry for one MLX model folder."""
    size = _size(sorted(folder.glob("*.safetensors")))
    base = CatalogEntry(
        id=model_id, path=folder, format="mlx", backend="mlx", size_bytes=size,
        memory_bytes=estimate_memory(size, ctx, None, None, None), quantization=None,
        key=comparison_key(model_id), aliases=aliases,
    )
    try:
        meta = read_mlx(folder)
    except MlxMetaError as exc:
        return replace(base, error=str(exc))
    return replace(
        base, arch=meta.arch, n_layers=meta.n_layers, ctx_len=meta.ctx_len,
        quantization=meta.quantization,
        memory_bytes=estimate_memory(size, ctx or meta.ctx_len or 0, meta.n_layers,
                                     meta.n_kv_heads, meta.head_dim),
    )

