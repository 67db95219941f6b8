"""A tiny random-weight Llama in MLX layout, generated on the spot (no download).

hidden 64, 2 layers, byte-level BPE tokenizer of ~300 tokens trained with `tokenizers`.
It produces gibberish, but mlx_lm.server loads it in seconds and answers real requests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.random  # noqa: F401 (eager: a lazy first import raced a thread's on CI)
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

VOCAB = 300
HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
FFN = 128
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_CORPUS = [
    "hello world, this is a tiny model for tests of the mesh node.",
    "the quick brown fox jumps over the lazy dog 0123456789",
    "<|user|> <|assistant|> <|system|> say hello please",
] * 20


def _config(vocab: int) -> dict[str, object]:
    return {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "intermediate_size": FFN,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-5,
        "vocab_size": vocab, "max_position_embeddings": 512, "rope_theta": 10000.0,
        "tie_word_embeddings": True, "torch_dtype": "float32",
        "bos_token_id": 1, "eos_token_id": 2,
    }


def _weights(vocab: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    head_dim = HIDDEN // HEADS

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)

    w = {"model.embed_tokens.weight": mat(vocab, HIDDEN),
         "model.norm.weight": np.ones(HIDDEN, np.float32)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = mat(HEADS * head_dim, HIDDEN)
        w[p + "self_attn.k_proj.weight"] = mat(KV_HEADS * head_dim, HIDDEN)
        w[p + "self_attn.v_proj.weight"] = mat(KV_HEADS * head_dim, HIDDEN)
        w[p + "self_attn.o_proj.weight"] = mat(HIDDEN, HEADS * head_dim)
        w[p + "mlp.gate_proj.weight"] = mat(FFN, HIDDEN)
        w[p + "mlp.up_proj.weight"] = mat(FFN, HIDDEN)
        w[p + "mlp.down_proj.weight"] = mat(HIDDEN, FFN)
        w[p + "input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN, np.float32)
    return w


def _tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return tok


def make_tiny_mlx_model(dest: Path, seed: int = 0) -> Path:
    """Write a loadable tiny Llama (config, weights, tokenizer, chat template) into dest; return it."""
    dest.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer()
    vocab = tok.get_vocab_size()
    tok.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "model_max_length": 512,
        "chat_template": CHAT_TEMPLATE,
    }))
    (dest / "config.json").write_text(json.dumps(_config(vocab)))
    save_file(_weights(vocab, seed), str(dest / "model.safetensors"), metadata={"format": "mlx"})
    return dest
