"""Cost of sealing node-to-node bodies: a forwarded request with and without a mesh secret.

Five processes on loopback: the fast upstream of hop_latency.py, and two meshes of two apps
each (origin A -> host B -> upstream), one mesh without a secret (clear hop), one with (sealed
request and answer frames). The client alternates between the two A's so machine noise hits
both alike, and reads the CPU each app process spent.

    .venv/bin/python benchmarks/hop_sealed.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from functools import partial

import httpx
import trio

from benchmarks.hop_latency import _cpu_s, _pct, _port, _ttfb, _wait_up, serve_upstream


async def serve_node(port: int, node_id: str, route_node: str, route_url: str, local: bool,
                     secret: str) -> None:
    import logging

    import structlog

    from mesh_node.api.app import build_app
    from mesh_node.api.context import Route
    from mesh_node.api.fake import FakeMeshContext, FakeModel
    from mesh_node.api.server import serve_api
    from mesh_node.timing import Timings
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ctx = FakeMeshContext([FakeModel("bench", routes=[Route(route_node, route_url, local)])],
                          node_id=node_id, secret=secret or None)
    await serve_api(build_app(ctx, Timings()), "127.0.0.1", port)


async def measure(clear: str, sealed: str, n: int, pids: dict[str, int]) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=30) as client:
        await _wait_up(client, clear)
        await _wait_up(client, sealed)
        for _ in range(50):
            await _ttfb(client, clear)
            await _ttfb(client, sealed)
        cpu0 = {k: _cpu_s(p) for k, p in pids.items()}
        c, s = [], []
        for _ in range(n):
            c.append(await _ttfb(client, clear))
            s.append(await _ttfb(client, sealed))
        cpu = {k: (_cpu_s(p) - cpu0[k]) / n * 1000 for k, p in pids.items()}
    return {"clear_p50_ms": _pct(c, 0.5), "clear_p99_ms": _pct(c, 0.99),
            "sealed_p50_ms": _pct(s, 0.5), "sealed_p99_ms": _pct(s, 0.99),
            "sealing_added_p50_ms": _pct(s, 0.5) - _pct(c, 0.5),
            "cpu_ms_per_request_clear_a_b": cpu["clear_a"] + cpu["clear_b"],
            "cpu_ms_per_request_sealed_a_b": cpu["sealed_a"] + cpu["sealed_b"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve-node", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_upstream:
        trio.run(serve_upstream, args.serve_upstream)
        return
    if args.serve_node:
        port, node_id, rnode, rurl, local, secret = args.serve_node
        trio.run(serve_node, int(port), node_id, rnode, rurl, local == "1",
                 "" if secret == "-" else secret)
        return
    me = [sys.executable, "-m", "benchmarks.hop_sealed"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        up = _port()
        procs["up"] = subprocess.Popen([*me, "--serve-upstream", str(up)])
        urls = {}
        for name, secret in (("clear", "-"), ("sealed", "bench-secret")):
            b, a = _port(), _port()
            procs[f"{name}_b"] = subprocess.Popen([*me, "--serve-node", str(b), "node-b", "node-b",
                                                   f"http://127.0.0.1:{up}", "1", secret])
            procs[f"{name}_a"] = subprocess.Popen([*me, "--serve-node", str(a), "node-a", "node-b",
                                                   f"http://127.0.0.1:{b}", "0", secret])
            urls[name] = f"http://127.0.0.1:{a}"
        pids = {k: p.pid for k, p in procs.items() if k != "up"}
        r = trio.run(partial(measure, urls["clear"], urls["sealed"], args.requests, pids))
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(timeout=10)
    r = {k: round(v, 3) for k, v in r.items()}
    print(json.dumps({"requests_per_path": args.requests, **r,
                      "load_average": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
