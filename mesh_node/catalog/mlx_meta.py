"""MLX model folder metadata: `config.json` (Hugging Face layout) plus its safetensors files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MlxMetaError(Exception):
    """An MLX folder's config could not be read."""


@dataclass(frozen=True)
class MlxMeta:
    arch: str | None
    n_layers: int | None
    ctx_len: int | None
    n_kv_heads: int | None
    head_dim: int | None
    quantization: str | None


_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


def is_mlx_dir(path: Path) -> bool:
    """A folder holding `config.json` and at least one `*.safetensors` file."""
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _opt_int(cfg: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int):
            return v
    return None


def read_mlx(path: Path) -> MlxMeta:
    """Read `config.json`; raise MlxMetaError with the reason when it is missing or malformed."""
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MlxMetaError(f"bad config.json: {exc}") from exc
    if not isinstance(cfg, dict):
        raise MlxMetaError("bad config.json: not a JSON object")
    text = cfg.get("text_config")  # multimodal configs nest the language model's shape
    shape = text if isinstance(text, dict) else cfg
    n_head = _opt_int(shape, "num_attention_heads")
    hidden = _opt_int(shape, "hidden_size")
    head_dim = _opt_int(shape, "head_dim") or (hidden // n_head if hidden and n_head else None)
    quant = cfg.get("quantization") or cfg.get("quantization_config")
    if isinstance(quant, dict) and isinstance(quant.get("bits"), int):
        qname: str | None = f"{quant['bits']}bit"
    else:
        qname = _DTYPES.get(str(cfg.get("torch_dtype") or cfg.get("dtype")))
    return MlxMeta(
        arch=str(cfg["model_type"]) if cfg.get("model_type") else None,
        n_layers=_opt_int(shape, "num_hidden_layers", "n_layers"),
        ctx_len=_opt_int(shape, "max_position_embeddings"),
        n_kv_heads=_opt_int(shape, "num_key_value_heads") or n_head,
        head_dim=head_dim,
        quantization=qname,
    )
