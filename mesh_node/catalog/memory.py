"""Memory needed to serve a model: weights on disk + KV cache for the context + compute overhead.

Pure arithmetic. The KV cache follows llama.cpp's layout (src/llama-kv-cache.cpp): per layer one
K and one V tensor of `n_embd_k_gqa * kv_size` elements, where `n_embd_k_gqa = n_head_kv *
head_dim`, stored as f16 by default (`cache_type_k/v = GGML_TYPE_F16`, 2 bytes). So
    kv_bytes = 2 (K and V) * n_layers * ctx * n_kv_heads * head_dim * bytes_per_elem.
mlx_lm's KVCache keeps the same two tensors per layer in the activation dtype (f16/bf16), so
the same formula serves both backends.
"""

from __future__ import annotations

F16_BYTES = 2
# llama-server's compute buffers for a small model on CPU measure 100-300 MB (its own
# "compute buffer size" log line); a fixed allowance keeps the estimate on the safe side.
COMPUTE_OVERHEAD_BYTES = 256 * 1024 * 1024
# With no attention shape known, assume the KV cache adds this share of the weights.
UNKNOWN_KV_SHARE = 0.10


def kv_cache_bytes(n_layers: int, ctx: int, n_kv_heads: int, head_dim: int,
                   bytes_per_elem: int = F16_BYTES) -> int:
    """Bytes of llama.cpp's K+V cache for `ctx` tokens."""
    return 2 * n_layers * ctx * n_kv_heads * head_dim * bytes_per_elem


def estimate_memory(weights_bytes: int, ctx: int, n_layers: int | None, n_kv_heads: int | None,
                    head_dim: int | None) -> int:
    """Estimated bytes to serve: weights + KV cache + fixed compute overhead."""
    if n_layers and n_kv_heads and head_dim and ctx > 0:
        kv = kv_cache_bytes(n_layers, ctx, n_kv_heads, head_dim)
    else:
        kv = int(weights_bytes * UNKNOWN_KV_SHARE)
    return weights_bytes + kv + COMPUTE_OVERHEAD_BYTES
