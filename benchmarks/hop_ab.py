"""The same mesh hop from two source trees, interleaved: added TTFB and CPU per request.

    .venv/bin/python benchmarks/hop_ab.py --before-src DIR [--after-src .] [--requests 3000]

One fast upstream (hop_latency's) and the mesh app from each tree (hop_latency's
--serve-mesh with PYTHONPATH set to the tree); requests go direct, before, after in turn
(alternating the order) over keep-alive connections, so a shared machine's load hits all
alike; CPU per request is read from /proc/<pid>/stat of each mesh process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hop_latency import _port, _ttfb, _wait_up  # noqa: E402

HOP = str(Path(__file__).with_name("hop_latency.py"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


Procs = dict[str, tuple["subprocess.Popen[bytes]", str]]


async def drive(urls: dict[str, str], procs: Procs, n: int) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for url in urls.values():
            await _wait_up(client, url)
            for _ in range(100):  # warm-up, uncounted
                await _ttfb(client, url)
        times: dict[str, list[float]] = {k: [] for k in urls}
        before = {k: cpu_s(p.pid) for k, (p, _) in procs.items()}
        order = list(urls.items())
        for i in range(n):
            for name, url in order if i % 2 else order[::-1]:
                times[name].append(await _ttfb(client, url))
        after = {k: cpu_s(p.pid) for k, (p, _) in procs.items()}
    med = {k: sorted(v)[n // 2] * 1000 for k, v in times.items()}
    p99 = {k: sorted(v)[int(n * 0.99)] * 1000 for k, v in times.items()}
    print(f"direct  TTFB p50/p99 {med['direct']:.3f}/{p99['direct']:.3f} ms")
    for k in procs:
        print(f"{k:7} TTFB p50/p99 {med[k]:.3f}/{p99[k]:.3f} ms, added p50 "
              f"{med[k] - med['direct']:.3f} ms, CPU {(after[k] - before[k]) / n * 1000:.3f} ms"
              " per request")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before-src", required=True)
    ap.add_argument("--after-src", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--requests", type=int, default=3000)
    args = ap.parse_args()
    up_port = _port()
    up = subprocess.Popen([sys.executable, HOP, "--serve-upstream", str(up_port)])
    procs: Procs = {}
    for name, src in (("before", args.before_src), ("after", args.after_src)):
        port = _port()
        procs[name] = (subprocess.Popen(
            [sys.executable, HOP, "--serve-mesh", str(port), f"http://127.0.0.1:{up_port}"],
            env={**os.environ, "PYTHONPATH": src}, stderr=subprocess.DEVNULL),
            f"http://127.0.0.1:{port}")
    urls = {"direct": f"http://127.0.0.1:{up_port}", **{k: u for k, (_, u) in procs.items()}}
    try:
        trio.run(drive, urls, procs, args.requests)
    finally:
        for p, _ in procs.values():
            p.terminate()
        up.terminate()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
