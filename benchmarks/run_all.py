"""The mesh suite: every benchmark, one after another, each printing its figures and writing
JSON to benchmarks/results/. Run with `make bench` (root: the lab ones use network namespaces).

`--only NAME[,NAME]` runs a subset; `--list` names them; `--before-src DIR` also runs the
hop and relay benchmarks' mesh app from an older source tree, interleaved (before/after).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

# (name, module, extra args): cheap first, so a short session still gets figures
SUITE: list[tuple[str, str, list[str]]] = [
    ("gossip_sim", "benchmarks.gossip_sim", []),
    ("hop_nginx", "benchmarks.hop_nginx", []),
    ("relay_capacity", "benchmarks.relay_capacity", []),
    ("lab_gossip", "benchmarks.lab_gossip", []),
    ("node_footprint", "benchmarks.node_footprint", []),
    ("lab_failover", "benchmarks.lab_failover", []),
    ("lab_split", "benchmarks.lab_split", []),
    ("lab_demand", "benchmarks.lab_demand", []),
    ("lab_transfer", "benchmarks.lab_transfer", []),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the mesh benchmark suite.")
    ap.add_argument("--only", default="", help="comma-separated names")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--before-src", help="older tree for hop_nginx / relay_capacity")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(name for name, _, _ in SUITE))
        return 0
    wanted = {n for n in args.only.split(",") if n}
    unknown = wanted - {n for n, _, _ in SUITE}
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    failed = []
    for name, module, extra in SUITE:
        if wanted and name not in wanted:
            continue
        print(f"\n=== {name} ===", flush=True)
        t0 = time.monotonic()
        more = ["--before-src", args.before_src] if args.before_src and name in (
            "hop_nginx", "relay_capacity") else []
        rc = subprocess.call([sys.executable, "-m", module, *extra, *more])
        print(f"=== {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in "
              f"{time.monotonic() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
