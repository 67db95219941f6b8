"""Failover and start-up in the lab (issue 16), and the older replica scenarios.

Default (`make bench`), issue 16's figures in one run:
  kill9, link_down - no warm replica, the other holder present, requests through a third node
                     (tests/lab/failover_drive.py): seconds from the fault to the next
                     completion, median and max of --runs;
  soak20           - 5 nodes, 20 % of incoming UDP lost on every host for --soak-s: false deaths;
  startup          - a node holding the model starts beside two running ones: seconds to
                     `member_joined` in both other views, and to its first completion (median
                     of --runs).
The older scenarios below stay available with --scenarios.

Time from `kill -9` of a model's host to the first successful completion through another node.

Three lab hosts (network namespaces, root), real `mesh-node run` and llama.cpp. h1 and h2 hold
the Gemma 3 270M GGUF, h3 holds nothing; completions are sent through h3's API. Scenarios:
  split_1_replica - memory caps force a split over two nodes; the host is killed and the other
                    holder must take over as split host.
  solo_1_replica  - one solo host; killed, the other holder is elected and cold-starts.
  solo_2_replicas - [[models]] replicas = 2: both holders serve; one is killed.
  solo_2_replicas_link_down - the same, and the killed host's link goes down too (a machine
                    that lost power: connects time out instead of being refused).
"Killed" is every process of the host's namespace (node, llama-server, RPC worker) at once.
A status poller on h3 also records when the host was first seen dead and when the placement
moved, to show where the time goes.

    sudo .venv/bin/python benchmarks/lab_failover.py [--runs 3] [--scenarios a,b]

Prints a table and writes benchmarks/results/lab_failover.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support
sys.path.insert(0, str(ROOT / "tests" / "lab"))

from election_configs import (  # noqa: E402
    GEMMA_ID,
    ElabModel,
    ElabNode,
    elab_catalog_memory,
    elab_chat,
    elab_first_success,
    elab_gemma_file,
    elab_kill_host,
    elab_placement,
    elab_seed_demo,
    elab_specs,
    elab_split2_cap,
    elab_start,
)
from failover_drive import failover_run, soak_run, startup_runs  # noqa: E402
from netlab import Lab, NodeProc  # noqa: E402

SOLO_MEMORY = 2 * 1024**3  # far above the model's need: solo on any holder
SCENARIOS = ("split_1_replica", "solo_1_replica", "solo_2_replicas", "solo_2_replicas_link_down")
ISSUE16 = ("kill9", "link_down", "soak20", "startup")


def scenario_specs(name: str, lab: Lab, gguf: Path, memory: int) -> list[ElabNode]:
    """h1, h2 hold the file; h3 nothing. Caps and replicas per scenario."""
    if name.startswith("solo_2_replicas"):
        model = ElabModel(gguf, alias="gemma", replicas=2)
        replicated: list[ElabNode] = elab_specs(lab, SOLO_MEMORY, demo_on=set(),
                                                models={1: [model], 2: [model]})
        return replicated
    cap = elab_split2_cap(memory) if name == "split_1_replica" else SOLO_MEMORY
    specs: list[ElabNode] = elab_specs(lab, cap, demo_on={1, 2})
    for spec in specs[:2]:
        elab_seed_demo(spec.data_dir, gguf)
    return specs


def serving_ready(name: str) -> Callable[[dict[str, Any]], bool]:
    """Status predicate: 3 members alive and the scenario's placement ready."""
    mode, n_hosts = ("split", 1) if name.startswith("split") else ("solo", 1)
    if name.startswith("solo_2_replicas"):
        n_hosts = 2

    def check(st: dict[str, Any]) -> bool:
        p = elab_placement(st, GEMMA_ID)
        alive = [m for m in st.get("members", []) if m["status"] == "alive"]
        ready_hosts = {m["id"] for m in st.get("members", []) for s in m["serving"]
                       if s["model"] == GEMMA_ID and s["role"] == "host" and s["ready"]}
        return (len(alive) == 3 and p is not None and p["mode"] == mode
                and len(p["hosts"]) == n_hosts
                and {h["id"] for h in p["hosts"]} <= ready_hosts)
    return check


class StatusPoller(threading.Thread):
    """Polls one node's status after the kill: when `victim` is seen dead, when it leaves the
    placement (monotonic times)."""

    def __init__(self, node: NodeProc, victim: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.node, self.victim, self.stop_ev = node, victim, stop
        self.seen_dead: float | None = None
        self.replanned: float | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 120.0
        while not self.stop_ev.is_set() and time.monotonic() < deadline:
            try:
                st = self.node.status(timeout=2.0)
            except Exception:  # noqa: BLE001 - a poll that fails is just retried
                time.sleep(0.1)
                continue
            now = time.monotonic()
            if self.seen_dead is None and any(
                    m["id"] == self.victim and m["status"] in ("dead", "left")
                    for m in st["members"]):
                self.seen_dead = now
            p = elab_placement(st, GEMMA_ID)
            if self.replanned is None and p is not None and self.victim not in {
                    h["id"] for h in p["hosts"]}:
                self.replanned = now
            if self.seen_dead is not None and self.replanned is not None:
                return
            time.sleep(0.1)


def one_run(name: str, gguf: Path, memory: int) -> dict[str, Any]:
    """One fresh lab: start, wait ready, kill the (first) host, time the recovery."""
    with Lab(3) as lab:
        nodes = elab_start(lab, scenario_specs(name, lab, gguf, memory))
        entry = nodes[2]
        t_start = time.monotonic()
        st = entry.wait_for(serving_ready(name), 150.0)
        ready_s = time.monotonic() - t_start
        ids = [n.wait_for(lambda s: bool(s.get("node")), 30.0)["node"]["id"] for n in nodes]
        p = elab_placement(st, GEMMA_ID)
        assert p is not None
        victim = p["hosts"][0]["id"]
        res = elab_chat(entry.ns, entry.base_url, GEMMA_ID, max_tokens=4)
        if res.status != 200:
            raise RuntimeError(f"{name}: no completion before the kill: {res}")
        stop = threading.Event()
        poller = StatusPoller(entry, victim, stop)
        t_kill = time.monotonic()
        elab_kill_host(lab, ids.index(victim) + 1)
        if name.endswith("_link_down"):
            lab.link_down(ids.index(victim) + 1)
        poller.start()
        t_ok = elab_first_success(entry, GEMMA_ID, 120.0)
        poller.join(timeout=30.0)
        stop.set()
        after = elab_placement(entry.status(), GEMMA_ID)

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t_kill, 2)

    return {"scenario": name, "ready_s": round(ready_s, 2), "failover_s": round(t_ok - t_kill, 2),
            "seen_dead_s": rel(poller.seen_dead), "replanned_s": rel(poller.replanned),
            "reason_after": after["reason"] if after else None}


def _stats(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s, max {max(xs):.2f} s  {xs}"


def issue16(names: list[str], runs: int, soak_s: float, gguf: Path) -> dict[str, Any]:
    """Issue 16's figures; prints them as they come."""
    out: dict[str, Any] = {}
    for kind in [n for n in names if n in ("kill9", "link_down")]:
        rs = []
        for _ in range(runs):
            with Lab(3) as lab:
                rs.append(failover_run(lab, kind, gguf))
        out[kind] = rs
        print(f"{kind:<10} fault -> next completion: {_stats([r['failover_s'] for r in rs])}; "
              f"dead at {[r['dead_s'] for r in rs]}, standby at {[r['standby_s'] for r in rs]}, "
              f"ready at {[r['backend_ready_s'] for r in rs]}", flush=True)
    if "soak20" in names:
        with Lab(5) as lab:
            out["soak20"] = r = soak_run(lab, 20, soak_s)
        print(f"soak20     {r['nodes']} nodes, 20 % UDP loss, {soak_s:.0f} s: "
              f"{r['false_deaths']} false deaths ({r['suspicions']} suspicions, "
              f"{r['refutations']} refutations)", flush=True)
    if "startup" in names:
        with Lab(3) as lab:
            out["startup"] = rs = startup_runs(lab, gguf, runs)
        print(f"startup    process start -> in every view: "
              f"{_stats([r['visible_s'] for r in rs])}; -> first completion: "
              f"{_stats([r['completion_s'] for r in rs])}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--soak-s", type=float, default=120.0)
    ap.add_argument("--scenarios", default=",".join(ISSUE16))
    args = ap.parse_args()
    names = [s for s in args.scenarios.split(",") if s]
    unknown = set(names) - set(SCENARIOS) - set(ISSUE16)
    if unknown:
        ap.error(f"unknown scenarios {sorted(unknown)}; known: "
                 f"{', '.join(ISSUE16 + SCENARIOS)}")
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="elab-failover-") as tmp:
        gguf = elab_gemma_file(Path(tmp))  # assembled and estimated once for every run
        fig16 = issue16(names, args.runs, args.soak_s, gguf)
        old = [n for n in names if n in SCENARIOS]
        memory = elab_catalog_memory(gguf, Path(tmp) / "probe") if old else 0
        runs = [one_run(n, gguf, memory) for n in old for _ in range(args.runs)]
    summary = {n: {"failover_s_median": statistics.median(r["failover_s"] for r in runs
                                                          if r["scenario"] == n),
                   "failover_s_all": [r["failover_s"] for r in runs if r["scenario"] == n]}
               for n in old}
    out = {"issue16": fig16, "runs": runs, "summary": summary,
           "loadavg_start": load0, "loadavg": os.getloadavg()[0], "cores": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    path = ROOT / "benchmarks" / "results" / "lab_failover.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    if old:
        print(f"{'scenario':<18}{'kill->completion (median)':>27}{'runs':>24}"
              f"{'seen dead':>11}{'replanned':>11}")
    for n in old:
        rs = [r for r in runs if r["scenario"] == n]
        dead = statistics.median(r["seen_dead_s"] for r in rs if r["seen_dead_s"] is not None) \
            if any(r["seen_dead_s"] is not None for r in rs) else float("nan")
        moved = statistics.median(r["replanned_s"] for r in rs if r["replanned_s"] is not None) \
            if any(r["replanned_s"] is not None for r in rs) else float("nan")
        print(f"{n:<18}{summary[n]['failover_s_median']:>26.2f}s"
              f"{str(summary[n]['failover_s_all']):>24}{dead:>10.2f}s{moved:>10.2f}s")
    print(f"load average {load0:.2f} -> {out['loadavg']:.2f} on {out['cores']} cores; "
          f"wrote {path}")


if __name__ == "__main__":
    main()
