"""Real mDNS between network namespaces: discovery, mesh filtering, goodbyes, fault tools."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netlab import Lab, wait_until

from mesh_node.security import derive_keys

pytestmark = pytest.mark.lab

DLAB_DIGEST = derive_keys("lab-secret", "lab-mesh").mesh_digest
DLAB_FOREIGN = derive_keys("other-secret", "lab-mesh").mesh_digest


@dataclass
class DlabProbe:
    """A `python -m mesh_node.discovery.probe` running in one lab host."""

    node_id: str
    proc: Any
    out: Path
    err: Path

    def events(self) -> list[dict[str, Any]]:
        lines = self.out.read_text().splitlines() if self.out.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]

    def seen(self) -> set[str]:
        """Node ids currently discovered (peer minus gone)."""
        live: set[str] = set()
        for ev in self.events():
            if ev["event"] == "peer":
                live.add(ev["node_id"])
            elif ev["event"] == "gone":
                live.discard(ev["node_id"])
        return live

    def ever_seen(self) -> set[str]:
        return {ev["node_id"] for ev in self.events() if ev["event"] == "peer"}

    def first(self, event: str, node_id: str | None = None) -> dict[str, Any] | None:
        return next((e for e in self.events() if e["event"] == event
                     and (node_id is None or e.get("node_id") == node_id)), None)

    def finish(self, timeout: float = 15.0) -> dict[str, Any]:
        """Wait for exit; the `done` event (with counters)."""
        rc = self.proc.wait(timeout=timeout)
        done = self.first("done")
        assert rc == 0 and done is not None, f"probe {self.node_id} rc={rc}\n{self.err.read_text()}"
        return done


def dlab_probe(lab: Lab, k: int, digest: str = DLAB_DIGEST, seconds: float = 8.0) -> DlabProbe:
    host = lab.host(k)
    node_id = f"node{k}"
    out, err = host.workdir / "probe.jsonl", host.workdir / "probe.err"
    proc = host.run([sys.executable, "-m", "mesh_node.discovery.probe", "--node-id", node_id,
                     "--name", f"h{k}", "--digest", digest, "--address", host.addr,
                     "--caps", "llama:split,mlx:solo", "--memory", str(k << 30),
                     "--seconds", str(seconds)], log_path=err, stdout_path=out)
    return DlabProbe(node_id, proc, out, err)


def dlab_wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    wait_until(lambda: cond() or None, timeout, 0.1, what)


def dlab_sees(probe: DlabProbe, expected: set[str]) -> Callable[[], bool]:
    return lambda: probe.seen() == expected


def test_three_hosts_discover_each_other_and_ignore_a_foreign_mesh(
        lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(4)
    probes = [dlab_probe(lab, k) for k in (1, 2, 3)]
    foreign = dlab_probe(lab, 4, digest=DLAB_FOREIGN)
    ids = {p.node_id for p in probes}
    for p in probes:
        dlab_wait(dlab_sees(p, ids - {p.node_id}), 10.0, f"{p.node_id} to see the others")
    dones = [p.finish() for p in probes]
    foreign_done = foreign.finish()

    for p, done in zip(probes, dones, strict=True):
        assert foreign.node_id not in p.ever_seen()
        assert done["counters"]["dropped_foreign_mesh"] >= 1
        peer = p.first("peer")
        assert peer is not None and peer["capabilities"] == ["llama:split", "mlx:solo"]
    assert foreign.ever_seen() == set()
    assert foreign_done["counters"]["dropped_foreign_mesh"] >= 3
    # Time-to-discover, from process start (imports + probing + announcing included).
    last_found = [max(e["t"] for e in p.events() if e["event"] == "peer") for p in probes]
    started = [p.first("started")["t"] for p in probes]  # type: ignore[index]
    print(f"\nmdns lab: all peers found at {max(last_found):.2f}s after start "
          f"(registered at {max(started):.2f}s)")
    assert max(last_found) < 6.0


def test_goodbye_on_shutdown_is_seen_as_removal(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(3)
    probes = [dlab_probe(lab, k, seconds=30.0) for k in (1, 2, 3)]
    for p in probes:
        dlab_wait(dlab_sees(p, {"node1", "node2", "node3"} - {p.node_id}), 10.0,
                  f"{p.node_id} to see 2 peers")
    t_kill = time.monotonic()
    lab.kill(3, signal.SIGTERM)
    probes[2].finish(timeout=10.0)  # exits 0 after its goodbyes
    for p in probes[:2]:
        dlab_wait(dlab_sees(p, {"node1", "node2"} - {p.node_id}), 5.0,
                  f"{p.node_id} to see node3 leave")
    print(f"\nmdns lab: goodbye seen {time.monotonic() - t_kill:.2f}s after SIGTERM")
    assert all(p.first("gone", "node3") is not None for p in probes[:2])
    for p in probes[:2]:
        p.proc.send_signal(signal.SIGTERM)
        p.finish()


def test_nft_loss_of_all_udp_blinds_that_host(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(2)
    lab.drop(2, 100)
    rules = lab.host(2).exec(["nft", "list", "chain", "inet", "mnlab", "loss"]).stdout
    assert "udp drop" in rules
    lab.drop(1, 10)
    assert "numgen random mod 100 < 10 drop" in lab.host(1).exec(
        ["nft", "list", "chain", "inet", "mnlab", "loss"]).stdout
    lab.drop(1, 0)
    p1, p2 = dlab_probe(lab, 1, seconds=5.0), dlab_probe(lab, 2, seconds=5.0)
    p1.finish()
    p2.finish()
    assert p2.ever_seen() == set()  # it hears nothing
    assert p1.ever_seen() == {"node2"}  # its own announcements still go out: the rule is input-only
    lab.drop(2, 0)
    assert "drop" not in lab.host(2).exec(["nft", "list", "chain", "inet", "mnlab", "loss"]).stdout


def test_partition_isolates_a_group_and_heal_removes_the_rules(
        lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(3)
    lab.partition([[1], [2, 3]])
    probes = [dlab_probe(lab, k, seconds=5.0) for k in (1, 2, 3)]
    for p in probes:
        p.finish()
    assert probes[0].ever_seen() == set()
    assert probes[1].ever_seen() == {"node3"}
    assert probes[2].ever_seen() == {"node2"}
    lab.heal()
    for k in (1, 2, 3):
        assert "saddr" not in lab.host(k).exec(["nft", "list", "chain", "inet", "mnlab", "part"]).stdout
    assert lab.http_get(2, f"http://{lab.host(1).addr}:1/").status == 0  # reachable, port closed


def test_lab_cleans_up_processes_and_namespaces(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(2)
    proc = lab.host(1).run(["sleep", "600"])
    lab.pause(1)
    names = list(lab.namespaces)
    lab.close()
    assert proc.poll() is not None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in names)
