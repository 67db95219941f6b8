"""A real `mesh-node run` on loopback for the abuse and exposure tests (no models, no mDNS).

    node = start_hostile_node(tmp_path, api_key="k", secret="s")
    ... httpx.get(node.url("/healthz")) ...
    node.stop()
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.ports import free_tcp_udp_port

REPO = Path(__file__).resolve().parents[2]
MESH_NODE = REPO / ".venv" / "bin" / "mesh-node"
HOSTILE_START_TIMEOUT = 60.0  # imports + catalog scan on 2 shared cores


hostile_free_port = free_tcp_udp_port


def hostile_toml(data_dir: Path, api_port: int, gossip_port: int, *, api_key: str | None,
                 secret: str | None, log_level: str = "info", max_body: str = "1MiB",
                 address: str = "127.0.0.1", mdns: bool = False, peers: tuple[str, ...] = ()
                 ) -> str:
    """The config of a model-less node (JSON strings are valid TOML basic strings)."""
    q = json.dumps
    return "\n".join([
        "demo_model = false", "model_dirs = []",
        "[node]", 'name = "hostile-test"', f"data_dir = {q(str(data_dir))}",
        f"advertise_address = {q(address)}", 'memory_bytes = "1GiB"',
        "[mesh]", 'name = "hostile-mesh"', f"mdns = {'true' if mdns else 'false'}",
        f"gossip_port = {gossip_port}", *([f"secret = {q(secret)}"] if secret else []),
        f"peers = {q(list(peers))}",
        "[api]", f"host = {q(address)}", f"port = {api_port}", f"max_body_bytes = {q(max_body)}",
        *([f"api_key = {q(api_key)}"] if api_key else []),
        "[log]", f"level = {q(log_level)}", 'format = "json"', ""])


@dataclass
class HostileNode:
    proc: subprocess.Popen[bytes]
    api_port: int
    gossip_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.api_port}{path}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        """VmRSS of the node process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> int | None:
        """SIGTERM, wait; SIGKILL the group if it does not exit."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
            return None


def _limit_nofile(n: int) -> None:
    """In the child before exec: a soft open-files limit like a stock system's."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def start_hostile_node(tmp: Path, *, api_key: str | None, secret: str | None,
                       log_level: str = "info", max_body: str = "1MiB",
                       nofile: int | None = None) -> HostileNode:
    """Start a node on loopback and wait for /healthz (fails loudly with the log tail)."""
    assert MESH_NODE.exists(), f"{MESH_NODE} missing: pip install -e . into .venv"
    api_port, gossip_port = hostile_free_port(), hostile_free_port()
    cfg = tmp / "node.toml"
    cfg.write_text(hostile_toml(tmp / "data", api_port, gossip_port, api_key=api_key,
                                secret=secret, log_level=log_level, max_body=max_body))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_NODE_")}
    env.update(HF_HUB_CACHE=str(tmp / "empty-hf"), HF_HOME=str(tmp / "empty-hf-home"))
    log_path = tmp / "node.log"
    with log_path.open("wb") as out:  # stdout and stderr both: every byte the node prints
        proc = subprocess.Popen(
            [str(MESH_NODE), "run", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
            preexec_fn=(lambda: _limit_nofile(nofile)) if nofile else None)
    node = HostileNode(proc, api_port, gossip_port, log_path)
    deadline = time.monotonic() + HOSTILE_START_TIMEOUT
    while time.monotonic() < deadline:
        if not node.alive():
            raise AssertionError(f"node exited {proc.returncode}:\n{node.log_text()[-3000:]}")
        try:
            if httpx.get(node.url("/healthz"), timeout=1.0, trust_env=False).status_code == 200:
                return node
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    node.stop()
    raise AssertionError(f"node did not answer /healthz in {HOSTILE_START_TIMEOUT}s:\n"
                         + node.log_text()[-3000:])
