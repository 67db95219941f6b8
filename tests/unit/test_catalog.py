"""Catalog scan over real (tiny) GGUF files, MLX folders and a fake Hugging Face cache tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mesh_node.catalog.entry import CatalogEntry
from mesh_node.catalog.memory import COMPUTE_OVERHEAD_BYTES, estimate_memory, kv_cache_bytes
from mesh_node.catalog.scan import scan_catalog, scan_hf_cache
from mesh_node.config.model import Config, ModelConfig, NodeConfig
from tests.support.backends_gguf import truncate, write_tiny_gguf
from tests.support.tiny_mlx import make_tiny_mlx_model

SNAP_HASH = "a" * 40


def _config(tmp: Path, **kw: object) -> Config:
    return Config(node=NodeConfig(name="n1", data_dir=tmp / "data"), **kw)  # type: ignore[arg-type]


def _hf_file(cache: Path, repo: str, rel: str, make: object) -> Path:
    """Put a file in the cache the way huggingface_hub does: a blob plus a snapshot symlink."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    blob = repo_dir / "blobs" / f"blob-{rel.replace('/', '_')}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    make(blob)  # type: ignore[operator]
    link = repo_dir / "snapshots" / SNAP_HASH / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(blob, link.parent), link)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(SNAP_HASH)
    return link


def _by_id(entries: list[CatalogEntry]) -> dict[str, CatalogEntry]:
    return {e.id: e for e in entries}


def test_catalog_fake_hf_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    _hf_file(cache, "bartowski/Qwen2.5-0.5B-Instruct-GGUF", "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
             lambda p: write_tiny_gguf(p, file_type=15))
    _hf_file(cache, "bartowski/Qwen2.5-0.5B-Instruct-GGUF", "Qwen2.5-0.5B-Instruct-Q8_0.gguf",
             lambda p: write_tiny_gguf(p, file_type=7))
    _hf_file(cache, "unsloth/gemma-3-270m-it-GGUF", "gemma-3-270m-it-Q4_K_M.gguf", write_tiny_gguf)
    tiny = make_tiny_mlx_model(tmp_path / "tiny")
    for f in tiny.iterdir():
        _hf_file(cache, "mlx-community/Qwen2.5-0.5B-Instruct-4bit", f.name,
                 lambda p, f=f: p.write_bytes(f.read_bytes()))
    entries = _by_id(scan_hf_cache(cache, ctx=4096))
    assert set(entries) == {
        "bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M",
        "bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q8_0",
        "unsloth/gemma-3-270m-it-GGUF",
        "mlx-community/Qwen2.5-0.5B-Instruct-4bit",
    }
    q4 = entries["bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M"]
    assert (q4.format, q4.backend, q4.quantization, q4.error) == ("gguf", "llama", "Q4_K_M", None)
    assert q4.size_bytes == q4.path.stat().st_size > 0  # through the symlink to the blob
    mlx = entries["mlx-community/Qwen2.5-0.5B-Instruct-4bit"]
    assert (mlx.format, mlx.backend, mlx.arch, mlx.n_layers, mlx.error) == ("mlx", "mlx", "llama", 2, None)
    assert mlx.key == q4.key == "qwen2.5-0.5b-instruct"
    assert entries["bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q8_0"].quantization == "Q8_0"


def test_catalog_truncated_gguf_is_reported_not_raised(tmp_path: Path) -> None:
    models = tmp_path / "models"
    ok = write_tiny_gguf(models / "good-Q4_K_M.gguf")
    bad = write_tiny_gguf(models / "bad-Q4_K_M.gguf")
    truncate(bad, bad.stat().st_size // 2)
    with capture_logs() as logs:
        entries = _by_id(scan_catalog(_config(tmp_path, model_dirs=(models,)), hf_cache=tmp_path / "none"))
    assert entries["good-Q4_K_M"].error is None and entries["good-Q4_K_M"].n_layers == 2
    err = entries["bad-Q4_K_M"].error
    assert err is not None and "truncated" in err
    assert any(e["event"] == "catalog_model_error" and e["model"] == "bad-Q4_K_M" for e in logs)
    assert ok.exists()


def test_catalog_bad_json_mlx_folder(tmp_path: Path) -> None:
    folder = make_tiny_mlx_model(tmp_path / "models" / "broken-mlx")
    (folder / "config.json").write_text("{not json")
    entries = _by_id(scan_catalog(_config(tmp_path, model_dirs=(tmp_path / "models",)),
                                  hf_cache=tmp_path / "none"))
    err = entries["broken-mlx"].error
    assert err is not None and "config.json" in err


def test_catalog_split_gguf_is_one_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    parts = [write_tiny_gguf(models / f"big-Q4_K_M-0000{i}-of-00003.gguf") for i in (1, 2, 3)]
    write_tiny_gguf(models / "half-00001-of-00002.gguf")
    entries = _by_id(scan_catalog(_config(tmp_path, model_dirs=(models,)), hf_cache=tmp_path / "x"))
    big = entries["big-Q4_K_M"]
    assert big.path == parts[0]
    assert big.size_bytes == sum(p.stat().st_size for p in parts)
    assert big.params == 3 * 1024 and big.error is None
    assert "missing parts [2]" in (entries["half"].error or "")


def test_catalog_configured_models_alias_and_missing(tmp_path: Path) -> None:
    f = write_tiny_gguf(tmp_path / "m" / "llama-2-7b-chat.Q4_K_M.gguf")
    cfg = _config(tmp_path, models=(ModelConfig(path=f, alias="chat"),
                                    ModelConfig(path=tmp_path / "nope.gguf")))
    entries = scan_catalog(cfg, hf_cache=tmp_path / "x")
    assert entries[0].aliases == ("chat",) and entries[0].key == "llama-2-7b-chat"
    assert entries[1].error is not None and "not found" in entries[1].error
    summary = entries[0].to_summary()
    assert (summary.id, summary.aliases, summary.memory_bytes) == (entries[0].id, ("chat",),
                                                                  entries[0].memory_bytes)


def test_catalog_memory_estimate_formula(tmp_path: Path) -> None:
    # Gemma 3 270M's shape: 18 layers, 1 KV head of 256 dims, ctx 4096 -> 72 MiB of f16 K+V
    assert kv_cache_bytes(18, 4096, 1, 256) == 2 * 18 * 4096 * 256 * 2 == 75_497_472
    assert estimate_memory(1000, 4096, 18, 1, 256) == 1000 + 75_497_472 + COMPUTE_OVERHEAD_BYTES
    f = write_tiny_gguf(tmp_path / "t.gguf", n_layers=2, heads=4, kv_heads=2, embd=64)
    (entry,) = scan_catalog(_config(tmp_path, models=(ModelConfig(path=f),)), hf_cache=tmp_path / "x")
    assert entry.memory_bytes == f.stat().st_size + kv_cache_bytes(2, 4096, 2, 16) + COMPUTE_OVERHEAD_BYTES


def test_catalog_gguf_header_damage_is_reported(tmp_path: Path) -> None:
    from mesh_node.catalog.gguf_meta import GgufError, read_gguf

    good = write_tiny_gguf(tmp_path / "g.gguf", n_layers=3, ctx=128, file_type=7)
    meta = read_gguf([good])
    assert (meta.arch, meta.n_layers, meta.ctx_len, meta.quantization) == ("llama", 3, 128, "Q8_0")
    assert (meta.n_kv_heads, meta.head_dim, meta.params) == (2, 16, 1024)
    for keep in (10, 40, 200):  # inside the fixed header, the KV pairs, the tensor infos
        cut = truncate(write_tiny_gguf(tmp_path / f"c{keep}.gguf"), keep)
        with pytest.raises(GgufError, match="truncated"):
            read_gguf([cut])
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + bytes(100))
    with pytest.raises(GgufError, match="bad magic"):
        read_gguf([bad])


def test_catalog_gguf_walk_agrees_with_gguf_reader(tmp_path: Path) -> None:
    from gguf import GGUFReader

    from mesh_node.catalog.gguf_meta import read_gguf

    path = write_tiny_gguf(tmp_path / "x.gguf", n_layers=5, ctx=300, n_tensor_elems=4096)
    ref = GGUFReader(path)
    meta = read_gguf([path])
    field = ref.get_field("llama.block_count")
    assert field is not None and meta.n_layers == field.contents() == 5
    assert meta.params == sum(t.n_elements for t in ref.tensors) == 4096
