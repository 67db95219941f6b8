"""Node footprint: resident memory (RSS) and idle CPU of real nodes in a mesh of 11 (each node
has 10 peers), no models, shipped timings.

Run (root): .venv/bin/python -m benchmarks.node_footprint [--nodes 11] [--seconds 30]
Prints a summary and writes benchmarks/results/node_footprint.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT / "tests" / "lab"))

from netlab import Lab, ensure_prerequisites, sweep_stale  # noqa: E402

from benchmarks.lab_gossip import BenchMesh  # noqa: E402

RESULTS = _ROOT / "benchmarks" / "results" / "node_footprint.json"
TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def measure(n: int, seconds: float) -> dict[str, Any]:
    ensure_prerequisites()
    sweep_stale()
    with Lab(n) as lab:
        mesh = BenchMesh(lab)
        for k in range(1, n + 1):
            mesh.start(k)
        for k in range(1, n + 1):
            mesh.wait_up(k)
        converge_s = mesh.converge()
        time.sleep(5.0)  # let start-up work (imports, first push-pulls) settle
        pids = {k: p.proc.pid for k, p in mesh.running().items()}
        cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        cpu = {k: (cpu_seconds(pid) - cpu0[k]) / wall * 100 for k, pid in pids.items()}
        rss = {k: rss_bytes(pid) for k, pid in pids.items()}
    return {
        "nodes": n, "peers_each": n - 1, "idle_seconds": round(wall, 1),
        "converge_s": round(converge_s, 2),
        "rss_mib": {"median": round(statistics.median(rss.values()) / 2**20, 1),
                    "max": round(max(rss.values()) / 2**20, 1)},
        "idle_cpu_percent_of_one_core": {"median": round(statistics.median(cpu.values()), 2),
                                         "max": round(max(cpu.values()), 2)},
        "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, CPU only",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=11)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    out = measure(args.nodes, args.seconds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"node footprint, {out['nodes']} nodes ({out['peers_each']} peers each), "
          f"idle {out['idle_seconds']} s")
    print(f"  RSS          median {out['rss_mib']['median']} MiB, max {out['rss_mib']['max']} MiB")
    c = out["idle_cpu_percent_of_one_core"]
    print(f"  idle CPU     median {c['median']} %, max {c['max']} % of one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
