"""GGUF header metadata (architecture, size, attention shape, quantization).

Layout and key names follow the GGUF spec (ggml/docs/gguf.md): magic, version, tensor count,
KV count, the KV pairs, the tensor infos, then aligned tensor data. Keys read:
`general.architecture`, `{arch}.block_count`, `{arch}.context_length`,
`{arch}.attention.head_count[_kv]`, `{arch}.attention.key_length`, `{arch}.embedding_length`,
`general.file_type`. The type tables come from the `gguf` package; the walk is our own because
`gguf.GGUFReader` builds a numpy array per vocabulary string: 28 s for Gemma 3's 262k-token
vocabulary on this machine, against well under a second for this skip-the-arrays walk.
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32  # GGUF spec: general.alignment defaults to 32


@functools.cache
def _gguf() -> Any:
    """The `gguf` package, imported at the first read: it brings numpy (~0.3 s of a node's
    start-up), and a node joins the mesh before it scans its catalog (issue 16)."""
    import gguf

    return gguf


@functools.cache
def _scalars() -> dict[Any, str]:
    t = _gguf().GGUFValueType
    return {t.UINT8: "<B", t.INT8: "<b", t.UINT16: "<H", t.INT16: "<h", t.UINT32: "<I",
            t.INT32: "<i", t.FLOAT32: "<f", t.BOOL: "<?", t.UINT64: "<Q", t.INT64: "<q",
            t.FLOAT64: "<d"}


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
    chat_template: bool = False  # tokenizer.chat_template present


@dataclass(frozen=True)
class _Header:
    kv: dict[str, Any]
    params: int


def quant_name(file_type: int | None) -> str | None:
    """llama.cpp's file-type enum as its usual name (15 -> Q4_K_M, 1 -> F16)."""
    if file_type is None:
        return None
    try:
        name = _gguf().LlamaFileType(file_type).name
    except ValueError:
        return f"type{file_type}"
    return {"ALL_F32": "F32", "GUESSED": None}.get(name, name.removeprefix("MOSTLY_"))


class _Cursor:
    """Little-endian reads over a buffer; IndexError-free: raises GgufError past the end."""

    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GgufError(f"truncated GGUF: header ends early at byte {self.pos}")
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return v

    def string(self, keep: bool = True) -> str:
        n = int(self.take("<Q"))
        if self.pos + n > len(self.buf):
            raise GgufError(f"truncated GGUF: string past end at byte {self.pos}")
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", "replace") if keep else ""
        self.pos += n
        return s

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype == _gguf().GGUFValueType.STRING:
            return self.string(keep)
        if vtype == _gguf().GGUFValueType.ARRAY:
            etype, count = int(self.take("<I")), int(self.take("<Q"))
            if etype in _scalars() and not keep:  # skip fixed-size arrays in one step
                self.pos += count * struct.calcsize(_scalars()[_gguf().GGUFValueType(etype)])
                return None
            items = [self.value(etype, keep) for _ in range(count)]
            return items if keep else None
        if vtype not in _scalars():
            raise GgufError(f"corrupt GGUF: unknown value type {vtype}")
        return self.take(_scalars()[_gguf().GGUFValueType(vtype)])


_GENERAL = frozenset({"general.architecture", "general.file_type", "general.alignment",
                      "tokenizer.chat_template"})
_PER_ARCH = (".block_count", ".context_length", ".embedding_length", ".attention.head_count",
             ".attention.head_count_kv", ".attention.key_length")


def _wanted(key: str) -> bool:
    """Keys we decode; everything else (the vocabulary above all) is skipped."""
    return key in _GENERAL or key.endswith(_PER_ARCH)


def _parse(buf: mmap.mmap | bytes, size: int) -> _Header:
    c = _Cursor(buf)
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise GgufError("not a GGUF file (bad magic)")
    c.pos = 4
    version = c.take("<I")
    if version not in (2, 3):
        raise GgufError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = c.take("<Q"), c.take("<Q")
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = c.string()
        vtype = int(c.take("<I"))
        val = c.value(vtype, keep=_wanted(key))
        if _wanted(key):
            kv[key] = val
    params, end = 0, 0
    for _ in range(n_tensors):
        c.string(keep=False)
        dims = [c.take("<Q") for _ in range(c.take("<I"))]
        ttype, offset = c.take("<I"), c.take("<Q")
        n = 1
        for d in dims:
            n *= d
        block, tsize = _gguf().GGML_QUANT_SIZES[_gguf().GGMLQuantizationType(ttype)]
        params, end = params + n, max(end, offset + n * tsize // block)
    align = int(kv.get("general.alignment") or DEFAULT_ALIGNMENT)
    data_start = -(-c.pos // align) * align
    if data_start + end > size:
        raise GgufError(f"truncated GGUF: tensor data ends at byte {data_start + end}, "
                        f"file has {size}")
    return _Header(kv, params)


def _read_header(path: Path) -> _Header:
    size = os.path.getsize(path)
    if size < 24:
        raise GgufError(f"truncated GGUF: {size} bytes")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            return _parse(buf, size)
        except (ValueError, KeyError, OverflowError, MemoryError, struct.error) as exc:
            raise GgufError(f"corrupt GGUF: {type(exc).__name__}: {exc}") from exc


def _int(v: Any) -> int | None:
    if isinstance(v, list):  # some archs store per-layer arrays (e.g. head_count_kv)
        v = max(v) if v else None
    return int(v) if v is not None else None


def read_gguf(paths: list[Path]) -> GgufMeta:
    """Metadata of a model stored in one GGUF file or the ordered shards of a split one."""
    headers = [_read_header(p) for p in paths]
    kv = headers[0].kv
    arch = kv.get("general.architecture")
    pre = f"{arch}." if arch else ""
    n_head = _int(kv.get(pre + "attention.head_count"))
    head_dim = _int(kv.get(pre + "attention.key_length"))
    n_embd = _int(kv.get(pre + "embedding_length"))
    if head_dim is None and n_embd and n_head:
        head_dim = n_embd // n_head
    return GgufMeta(
        arch=str(arch) if arch else None,
        params=sum(h.params for h in headers) or None,
        n_layers=_int(kv.get(pre + "block_count")),
        ctx_len=_int(kv.get(pre + "context_length")),
        n_kv_heads=_int(kv.get(pre + "attention.head_count_kv")) or n_head,
        head_dim=head_dim,
        quantization=quant_name(_int(kv.get("general.file_type"))),
        chat_template=bool(kv.get("tokenizer.chat_template")),
    )
