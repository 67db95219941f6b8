"""Exposure of the llama.cpp RPC worker (it has no authentication): reachable only while its
node is an elected worker, bound only to the mesh address, and stopped when the role ends.

Three lab hosts: h1 holds the Gemma demo model, h2 has no model, h3 runs no node and probes
h2:50052 from another namespace. Memory is capped so the model fits on no node alone but on
two: h2 becomes h1's RPC worker once h1 joins, and the role ends when h1 leaves (the model
becomes unservable).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from election_configs import (
    GEMMA_ID,
    elab_catalog_memory,
    elab_gemma_file,
    elab_listeners,
    elab_placement,
    elab_seed_demo,
    elab_specs,
    elab_split2_cap,
    elab_split_ready,
    elab_toml,
)
from netlab import Lab
from netlab_proc import wait_until

pytestmark = [pytest.mark.lab, pytest.mark.real]

RPX_PORT = 50052  # LlamaConfig.rpc_port default
RPX_SPLIT_READY_S = 180.0
RPX_ROLE_END_S = 60.0  # leave -> re-plan (debounce) -> worker stopped (grace 5 s)
_PROBE = ("import socket, sys\n"
          "try:\n"
          "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
          "    print('connected')\n"
          "except OSError as exc:\n"
          "    print(type(exc).__name__)\n")


def rpx_connect(lab: Lab, from_k: int, addr: str, port: int = RPX_PORT) -> str:
    """TCP connect from host `from_k` to addr:port: "connected" or the error's class name."""
    cp = subprocess.run(["ip", "netns", "exec", lab.host(from_k).ns, sys.executable, "-c",
                         _PROBE, addr, str(port)], capture_output=True, text=True, timeout=20)
    return cp.stdout.strip()


def rpx_worker_pids(lab: Lab, k: int) -> set[int]:
    """Pids of RPC-server processes in host k's namespace."""
    pids = subprocess.run(["ip", "netns", "pids", lab.host(k).ns], capture_output=True,
                          text=True, timeout=10).stdout.split()
    found = set()
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"rpc-server" in cmd:
            found.add(int(pid))
    return found


def _pid_gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_rpc_worker_reachable_only_during_its_role(
        lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    lab = lab_factory(3)
    gguf = elab_gemma_file(tmp_path / "cache")
    cap = elab_split2_cap(elab_catalog_memory(gguf, tmp_path / "probe"))
    specs = elab_specs(lab, cap, demo_on={1})
    elab_seed_demo(specs[0].data_dir, gguf)
    env = {"HF_HUB_CACHE": str(tmp_path / "hf-empty")}
    h2_addr = lab.host(2).addr

    # before: h2 runs, but no model needs a worker
    worker_node = lab.host(2).start_node(elab_toml(specs[1]), env=env)
    worker_node.wait_for(lambda s: "node" in s, 90.0)
    before = rpx_connect(lab, 3, h2_addr)
    assert before == "ConnectionRefusedError", before
    assert not elab_listeners(lab.host(2).ns, RPX_PORT) and not rpx_worker_pids(lab, 2)

    # during: h1 (the only holder) joins; the split elects h2 as its RPC worker
    host_node = lab.host(1).start_node(elab_toml(specs[0]), env=env)
    t_join = time.monotonic()
    st = worker_node.wait_for(elab_split_ready(GEMMA_ID, 2, 1), RPX_SPLIT_READY_S)
    p = elab_placement(st, GEMMA_ID)
    assert p is not None and [w["name"] for w in p["workers"]] == ["elab2"], p
    during = rpx_connect(lab, 3, h2_addr)
    assert during == "connected", during
    lines = elab_listeners(lab.host(2).ns, RPX_PORT)
    assert lines and all(f"{h2_addr}:{RPX_PORT}" in ln and "rpc-server" in ln for ln in lines), lines
    assert rpx_connect(lab, 2, "127.0.0.1") == "ConnectionRefusedError"  # not on loopback either
    pids = rpx_worker_pids(lab, 2)
    assert len(pids) == 1, pids
    t_ready = time.monotonic() - t_join

    # after: h1 leaves, the model is unservable, the role ends and the worker is stopped
    t_leave = time.monotonic()
    assert host_node.stop(signal.SIGTERM, timeout=20.0) == 0
    wait_until(lambda: all(_pid_gone(x) for x in pids), RPX_ROLE_END_S, 0.2, "worker pid gone")
    t_gone = time.monotonic() - t_leave
    after = rpx_connect(lab, 3, h2_addr)
    assert after == "ConnectionRefusedError", after
    assert not elab_listeners(lab.host(2).ns, RPX_PORT) and not rpx_worker_pids(lab, 2)
    events = worker_node.log_text()
    assert '"rpc_worker_starting"' in events and '"rpc_worker_stopping"' in events
    assert worker_node.proc.poll() is None  # the node itself keeps running
    print(f"\nrpc exposure: refused before the role; reachable {t_ready:.1f}s after the host "
          f"started (bound to {h2_addr}:{RPX_PORT} only); pid gone and refused "
          f"{t_gone:.1f}s after SIGTERM to the host")
