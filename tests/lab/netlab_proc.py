"""Processes inside lab hosts: HTTP from inside a namespace, `mesh-node run` handles, waits.

Split from netlab.py to keep modules small; import everything from `netlab`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
DEFAULT_API_PORT = 9337  # config.model.ApiConfig.port


class LabError(RuntimeError):
    """The lab cannot be built or used here (not root, tool missing, command failed)."""


@dataclass(frozen=True)
class HttpResult:
    """One HTTP exchange made from inside a namespace; status 0 when it did not connect."""

    status: int
    body: str
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


def ns_http_get(ns: str, url: str, timeout: float = 5.0) -> HttpResult:
    """GET `url` with curl run inside network namespace `ns` (root cannot reach lab hosts)."""
    argv = ["ip", "netns", "exec", ns, "curl", "-sS", "-m", str(timeout),
            "-o", "-", "-w", "\n%{http_code}", url]
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return HttpResult(0, "", "curl did not return")
    body, _, code = cp.stdout.rpartition("\n")
    status = int(code) if code.isdigit() else 0
    return HttpResult(status, body, cp.stderr.strip())


def wait_until(fn: Callable[[], T | None], timeout: float, interval: float = 0.2,
               what: str = "condition") -> T:
    """Poll `fn` until it returns a truthy value; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def mesh_node_bin() -> Path:
    """The venv's `mesh-node` script (tests run with the venv's python)."""
    path = Path(sys.executable).parent / "mesh-node"
    if not path.exists():
        raise LabError(f"mesh-node entry point not found at {path}: pip install -e . in the venv")
    return path


def api_port_of(config_toml: str) -> int:
    """[api] port of a node config (the default when absent)."""
    return int(tomllib.loads(config_toml).get("api", {}).get("port", DEFAULT_API_PORT))


class NodeProc:
    """A `mesh-node run` process in a lab host."""

    def __init__(self, ns: str, address: str, proc: subprocess.Popen[bytes],
                 config_path: Path, log_path: Path, api_port: int) -> None:
        self.ns, self.address, self.proc = ns, address, proc
        self.config_path, self.log_path, self.api_port = config_path, log_path, api_port

    @property
    def base_url(self) -> str:
        return f"http://{self.address}:{self.api_port}"

    def get(self, path: str, timeout: float = 5.0) -> HttpResult:
        """GET a path of this node's API from inside its namespace."""
        return ns_http_get(self.ns, self.base_url + path, timeout)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """GET /api/status as a dict; LabError when unreachable or not JSON."""
        res = self.get("/api/status", timeout)
        if res.status != 200:
            raise LabError(f"/api/status on {self.ns}: HTTP {res.status} {res.error}")
        data = res.json()
        if not isinstance(data, dict):
            raise LabError(f"/api/status on {self.ns} is not an object")
        result: dict[str, Any] = data
        return result

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                 interval: float = 0.25) -> dict[str, Any]:
        """Poll status until `predicate(status)`; AssertionError with the log tail on timeout."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node in {self.ns} exited {self.proc.returncode}\n"
                                     + self.log_tail())
            try:
                st = self.status(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                last = st
                if predicate(st):
                    return st
            except (LabError, ValueError) as exc:
                last = exc
            time.sleep(interval)
        raise AssertionError(f"node in {self.ns}: condition not met in {timeout}s; "
                             f"last={last!r}\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal the node's process group and wait; None if it is still running."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
