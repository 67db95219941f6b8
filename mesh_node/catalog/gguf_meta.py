"""GGUF header metadata (architecture, size, attention shape, quantization) via the `gguf` package.

Key names follow the GGUF spec (ggml/docs/gguf.md): `general.architecture`,
`{arch}.block_count`, `{arch}.context_length`, `{arch}.attention.head_count[_kv]`,
`{arch}.attention.key_length`, `{arch}.embedding_length`, `general.file_type`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFReader, LlamaFileType


class GgufError(Exception):
    """A GGUF file could not be read (truncated, bad magic, unsupported version)."""


@dataclass(frozen=True)
class GgufMeta:
    arch: str | None
    params: int | None
    n_layers: int | None
    ctx_len: int | None
    n_kv_heads: int | None
    head_dim: int | None
    quantization: str | None


def quant_name(file_type: int | None) -> str | None:
    """llama.cpp's file-type enum as its usual name (15 -> Q4_K_M, 1 -> F16)."""
    if file_type is None:
        return None
    try:
        name = LlamaFileType(file_type).name
    except ValueError:
        return f"type{file_type}"
    return {"ALL_F32": "F32", "GUESSED": None}.get(name, name.removeprefix("MOSTLY_"))


def _field(reader: GGUFReader, key: str) -> Any:
    f = reader.get_field(key)
    return None if f is None else f.contents()


def _int(v: Any) -> int | None:
    if isinstance(v, list):  # some archs store per-layer arrays (e.g. head_count_kv)
        v = max(v) if v else None
    return int(v) if v is not None else None


def _open(path: Path) -> GGUFReader:
    """Parse a GGUF file, checking every tensor's data lies inside the file."""
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, IndexError, OSError on bad input
        raise GgufError(f"unreadable GGUF (truncated or corrupt): {type(exc).__name__}: {exc}") from exc
    size = os.path.getsize(path)
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=reader.data_offset)
    if end > size:
        raise GgufError(f"truncated GGUF: tensor data ends at {end} bytes, file has {size}")
    return reader


def read_gguf(paths: list[Path]) -> GgufMeta:
    """Metadata of a model stored in one GGUF file or the ordered shards of a split one."""
    readers = [_open(p) for p in paths]
    first = readers[0]
    arch = _field(first, "general.architecture")
    pre = f"{arch}." if arch else ""
    n_head = _int(_field(first, pre + "attention.head_count"))
    n_kv = _int(_field(first, pre + "attention.head_count_kv")) or n_head
    head_dim = _int(_field(first, pre + "attention.key_length"))
    n_embd = _int(_field(first, pre + "embedding_length"))
    if head_dim is None and n_embd and n_head:
        head_dim = n_embd // n_head
    return GgufMeta(
        arch=str(arch) if arch else None,
        params=sum(t.n_elements for r in readers for t in r.tensors) or None,
        n_layers=_int(_field(first, pre + "block_count")),
        ctx_len=_int(_field(first, pre + "context_length")),
        n_kv_heads=n_kv,
        head_dim=head_dim,
        quantization=quant_name(_int(_field(first, "general.file_type"))),
    )
