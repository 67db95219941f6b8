"""Gossip figures from the multi-host lab: real `mesh-node run` processes in namespaces.

Run (root): .venv/bin/python -m benchmarks.lab_gossip [--nodes 10] [--loss-seconds 60]
Prints a summary and writes benchmarks/results/lab_gossip.json. Shipped default timings.

One lab of N hosts (mDNS on, shared secret, no models), in this order:
1. join: a new node (fresh id) starts on host N while N-1 run; time from its first log line
   (`node_starting`) to `member_joined` in every other node's log; it then leaves (SIGTERM).
2. idle: N nodes, gossip_sent_bytes (UDP; push-pull TCP is not in it) over a window.
3. loss: x% of incoming UDP dropped at random on every host (nftables); false deaths and
   suspicions counted from the logs (exact) and from status sampling (what an operator sees).
4. crash: kill -9 of one node; time to `member_dead` in every other log (N shrinks by one
   per trial).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT / "tests" / "lab"))  # netlab and lab_configs live with the lab tests

from lab_configs import lab_node_env, lab_node_toml  # noqa: E402
from netlab import Lab, NodeProc, ensure_prerequisites, sweep_stale  # noqa: E402

from tests.support.gossiplab_observe import (  # noqa: E402
    count_events,
    counter,
    first_event_at,
    member_states,
    own_id,
    sees_alive_with_record,
)

RESULTS = _ROOT / "benchmarks" / "results" / "lab_gossip.json"
START_TIMEOUT = 120.0  # N Python processes importing at once on 2 cores
CONVERGE_TIMEOUT = 60.0
EVENT_TIMEOUT = 30.0
GOSSIP_EVENTS = ("member_suspected", "member_dead", "member_refuted", "member_alive",
                 "member_left", "member_joined")


class BenchMesh:
    """Node processes of the bench lab, by host index; a restarted host gets a fresh id."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.nodes: dict[int, NodeProc] = {}
        self.ids: dict[int, str] = {}
        self.env = lab_node_env(lab.workdir)
        self._starts = 0

    def start(self, k: int) -> NodeProc:
        self._starts += 1  # a fresh data dir per start: a new node id, never a rejoin
        toml = lab_node_toml(f"h{k}", self.lab.workdir / f"data-{self._starts}")
        self.nodes[k] = self.lab.host(k).start_node(toml, env=self.env)
        self.ids.pop(k, None)
        return self.nodes[k]

    def wait_up(self, k: int) -> str:
        st = self.nodes[k].wait_for(lambda st: "node" in st, START_TIMEOUT, interval=0.5)
        self.ids[k] = own_id(st)
        return self.ids[k]

    def running(self) -> dict[int, NodeProc]:
        return {k: n for k, n in self.nodes.items() if n.proc.poll() is None}

    def converge(self) -> float:
        """Wait until every running node sees every running node alive; seconds taken."""
        t0 = time.monotonic()
        ids = [self.ids[k] for k in self.running()]
        for n in self.running().values():
            n.wait_for(lambda st: sees_alive_with_record(st, ids),
                       max(1.0, t0 + CONVERGE_TIMEOUT - time.monotonic()), interval=0.5)
        return time.monotonic() - t0


def wait_logged(nodes: dict[int, NodeProc], event: str, peer: str, after: float) -> dict[int, float]:
    """Epoch time of `event` about `peer` in each node's log (bounded wait)."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    seen: dict[int, float] = {}
    while len(seen) < len(nodes) and time.monotonic() < deadline:
        for k, n in nodes.items():
            if k not in seen and (t := first_event_at(n.log_text(), event, peer, after)):
                seen[k] = t
        time.sleep(0.2)
    if len(seen) < len(nodes):
        raise AssertionError(f"{event} about {peer} missing in h{sorted(set(nodes) - set(seen))}")
    return seen


def join_trial(mesh: BenchMesh, k: int, leave: bool) -> dict[str, Any]:
    """Start a fresh node on host k; seconds until every other node logged it joined."""
    t_spawn = time.time()
    node = mesh.start(k)
    new = mesh.wait_up(k)
    others = {j: n for j, n in mesh.running().items() if j != k}
    joined = wait_logged(others, "member_joined", new, t_spawn)
    starting = first_event_at(node.log_text(), "node_starting")
    assert starting is not None
    out = {"n": len(others) + 1, "spawn_to_starting_s": round(starting - t_spawn, 2),
           "starting_to_every_view_s": round(max(joined.values()) - starting, 2),
           "first_view_s": round(min(joined.values()) - starting, 2)}
    mesh.converge()
    if leave:
        t_term = time.time()
        assert node.stop(signal.SIGTERM, timeout=15.0) == 0, node.log_tail()
        left = wait_logged(mesh.running(), "member_left", new, t_term)
        out["sigterm_to_left_everywhere_s"] = round(max(left.values()) - t_term, 2)
    return out


def idle_bytes(mesh: BenchMesh, seconds: float) -> dict[str, Any]:
    """UDP gossip bytes/s sent per node over `seconds` of an idle, converged mesh."""
    nodes = mesh.running()
    before = {k: (time.monotonic(), counter(n.status(), "gossip_sent_bytes")) for k, n in nodes.items()}
    time.sleep(seconds)
    rates = {}
    for k, n in nodes.items():
        t0, b0 = before[k]
        rates[k] = (counter(n.status(), "gossip_sent_bytes") - b0) / (time.monotonic() - t0)
    vals = sorted(rates.values())
    return {"n": len(nodes), "seconds": seconds, "mean_bytes_per_s": round(sum(vals) / len(vals), 1),
            "min_bytes_per_s": round(vals[0], 1), "max_bytes_per_s": round(vals[-1], 1)}


def sample_transitions(nodes: dict[int, NodeProc], seconds: float) -> dict[str, int]:
    """Poll every view round-robin; count members entering suspect/dead between samples."""
    last: dict[tuple[int, str], str] = {}
    counts = {"samples": 0, "to_suspect": 0, "to_dead": 0, "failed_polls": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for k, n in nodes.items():
            try:
                states = member_states(n.status(timeout=3.0))
            except Exception:  # a poll lost to load is a missing sample, not a result
                counts["failed_polls"] += 1
                continue
            counts["samples"] += 1
            for peer, s in states.items():
                prev = last.get((k, peer), "alive")
                if s != prev and s in ("suspect", "dead"):
                    counts[f"to_{s}"] += 1
                last[(k, peer)] = s
        time.sleep(1.0)
    return counts


def loss_run(mesh: BenchMesh, percent: int, seconds: float) -> dict[str, Any]:
    """`percent`% random UDP loss on every host for `seconds`: false deaths and suspicions."""
    nodes = mesh.running()
    for k in nodes:
        mesh.lab.drop(k, percent)
    t0 = time.time()
    try:
        sampled = sample_transitions(nodes, seconds)
    finally:
        for k in nodes:
            mesh.lab.drop(k, 0)
    logged = {e: 0 for e in GOSSIP_EVENTS}
    for n in nodes.values():
        for e, c in count_events(n.log_text(), GOSSIP_EVENTS, t0).items():
            logged[e] += c
    return {"n": len(nodes), "loss_percent": percent, "seconds": seconds,
            "false_deaths": logged["member_dead"], "logged": logged, "sampled": sampled}


def crash_trial(mesh: BenchMesh, k: int) -> dict[str, Any]:
    """kill -9 host k's node; seconds until every other node logged it dead."""
    victim = mesh.ids[k]
    t_kill = time.time()
    mesh.lab.kill(k)
    mesh.nodes[k].proc.wait(timeout=10)
    dead = wait_logged(mesh.running(), "member_dead", victim, t_kill)
    return {"n": len(mesh.running()) + 1,
            "first_dead_s": round(min(dead.values()) - t_kill, 2),
            "dead_everywhere_s": round(max(dead.values()) - t_kill, 2)}


def run(n: int, join_trials: int, crash_trials: int, idle_s: float,
        loss_s: float, workdir: Path | None = None) -> dict[str, Any]:
    """The whole benchmark on one lab of n hosts (node logs kept in `workdir` if given)."""
    with Lab(n, workdir=workdir) as lab:
        mesh = BenchMesh(lab)
        for k in range(1, n):
            mesh.start(k)
        t0 = time.monotonic()
        for k in range(1, n):
            mesh.wait_up(k)
        up_s = time.monotonic() - t0
        converge_s = mesh.converge()
        print(f"{n - 1} nodes up in {up_s:.1f}s, converged {converge_s:.1f}s later", flush=True)
        joins = [join_trial(mesh, n, leave=i < join_trials - 1) for i in range(join_trials)]
        print("join:", joins, flush=True)
        idle = idle_bytes(mesh, idle_s)
        print("idle:", idle, flush=True)
        losses = []
        for pct in (10, 20):
            losses.append(loss_run(mesh, pct, loss_s))
            print("loss:", losses[-1], flush=True)
        crashes = [crash_trial(mesh, n - 1 - i) for i in range(crash_trials)]
        print("crash:", crashes, flush=True)
        return {"nodes": n, "startup": {"all_up_s": round(up_s, 1), "converged_s": round(converge_s, 1)},
                "join": joins, "idle": idle, "loss": losses, "crash": crashes,
                "loadavg_end": os.getloadavg(), "cpus": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--join-trials", type=int, default=3)
    ap.add_argument("--crash-trials", type=int, default=3)
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--loss-seconds", type=float, default=60.0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep node logs here")
    args = ap.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    ensure_prerequisites()
    sweep_stale()
    wall = time.monotonic()
    result = run(args.nodes, args.join_trials, args.crash_trials, args.idle_seconds,
                 args.loss_seconds, args.workdir)
    result["wall_s"] = round(time.monotonic() - wall, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
