"""Node id persistence and offered memory."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

import pytest

from mesh_node.config import memory
from mesh_node.config.errors import ConfigError
from mesh_node.config.identity import NODE_ID_FILE, load_or_create_node_id
from mesh_node.config.load import load_config


def test_node_id_is_created_once_with_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    first = load_or_create_node_id(data_dir)
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    path = data_dir / NODE_ID_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_node_id(data_dir) == first
    assert path.read_text().strip() == first
    assert [p.name for p in data_dir.iterdir()] == [NODE_ID_FILE]  # no temp files left


def test_two_data_dirs_get_different_ids(tmp_path: Path) -> None:
    assert load_or_create_node_id(tmp_path / "x") != load_or_create_node_id(tmp_path / "y")


def test_concurrent_creation_agrees_on_one_id(tmp_path: Path) -> None:
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(load_or_create_node_id(tmp_path)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 8 and len(set(results)) == 1


def test_corrupt_node_id_is_refused_not_replaced(tmp_path: Path) -> None:
    (tmp_path / NODE_ID_FILE).write_text("not-an-id\n")
    with pytest.raises(ConfigError, match="not a node id"):
        load_or_create_node_id(tmp_path)
    assert (tmp_path / NODE_ID_FILE).read_text() == "not-an-id\n"


def test_existing_id_is_reused(tmp_path: Path) -> None:
    (tmp_path / NODE_ID_FILE).write_text("ab" * 16 + "\n")
    assert load_or_create_node_id(tmp_path) == "ab" * 16


def test_detected_memory_is_the_machine_total() -> None:
    total = memory.detect_memory_bytes()
    assert total > 256 * 2**20
    assert 0 < memory.available_memory_bytes() <= total
    with open("/proc/meminfo") as f:  # cross-check psutil against the kernel (Linux CI)
        kib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    assert total == kib * 1024


def test_offered_memory_honours_config_else_75_percent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "detect_memory_bytes", lambda: 16 * 2**30)
    assert memory.offered_memory(load_config(None, env={})) == 12 * 2**30
    configured = load_config(None, env={"MESH_NODE_NODE_MEMORY_BYTES": "3GiB"})
    assert memory.offered_memory(configured) == 3 * 2**30


def test_node_id_file_not_world_readable_even_with_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create_node_id(tmp_path / "d")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / NODE_ID_FILE).stat().st_mode) == 0o600
