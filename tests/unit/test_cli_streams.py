"""CLI output for scripts: results on stdout, logs on stderr, `--json` always valid JSON.

Run as a script would: a child process whose stdout and stderr are read apart, with the real
catalog scanner over a folder that holds one good and one broken GGUF file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _tiny_gguf(path: Path) -> None:
    """A small but valid GGUF (metadata + one tensor) written with the gguf package."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _mesh_node(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESH_NODE_", "HF_"))}
    env |= {"HF_HOME": str(home / "hf"), "HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "mesh_node", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False, cwd=REPO)


@pytest.fixture
def catalog_config(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    _tiny_gguf(models / "good-model.gguf")
    (models / "broken-model.gguf").write_bytes(b"this is not a gguf file at all")
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'model_dirs = ["{models}"]\n[node]\nname = "cli"\n'
                   f'data_dir = "{tmp_path / "data"}"\n')
    return cfg


def test_cli_models_json_is_valid_with_a_broken_model(catalog_config: Path,
                                                       tmp_path: Path) -> None:
    cp = _mesh_node(["models", "--config", str(catalog_config), "--json"], tmp_path)
    assert cp.returncode == 0, cp.stderr
    entries = json.loads(cp.stdout)  # the whole of stdout is one JSON document
    by_id = {e["id"]: e for e in entries}
    assert by_id["good-model"]["error"] is None
    assert by_id["broken-model"]["error"]
    assert "catalog_model_error" in cp.stderr and "broken-model" in cp.stderr
    assert "catalog_model_error" not in cp.stdout


def test_cli_models_table_keeps_logs_off_stdout(catalog_config: Path, tmp_path: Path) -> None:
    cp = _mesh_node(["models", "--config", str(catalog_config)], tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert "good-model" in cp.stdout and "catalog_model_error" not in cp.stdout
    assert "catalog_model_error" in cp.stderr


def test_cli_config_check_json_stdout_only(catalog_config: Path, tmp_path: Path) -> None:
    cp = _mesh_node(["config", "check", str(catalog_config), "--json"], tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["node"]["name"] == "cli"


def test_cli_status_unreachable_result_on_stderr_only(tmp_path: Path) -> None:
    cp = _mesh_node(["status", "--json", "--url", "http://127.0.0.1:9"], tmp_path)
    assert cp.returncode == 1 and cp.stdout == ""
    assert "cannot reach" in cp.stderr
