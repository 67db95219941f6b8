"""Driving a lab mesh for the fault matrix: node start/crash/restart, a status sampler and a
request loop, each writing into one `History`.

Imported with tests/lab on sys.path (as tests/lab/conftest.py arranges), like `netlab`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from election_configs import elab_chat
from netlab import Lab, LabError, NodeProc

from .history import History, parse_log_events

FAULT_START_S = 90.0  # process start to API up: imports + gossip on 2 loaded, shared cores
FAULT_STATUS_TIMEOUT = 2.0


class FaultMesh:
    """The mesh-node processes of one lab; host k runs node label "hk" (same config on restart)."""

    def __init__(self, lab: Lab, history: History, tomls: Mapping[int, str],
                 env: Mapping[str, str]) -> None:
        self.lab, self.history, self.tomls, self.env = lab, history, dict(tomls), dict(env)
        self.nodes: dict[int, NodeProc] = {}  # the current process of each host
        self.started: list[tuple[int, NodeProc]] = []  # every process ever started
        self.ids: dict[int, str] = {}
        self.paused: set[int] = set()
        self.router = 0  # the host the Requester sends through (a test keeps it a survivor)
        self._imported: dict[int, int] = {}  # index in `started` -> log records imported
        self._lock = threading.Lock()

    def start(self, *ks: int) -> None:
        """Start node hk for each k (a restart reuses its config, data_dir and so its id)."""
        for k in ks:
            assert k not in self.live(), f"h{k} is running"
            node = self.lab.host(k).start_node(self.tomls[k], env=self.env)
            with self._lock:
                self.nodes[k] = node
                self.started.append((k, node))

    def wait_up(self, *ks: int, timeout: float = FAULT_START_S) -> list[str]:
        """Wait for each node's API; their ids (recorded in the history once)."""
        out = []
        for k in ks:
            st = self.nodes[k].wait_for(lambda s: "node" in s, timeout)
            node_id = str(st["node"]["id"])
            if self.ids.get(k) != node_id:
                self.ids[k] = node_id
                self.history.node(f"h{k}", node_id)
            out.append(node_id)
        return out

    def live(self) -> dict[int, NodeProc]:
        with self._lock:
            return {k: n for k, n in self.nodes.items() if n.proc.poll() is None}

    def crash(self, k: int) -> None:
        """kill -9 of everything in host k (node, llama-server, RPC worker): a machine crash."""
        pids = subprocess.run(["ip", "netns", "pids", self.lab.host(k).ns], capture_output=True,
                              text=True, timeout=10).stdout.split()
        self.lab.kill(k, signal.SIGKILL)
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        self.nodes[k].proc.wait(timeout=10)

    def stop(self, k: int) -> int | None:
        """SIGTERM (graceful leave); the exit code."""
        return self.nodes[k].stop(signal.SIGTERM, timeout=20.0)

    def pause(self, k: int) -> None:
        self.paused.add(k)
        self.lab.pause(k)

    def resume(self, k: int) -> None:
        self.lab.resume(k)
        self.paused.discard(k)

    def status(self, k: int) -> dict[str, Any] | None:
        """One status read of hk, recorded as a sample; None when unreachable."""
        try:
            st = self.nodes[k].status(timeout=FAULT_STATUS_TIMEOUT)
        except (LabError, ValueError) as exc:
            self.history.sample(None, f"h{k}", str(exc)[:200])
            return None
        self.history.sample(st, f"h{k}")
        return st

    def wait_all(self, pred: Callable[[dict[str, Any]], bool], timeout: float,
                 ks: list[int] | None = None, what: str = "condition") -> float:
        """Poll the live (unpaused) nodes until `pred` holds in each; seconds taken."""
        t0 = time.monotonic()
        while True:
            targets = ks if ks is not None else [k for k in self.live() if k not in self.paused]
            if all((st := self.status(k)) is not None and pred(st) for k in targets):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"timed out after {timeout:.0f}s: {what} on {targets}")
            time.sleep(0.5)

    def import_logs(self) -> int:
        """Put the membership/placement log events not imported yet into the history; how many."""
        n = 0
        for i, (k, node) in enumerate(self.started):
            if k not in self.ids:
                continue
            recs = parse_log_events(self.ids[k], node.log_text())
            for rec in recs[self._imported.get(i, 0):]:
                self.history.write(**rec)
                n += 1
            self._imported[i] = len(recs)
        return n


def alive_exactly(ids: set[str]) -> Callable[[dict[str, Any]], bool]:
    """Status predicate: exactly `ids` are alive (each with its state record)."""
    def check(st: dict[str, Any]) -> bool:
        alive = {m["id"] for m in st.get("members", []) if m["status"] == "alive" and m["name"]}
        return alive == ids
    return check


def status_of(node_id: str, status: str) -> Callable[[dict[str, Any]], bool]:
    def check(st: dict[str, Any]) -> bool:
        return any(m["id"] == node_id and m["status"] == status for m in st.get("members", []))
    return check


class Sampler:
    """A thread sampling every live, unpaused node's status each `interval` s into the history."""

    def __init__(self, mesh: FaultMesh, interval: float = 1.0) -> None:
        self.mesh, self.interval = mesh, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            for k in list(self.mesh.live()):
                if k not in self.mesh.paused and not self._stop.is_set():
                    self.mesh.status(k)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class Requester:
    """A thread sending one chat completion at a time through `via()` (a live node), recorded."""

    def __init__(self, mesh: FaultMesh, model: str, via: Callable[[], int],
                 max_tokens: int = 4, timeout: float = 60.0) -> None:
        self.mesh, self.model, self.via = mesh, model, via
        self.max_tokens, self.timeout = max_tokens, timeout
        self.ok = 0  # successful requests so far
        self._ok_changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-requester", daemon=True)

    def wait_ok(self, n: int, timeout: float) -> None:
        """Block until `n` requests have succeeded; AssertionError after `timeout` seconds."""
        with self._ok_changed:
            if not self._ok_changed.wait_for(lambda: self.ok >= n, timeout):
                raise AssertionError(f"{self.ok} of {n} requests succeeded in {timeout:.0f}s")

    def _run(self) -> None:
        while not self._stop.is_set():
            k = self.via()
            node = self.mesh.nodes[k]
            start = time.time()
            res = elab_chat(node.ns, node.base_url, self.model, max_tokens=self.max_tokens,
                            timeout=self.timeout)
            err = "" if res.status == 200 else (res.error or res.body)[:200]
            self.mesh.history.request(f"h{k}", start, time.time(), res.status, err)
            if res.status == 200:
                with self._ok_changed:
                    self.ok += 1
                    self._ok_changed.notify_all()
            self._stop.wait(0.2)

    def __enter__(self) -> Requester:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 10)
