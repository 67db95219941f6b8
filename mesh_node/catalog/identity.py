"""Model identity: stable ids from paths, comparison keys that collapse quantization/format.

Pure: no filesystem access. A Hugging Face cache path
`.../models--Org--Name/snapshots/<hash>/file.gguf` becomes `Org/Name` (or `Org/Name/<stem>` when
the repo holds several GGUF quantizations); the snapshot hash never appears in an id. The
comparison key lets a llama export and an MLX export of one model meet:
`Qwen2.5-0.5B-Instruct-Q4_K_M` and `mlx-community/Qwen2.5-0.5B-Instruct-4bit` both become
`qwen2.5-0.5b-instruct`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePath
from typing import Protocol, TypeVar

# `name-00001-of-00003.gguf`: llama.cpp's gguf-split naming (examples/gguf-split).
SPLIT_RE = re.compile(r"^(?P<base>.+)-(?P<idx>\d{5})-of-(?P<total>\d{5})$")

# A token boundary: start/end or one of the separators used in model names.
_L = r"(?:^|(?<=[-_.\s]))"
_R = r"(?=$|[-_.\s])"
# Tokens that name a quantization or export format, not the model itself.
_DROP = [
    r"(?:ud-)?i?q[1-8](?:_[0-9a-z]{1,3}){0,3}",  # GGUF: Q4_K_M, q8_0, IQ3_XS, UD-Q4_K_XL, Q4_0_4_4
    r"tq[12]_0",  # ternary GGUF types
    r"[1-8]-?bits?",  # MLX: 4bit, 8bit, 4-bit
    r"b?f(?:p)?(?:16|32)|bfloat16|float16|float32|fp8",  # bf16, f16, fp16, f32 exports
    r"mxfp4|nvfp4|dwq|awq|gptq|int[48]|w[48]a16|mlx|gguf|ggml|imatrix|i1|hf",
]
_DROP_RE = re.compile(_L + "(?:" + "|".join(_DROP) + ")" + _R)
_SEP_RE = re.compile(r"[-_\s]+")


def _strip_ext(name: str) -> str:
    for ext in (".gguf", ".safetensors", ".bin"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def gguf_stem(filename: str) -> str:
    """File name without `.gguf` and without a `-0000k-of-0000n` split suffix."""
    stem = _strip_ext(filename)
    m = SPLIT_RE.match(stem)
    return m.group("base") if m else stem


def hf_repo_of(path: PurePath) -> tuple[str, PurePath] | None:
    """(`Org/Name`, snapshot dir) for a path inside an HF cache snapshot, else None."""
    parts = path.parts
    for i, part in enumerate(parts):
        if part.startswith("models--") and i + 2 < len(parts) and parts[i + 1] == "snapshots":
            repo = part[len("models--"):].replace("--", "/")
            return repo, PurePath(*parts[: i + 3])
    return None


def model_id_from_path(path: PurePath, *, several_ggufs: bool = False) -> str:
    """Stable id for a model file or folder; `several_ggufs`: its HF repo holds several GGUF models."""
    is_gguf = path.name.lower().endswith(".gguf")
    hf = hf_repo_of(path)
    if hf is not None:
        repo, _snapshot = hf
        if is_gguf and several_ggufs:
            return f"{repo}/{gguf_stem(path.name)}"
        return repo
    return gguf_stem(path.name) if is_gguf else path.name


def comparison_key(name: str) -> str:
    """Normalised name: no org prefix, quantization/format tokens, case or separator differences."""
    last = name.strip().rstrip("/").rsplit("/", 1)[-1]
    base = gguf_stem(last).lower()
    prev = None
    while prev != base:  # removing one token can expose another at the boundary
        prev = base
        base = _DROP_RE.sub("", base)
    base = _SEP_RE.sub("-", base)
    base = re.sub(r"-?\.-?", ".", base)  # "chat.-" after removing ".Q4_K_M" -> "chat."
    return base.strip("-.") or last.lower()


class Named(Protocol):
    """What `resolve` needs from a catalog entry."""

    @property
    def id(self) -> str: ...
    @property
    def aliases(self) -> tuple[str, ...]: ...
    @property
    def key(self) -> str: ...
    @property
    def error(self) -> str | None: ...


E = TypeVar("E", bound=Named)


def resolve(name: str, entries: Iterable[E]) -> E | None:
    """Entry named by exact id, else alias, else comparison key (usable entries first, then by id)."""
    items = list(entries)
    low, key = name.lower(), comparison_key(name)
    for rank in range(4):
        found = [e for e in items if _matches(e, name, low, key, rank)]
        if found:
            return min(found, key=_preference)
    return None


def _matches(e: Named, name: str, low: str, key: str, rank: int) -> bool:
    """Rank 0: exact id; 1: exact alias; 2: id/alias ignoring case; 3: comparison key."""
    if rank == 0:
        return e.id == name
    if rank == 1:
        return name in e.aliases
    if rank == 2:
        return e.id.lower() == low or low in (a.lower() for a in e.aliases)
    return e.key == key


def _preference(e: Named) -> tuple[bool, str]:
    return (e.error is not None, e.id)
