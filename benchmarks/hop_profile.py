"""Where one mesh hop spends its CPU: cProfile over the mesh process of the hop benchmark.

    .venv/bin/python benchmarks/hop_profile.py [--requests 3000] [--dialect openai] [--top 25]

Starts hop_latency's fast upstream and its mesh app (FakeMeshContext routing to that upstream)
with the mesh under cProfile timing CPU (thread) time, not wall time, sends streamed requests over one keep-alive
connection, stops the mesh with SIGINT (cProfile writes its stats on the way out) and prints
the self time per layer (hypercorn, h11, starlette, mesh_node.api, trio, ...) per request,
then the top functions. cProfile's own overhead inflates every figure (roughly 2x); the
shares between layers are what to read, hop_latency.py gives the unprofiled CPU per request.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hop_latency import DIALECTS, _port, _ttfb, _wait_up  # noqa: E402

# (layer, substring of the file path), first match wins
LAYERS = [("hypercorn", "/hypercorn/"), ("h11", "/h11/"), ("starlette", "/starlette/"),
          ("mesh_node.api.upstream", "mesh_node/api/upstream"),
          ("mesh_node.api.dialects", "mesh_node/api/dialects"),
          ("mesh_node.api (other)", "mesh_node/api/"), ("mesh_node (other)", "mesh_node/"),
          ("httpx", "/httpx/"), ("trio", "/trio/"), ("anyio", "/anyio/"),
          ("structlog", "/structlog/"), ("prometheus_client", "/prometheus_client/"),
          ("cryptography", "/cryptography/"), ("json", "/json/"), ("stdlib", "/lib/python3")]


def layer_of(path: str) -> str:
    if path == "~":  # built-ins: attributed to themselves (socket send, dict ops, ...)
        return "builtins (socket, select, ...)"
    return next((name for name, part in LAYERS if part in path), "other")


def summarise(stats_file: Path, requests: int, top: int) -> None:
    st = pstats.Stats(str(stats_file))
    by_layer: Counter[str] = Counter()
    rows = []
    for (path, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        by_layer[layer_of(path)] += tt
        rows.append((tt, ct, nc, f"{Path(path).parent.name}/{Path(path).name}:{line}({func})"))
    total = sum(by_layer.values())
    print(f"self time per request by layer (profiled, {requests} requests): "
          f"{total / requests * 1000:.3f} ms total")
    for name, tt in by_layer.most_common():
        if tt / total >= 0.005:
            print(f"  {name:<32}{tt / requests * 1000:>8.3f} ms  {tt / total:>6.1%}")
    print(f"top {top} functions by self time (ms per request, calls per request):")
    for tt, _ct, nc, name in sorted(rows, reverse=True)[:top]:
        print(f"  {tt / requests * 1000:>7.4f}  {nc / requests:>6.1f}  {name}")


async def drive(url: str, n: int, dialect: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        await _wait_up(client, url)
        for _ in range(n):
            await _ttfb(client, url, dialect)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--dialect", choices=sorted(DIALECTS), default="openai")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", help="keep the raw pstats file here")
    args = ap.parse_args()
    hop = str(Path(__file__).with_name("hop_latency.py"))
    up_port, mesh_port = _port(), _port()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "mesh.pstats"
    up = subprocess.Popen([sys.executable, hop, "--serve-upstream", str(up_port)])
    mesh = subprocess.Popen([sys.executable, hop, "--serve-mesh", str(mesh_port),
                             f"http://127.0.0.1:{up_port}"],
                            env={**os.environ, "HOP_PROFILE_OUT": str(out)},
                            stderr=subprocess.DEVNULL)
    try:
        trio.run(drive, f"http://127.0.0.1:{mesh_port}", args.requests, args.dialect)
    finally:
        for _ in range(20):  # KeyboardInterrupt: trio unwinds, the stats are written (a
            mesh.send_signal(signal.SIGINT)  # first one can land where it is swallowed)
            try:
                mesh.wait(timeout=3)
                break
            except subprocess.TimeoutExpired:
                pass
        up.terminate()
        up.wait(timeout=10)
    summarise(out, args.requests + 1, args.top)
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
