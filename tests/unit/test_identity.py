"""Model identity: ids from HF cache paths and comparison keys over real-world names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import pytest

from mesh_node.catalog.identity import comparison_key, gguf_stem, model_id_from_path, resolve

# (name as published, expected comparison key). GGUF and MLX exports of one model share a key.
KEYS = [
    ("Qwen2.5-0.5B-Instruct-Q4_K_M", "qwen2.5-0.5b-instruct"),
    ("mlx-community/Qwen2.5-0.5B-Instruct-4bit", "qwen2.5-0.5b-instruct"),
    ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct"),
    ("qwen2.5-0.5b-instruct-q8_0.gguf", "qwen2.5-0.5b-instruct"),
    ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b-instruct"),
    ("Qwen2.5-Coder-7B-Instruct-Q5_K_S", "qwen2.5-coder-7b-instruct"),
    ("mlx-community/Qwen2.5-Coder-7B-Instruct-8bit", "qwen2.5-coder-7b-instruct"),
    ("Qwen3-30B-A3B-Q4_K_M-00001-of-00003.gguf", "qwen3-30b-a3b"),
    ("mlx-community/Qwen3-30B-A3B-4bit-DWQ", "qwen3-30b-a3b"),
    ("unsloth/Qwen3-4B-GGUF/Qwen3-4B-UD-Q4_K_XL", "qwen3-4b"),
    ("mlx-community/Qwen3-4B-bf16", "qwen3-4b"),
    ("Meta-Llama-3.1-8B-Instruct-Q4_K_M", "meta-llama-3.1-8b-instruct"),
    ("mlx-community/Meta-Llama-3.1-8B-Instruct-4bit", "meta-llama-3.1-8b-instruct"),
    ("bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-IQ3_XS", "llama-3.2-1b-instruct"),
    ("mlx-community/Llama-3.2-1B-Instruct-4bit", "llama-3.2-1b-instruct"),
    ("Llama-3.2-3B-Instruct-f16.gguf", "llama-3.2-3b-instruct"),
    ("llama-2-7b-chat.Q4_K_M.gguf", "llama-2-7b-chat"),
    ("meta-llama/Llama-2-7b-chat-hf", "llama-2-7b-chat"),
    ("TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat"),
    ("gemma-3-270m-it-Q4_K_M", "gemma-3-270m-it"),
    ("mlx-community/gemma-3-270m-it-8bit", "gemma-3-270m-it"),
    ("google/gemma-3-1b-it", "gemma-3-1b-it"),
    ("gemma-3-1b-it-Q8_0.gguf", "gemma-3-1b-it"),
    ("gemma-2-2b-it-IQ4_NL", "gemma-2-2b-it"),
    ("Mistral-7B-Instruct-v0.3-Q4_K_M", "mistral-7b-instruct-v0.3"),
    ("mlx-community/Mistral-7B-Instruct-v0.3-4bit", "mistral-7b-instruct-v0.3"),
    ("mradermacher/Mistral-7B-Instruct-v0.3-i1-GGUF", "mistral-7b-instruct-v0.3"),
    ("Mistral-Nemo-Instruct-2407-Q6_K", "mistral-nemo-instruct-2407"),
    ("Phi-3.5-mini-instruct-Q4_K_M", "phi-3.5-mini-instruct"),
    ("mlx-community/Phi-3.5-mini-instruct-4bit", "phi-3.5-mini-instruct"),
    ("Phi-3-mini-4k-instruct-fp16.gguf", "phi-3-mini-4k-instruct"),
    ("microsoft/phi-4-gguf/phi-4-Q4_K_M", "phi-4"),
    ("mlx-community/phi-4-8bit", "phi-4"),
    ("DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M", "deepseek-r1-distill-qwen-1.5b"),
    ("mlx-community/DeepSeek-R1-Distill-Qwen-1.5B-4bit", "deepseek-r1-distill-qwen-1.5b"),
    ("DeepSeek-R1-Distill-Llama-8B-Q2_K", "deepseek-r1-distill-llama-8b"),
    ("SmolLM2-135M-Instruct-Q8_0", "smollm2-135m-instruct"),
    ("mlx-community/SmolLM2-135M-Instruct-8bit", "smollm2-135m-instruct"),
    ("HuggingFaceTB/SmolLM2-360M-Instruct-GGUF", "smollm2-360m-instruct"),
    ("TinyLlama-1.1B-Chat-v1.0-Q4_0", "tinyllama-1.1b-chat-v1.0"),
    ("gpt-oss-20b-MXFP4", "gpt-oss-20b"),
    ("mlx-community/gpt-oss-20b-MXFP4-Q8", "gpt-oss-20b"),
    ("Meta-Llama-3.1-8B-Instruct-Q4_0_4_4", "meta-llama-3.1-8b-instruct"),
    ("granite-3.1-2b-instruct-Q3_K_L", "granite-3.1-2b-instruct"),
    ("Qwen2.5-1.5B-Instruct-MLX", "qwen2.5-1.5b-instruct"),
    ("qwen2.5_1.5b_instruct_q4_k_m", "qwen2.5-1.5b-instruct"),
]


@pytest.mark.parametrize(("name", "key"), KEYS)
def test_identity_comparison_key(name: str, key: str) -> None:
    assert comparison_key(name) == key


def test_identity_table_is_large_enough() -> None:
    assert len(KEYS) >= 40


def test_identity_different_models_keep_different_keys() -> None:
    assert comparison_key("Qwen2.5-0.5B-Instruct-Q4_K_M") != comparison_key("Qwen2.5-1.5B-Instruct-4bit")
    assert comparison_key("Llama-3.2-1B-Instruct") != comparison_key("Llama-3.2-1B")


HF = "/root/.cache/huggingface/hub"
SNAP = "snapshots/0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(("path", "several", "expected"), [
    (f"{HF}/models--bartowski--Qwen2.5-0.5B-Instruct-GGUF/{SNAP}/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
     False, "bartowski/Qwen2.5-0.5B-Instruct-GGUF"),
    (f"{HF}/models--bartowski--Qwen2.5-0.5B-Instruct-GGUF/{SNAP}/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
     True, "bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M"),
    (f"{HF}/models--unsloth--Qwen3-30B-A3B-GGUF/{SNAP}/Q4_K_M/Qwen3-30B-A3B-Q4_K_M-00001-of-00002.gguf",
     True, "unsloth/Qwen3-30B-A3B-GGUF/Qwen3-30B-A3B-Q4_K_M"),
    (f"{HF}/models--mlx-community--Qwen2.5-0.5B-Instruct-4bit/{SNAP}",
     False, "mlx-community/Qwen2.5-0.5B-Instruct-4bit"),
    ("/models/llama-2-7b-chat.Q4_K_M.gguf", False, "llama-2-7b-chat.Q4_K_M"),
    ("/models/big-00001-of-00003.gguf", False, "big"),
    ("/models/mlx/Qwen2.5-0.5B-Instruct-4bit", False, "Qwen2.5-0.5B-Instruct-4bit"),
])
def test_identity_model_id_from_path(path: str, several: bool, expected: str) -> None:
    got = model_id_from_path(PurePosixPath(path), several_ggufs=several)
    assert got == expected
    assert "0123456789abcdef" not in got  # never the snapshot hash


def test_identity_gguf_stem() -> None:
    assert gguf_stem("x-00002-of-00003.gguf") == "x"
    assert gguf_stem("x.gguf") == "x"


@dataclass(frozen=True)
class _Entry:
    id: str
    key: str
    aliases: tuple[str, ...] = ()
    error: str | None = None


def test_identity_resolve_prefers_exact_id_then_alias_then_key() -> None:
    gguf = _Entry("bartowski/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct", ("qwen",))
    mlx = _Entry("mlx-community/Qwen2.5-0.5B-Instruct-4bit", "qwen2.5-0.5b-instruct")
    broken = _Entry("a-broken", "qwen2.5-0.5b-instruct", error="truncated")
    entries = [broken, mlx, gguf]
    assert resolve("mlx-community/Qwen2.5-0.5B-Instruct-4bit", entries) is mlx
    assert resolve("qwen", entries) is gguf
    assert resolve("QWEN", entries) is gguf
    # by key: usable entries first, then by id (deterministic on every node)
    assert resolve("Qwen2.5-0.5B-Instruct-Q8_0", entries) is gguf
    assert resolve("nothing-like-it", entries) is None
