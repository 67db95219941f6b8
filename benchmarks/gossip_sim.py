"""Gossip figures from the fake LAN: join convergence, crash detection, false deaths, bytes/s.

Run: .venv/bin/python benchmarks/gossip_sim.py [--sizes 10,100,1000]
Prints a table and writes benchmarks/results/gossip_sim.json. Simulated time, default timings
(memberlist LAN profile, timing.py); one-way latency 0.5 ms.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from mesh_node.gossip.fakelan import FakeLan, LinkModel, sim_addr, views_agree


def _false_deaths(lan: FakeLan, crashed: set[str]) -> int:
    return sum(1 for _, _, e in lan.logs if e.event == "member_dead"
               and e.fields["peer"] not in crashed)


def join_and_crash(n: int, seed: int = 1) -> dict[str, Any]:
    """Seconds for a new node to appear (with its record) everywhere; to detect a crash."""
    wall = time.monotonic()
    lan = FakeLan(seed=seed)
    lan.bootstrap(n)
    lan.run_until(3.0)
    new = lan.add_node(n, seeds=[sim_addr(0)], state=b"r" * 300)
    t0 = lan.now
    lan.run_until(t0 + 60, lambda: all(c._full.get(new.id) == new.record
                                       for c in lan.alive_cores()), check_every=0.05)
    join_s = lan.now - t0
    lan.crash(sim_addr(1))
    t0 = lan.now
    first: list[float] = []

    def detected() -> bool:
        if not first and any(c.table.get("n1") is not None and c.table["n1"].status == "dead"
                             for c in lan.alive_cores()):
            first.append(lan.now - t0)
        return views_agree(lan.alive_cores(), "n1", "dead")

    lan.run_until(t0 + 200, detected, check_every=0.05)
    return {"n": n, "join_everywhere_s": round(join_s, 2),
            "crash_first_dead_s": round(first[0], 2) if first else None,
            "crash_dead_everywhere_s": round(lan.now - t0, 2),
            "false_deaths": _false_deaths(lan, {"n1"}), "wall_s": round(time.monotonic() - wall, 1)}


def loss(n: int, drop: float, seconds: float) -> dict[str, Any]:
    lan = FakeLan(seed=int(drop * 1000) + n, link=LinkModel(drop=drop, jitter=0.002))
    lan.bootstrap(n)
    lan.run_until(seconds)
    events = [e.event for _, _, e in lan.logs]
    return {"n": n, "drop": drop, "sim_s": seconds, "false_deaths": _false_deaths(lan, set()),
            "suspicions": events.count("member_suspected"),
            "refutations": events.count("member_refuted")}


def idle_bytes(n: int = 10, seconds: float = 120.0) -> dict[str, Any]:
    lan = FakeLan(seed=5, measure_bytes=True)
    lan.bootstrap(n, state_size=300)
    lan.run_until(seconds)
    per_node = lan.stats.bytes / n / seconds
    return {"n": n, "udp_bytes_per_s_per_node": round(per_node, 1),
            "pushpull_bytes_per_s_per_node": round(lan.stats.pushpull_bytes / n / seconds, 1),
            "packets_per_s_per_node": round(lan.stats.packets / n / seconds, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    out: dict[str, Any] = {"join_crash": [], "loss": [], "idle": idle_bytes()}
    for n in sizes:
        r = join_and_crash(n)
        out["join_crash"].append(r)
        print(f"N={n:5d} join everywhere {r['join_everywhere_s']:6.2f} s | crash: first dead "
              f"{r['crash_first_dead_s']} s, dead everywhere {r['crash_dead_everywhere_s']} s "
              f"| false deaths {r['false_deaths']} | wall {r['wall_s']} s", flush=True)
    for drop in (0.10, 0.20):
        r = loss(10, drop, 600.0)
        out["loss"].append(r)
        print(f"N=10 loss {drop:.0%} over 600 s: false deaths {r['false_deaths']}, "
              f"suspicions {r['suspicions']}, refutations {r['refutations']}", flush=True)
    idle = out["idle"]
    print(f"N=10 idle: {idle['udp_bytes_per_s_per_node']} B/s UDP + "
          f"{idle['pushpull_bytes_per_s_per_node']} B/s push-pull per node, "
          f"{idle['packets_per_s_per_node']} packets/s per node")
    path = Path(__file__).parent / "results" / "gossip_sim.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
