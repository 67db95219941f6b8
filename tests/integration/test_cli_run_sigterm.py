"""`mesh-node run` as a real process: answers /healthz, then exits 0 within 5 s of SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.ports import free_tcp_udp_port

REPO = Path(__file__).resolve().parents[2]
MESH_NODE = REPO / ".venv" / "bin" / "mesh-node"
STARTUP_TIMEOUT = 60.0  # the node scans models and probes backends before it listens
STOP_DEADLINE = 5.0  # timing.shutdown_deadline: SIGTERM to exit


_free_port = free_tcp_udp_port


def _config(tmp_path: Path, api_port: int, gossip_port: int) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        "demo_model = false\n"
        f'[node]\nname = "sigterm-test"\ndata_dir = "{tmp_path / "data"}"\n'
        'advertise_address = "127.0.0.1"\nmemory_bytes = "1GiB"\n'
        f'[mesh]\nname = "cli-run-test"\nmdns = false\ngossip_port = {gossip_port}\n'
        f'[api]\nhost = "127.0.0.1"\nport = {api_port}\n'
        '[log]\nformat = "json"\n')
    return path


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, err_log: Path) -> float:
    """Poll /healthz until 200; return the seconds it took. Fails if the process dies."""
    start = time.monotonic()
    while time.monotonic() - start < STARTUP_TIMEOUT:
        if proc.poll() is not None:
            tail = err_log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"mesh-node exited early with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {STARTUP_TIMEOUT} s")


def test_run_serves_healthz_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    assert MESH_NODE.exists(), f"{MESH_NODE} missing: install the package into .venv"
    api_port, gossip_port = _free_port(), _free_port()
    config = _config(tmp_path, api_port, gossip_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_NODE_")}
    err_log = tmp_path / "stderr.log"
    with err_log.open("wb") as err:
        proc = subprocess.Popen([str(MESH_NODE), "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)
        try:
            startup = _wait_healthy(proc, f"http://127.0.0.1:{api_port}/healthz", err_log)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=STOP_DEADLINE + 5)
            stopped = time.monotonic() - sent
        finally:
            if proc.poll() is None:  # only on failure: never leave the node (or its children)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    log = err_log.read_text(errors="replace")
    print(f"startup {startup:.2f} s, stop {stopped:.2f} s", file=sys.stderr)
    assert code == 0, f"exit code {code}; stderr:\n{log[-3000:]}"
    assert stopped < STOP_DEADLINE, f"took {stopped:.2f} s to stop; stderr:\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
