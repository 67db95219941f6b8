"""One mesh hop, two source trees, one run: added TTFB and CPU per request, A against B.

    .venv/bin/python benchmarks/hop_ab.py --a-src <old tree> [--b-src <tree>] [--requests 1000]

For a change inside the mesh app, with a chunked upstream beside hop_nginx's Content-Length
one (hop_nginx's --before-src also runs the old tree, beside nginx and llama-server). On
loopback: two synthetic upstreams, each
answering a streamed chat at once, one with a Content-Length body (hop_latency's) and one
chunked, 16 SSE events sent as 16 chunk frames (llama-server's framing, one write each); for
each, one mesh app per tree on mesh-node's own server. Requests go direct, A, B in turn
(machine noise hits all alike); prints TTFB p50/p99 and what each tree adds, and each mesh
process's CPU per request (/proc).
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hop_latency import _cpu_s, _pct, _port, _ttfb, _wait_up, read_request  # noqa: E402
from hop_nginx import Procs, start_mesh  # noqa: E402

EVENTS = 16
EVENT = b'data: {"id":"c","model":"bench","choices":[{"delta":{"content":"x"}}]}\n\n'
CHUNKED_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n")


async def _chunked_conn(stream: trio.SocketStream) -> None:
    buf = b""
    frame = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)
    try:
        while (got := await read_request(stream, buf)) is not None:
            buf = got[1]
            await stream.send_all(CHUNKED_HEAD + frame)
            for _ in range(EVENTS - 2):
                await stream.send_all(frame)
            await stream.send_all(b"%x\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" % len(b"data: [DONE]\n\n"))
    except trio.BrokenResourceError:
        return


async def serve_chunked(port: int) -> None:
    await trio.serve_tcp(_chunked_conn, port, host="127.0.0.1")


async def measure(paths: dict[str, tuple[str, int | None]], n: int) -> dict[str, dict[str, float]]:
    async with httpx.AsyncClient(timeout=30) as client:
        for url, _ in paths.values():
            await _wait_up(client, url)
        for _ in range(50):
            for url, _ in paths.values():
                await _ttfb(client, url)
        times: dict[str, list[float]] = {k: [] for k in paths}
        cpu0 = {k: _cpu_s(pid) for k, (_, pid) in paths.items() if pid}
        for _ in range(n):
            for k, (url, _) in paths.items():
                times[k].append(await _ttfb(client, url))
        out = {}
        for k, (_, pid) in paths.items():
            out[k] = {"p50": _pct(times[k], 0.5), "p99": _pct(times[k], 0.99),
                      "cpu_ms": (_cpu_s(pid) - cpu0[k]) / n * 1000 if pid else 0.0}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a-src", help="tree holding mesh_node/ (A, e.g. before); required")
    ap.add_argument("--b-src", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--serve-chunked", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_chunked:
        trio.run(serve_chunked, args.serve_chunked)
        return
    if not args.a_src:
        ap.error("--a-src is required")
    procs = Procs()
    hop = str(Path(__file__).with_name("hop_latency.py"))
    try:
        ups = {"content-length": (hop, "--serve-upstream"), "chunked": (__file__, "--serve-chunked")}
        for label, (script, flag) in ups.items():
            port = _port()
            procs.start([sys.executable, script, flag, str(port)])
            up = f"http://127.0.0.1:{port}"
            paths: dict[str, tuple[str, int | None]] = {"direct": (up, None)}
            paths["A"] = start_mesh(procs, up, "h11", args.a_src)
            paths["B"] = start_mesh(procs, up, "h11", args.b_src)
            r = trio.run(partial(measure, paths, args.requests))
            print(f"{label} upstream, {args.requests} requests per path, load "
                  f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
            for k in ("direct", "A", "B"):
                added = "" if k == "direct" else (
                    f"  added p50/p99 {r[k]['p50'] - r['direct']['p50']:.3f}/"
                    f"{r[k]['p99'] - r['direct']['p99']:.3f} ms  CPU {r[k]['cpu_ms']:.3f} ms/req")
                print(f"  {k:<7} TTFB p50/p99 {r[k]['p50']:.3f}/{r[k]['p99']:.3f} ms{added}")
    finally:
        procs.close()
    print(f"A = {args.a_src}\nB = {args.b_src}")


if __name__ == "__main__":
    main()
