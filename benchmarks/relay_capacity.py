"""Relay capacity: how many SSE chunks per second one mesh node relays per core, and the
latency it adds to each chunk, against nginx in front of the same upstream, in one run.

    .venv/bin/python benchmarks/relay_capacity.py [--streams 8 32 128] [--rates 150 0]

On loopback: a synthetic upstream (an OpenAI-style SSE stream per request, one chunk per
token at a set rate per stream: 150 tok/s is MLX on a Mac with a 0.5B model; 0 means as fast
as the reader takes them), one mesh app (hop_latency's, hypercorn-free own server,
FakeMeshContext routing to it) and one nginx (hop_nginx's config: keep-alive upstream,
buffering off). Every chunk carries the upstream's CLOCK_MONOTONIC send time, so the client
(raw trio sockets, one connection per stream) knows each chunk's delivery latency. For every
(streams, rate) the paths run in the order direct, mesh, nginx, nginx, mesh, direct (machine
noise hits all alike), each run `--chunks` tokens per stream, all streams at once.

Figures: relayed chunks/s (wall), the proxy's CPU seconds for the run (/proc), chunks per
CPU-second of the proxy ("per core"), per-chunk latency p50/p99 and what the proxy adds to the
direct path's. Writes benchmarks/results/relay_capacity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hop_latency import _cpu_s, _port, read_request  # noqa: E402
from hop_nginx import Procs, start_mesh, start_nginx  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "relay_capacity.json"
REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\n"
           b"content-type: application/json\r\ncontent-length: %d\r\n\r\n")


# --- the synthetic upstream ----------------------------------------------------------------
def _chunk(i: int) -> bytes:
    event = (b'data: {"id":"c","object":"chat.completion.chunk","model":"bench","choices":'
             b'[{"index":0,"delta":{"content":"tok%d"}}],"t":%d}\n\n'
             % (i, time.monotonic_ns()))
    return b"%x\r\n%s\r\n" % (len(event), event)


async def _stream_answer(stream: trio.SocketStream, chunks: int, rate: float) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                          b"transfer-encoding: chunked\r\n\r\n")
    start = trio.current_time()
    for i in range(chunks):
        if rate > 0:
            await trio.sleep_until(start + i / rate)
        await stream.send_all(_chunk(i))
    done = b"data: [DONE]\n\n"
    await stream.send_all(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))


async def _upstream_conn(stream: trio.SocketStream) -> None:
    """Keep-alive HTTP/1.1: each request body names chunks and rate ({"n": .., "rate": ..})."""
    buf = b""
    try:
        while (got := await read_request(stream, buf)) is not None:
            raw, buf = got
            body = json.loads(raw)
            await _stream_answer(stream, int(body["n"]), float(body["rate"]))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


async def serve_upstream(port: int) -> None:
    await trio.serve_tcp(_upstream_conn, port, host="127.0.0.1", backlog=1024)


# --- the client ----------------------------------------------------------------------------
class _Dechunk:
    """The body of a chunked HTTP/1.1 response, as it arrives (nginx re-chunks the stream at
    its read boundaries, so an event can span chunks)."""

    def __init__(self) -> None:
        self.buf, self.left, self.head, self.done = b"", 0, True, False

    def feed(self, data: bytes) -> bytes:
        out, buf, pos = [], self.buf + data, 0
        while not self.done:
            if self.head:
                i = buf.find(b"\r\n\r\n", pos)
                if i < 0:
                    break
                pos, self.head = i + 4, False
            elif self.left == 0:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                line, pos = buf[pos:i], i + 2
                if line:
                    self.left = int(line.split(b";")[0], 16)
                    self.done = self.left == 0
            else:
                take = min(self.left, len(buf) - pos)
                if take == 0:
                    break
                out.append(buf[pos:pos + take])
                pos, self.left = pos + take, self.left - take
        self.buf = buf[pos:]
        return b"".join(out)


async def _one_stream(port: int, chunks: int, rate: float, lat: list[int],
                      got: list[int]) -> None:
    body = json.dumps({"model": "bench", "stream": True, "n": chunks, "rate": rate,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(REQUEST % len(body) + body)
        tail, body = b"", _Dechunk()
        while not body.done:
            data = await stream.receive_some(65536)
            if not data:
                break
            now = time.monotonic_ns()
            data = tail + body.feed(data)
            start = 0
            while True:
                i = data.find(b',"t":', start)
                if i < 0:  # a marker may be cut at the end: keep its first bytes
                    tail = data[max(start, len(data) - 8):]
                    break
                j = data.find(b"}", i)
                if j < 0:
                    tail = data[i:]
                    break
                lat.append(now - int(data[i + 5:j]))
                got[0] += 1
                start = j


async def run_streams(port: int, streams: int, chunks: int, rate: float
                      ) -> tuple[float, list[int], int]:
    lat: list[int] = []
    got = [0]
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(_one_stream, port, chunks, rate, lat, got)
    return time.perf_counter() - t0, lat, got[0]


async def _wait_listening(port: int) -> None:
    with trio.fail_after(60):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.2)
                continue
            await stream.aclose()
            await run_streams(port, 1, 1, 0)
            return


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def measure(paths: dict[str, tuple[int, list[int]]], streams: int, chunks: int,
                  rate: float, order: list[str]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in paths}
    lats: dict[str, list[int]] = {k: [] for k in paths}
    for name in order:
        port, pids = paths[name]
        cpu0 = sum(_cpu_s(p) for p in pids)
        wall, lat, got = await run_streams(port, streams, chunks, rate)
        cpu = sum(_cpu_s(p) for p in pids) - cpu0
        runs[name].append({"wall": wall, "chunks": got, "cpu": cpu})
        lats[name].extend(lat)
        await trio.sleep(0.3)
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        chunks_n = sum(r["chunks"] for r in rs)
        cpu = sum(r["cpu"] for r in rs)
        xs = sorted(lats[name])
        out[name] = {
            "chunks_per_s": round(chunks_n / sum(r["wall"] for r in rs)),
            "proxy_cpu_s": round(cpu, 2),
            "chunks_per_cpu_s": round(chunks_n / cpu) if cpu > 0.05 else None,
            "lat_p50_ms": round(xs[len(xs) // 2] / 1e6, 3),
            "lat_p99_ms": round(xs[min(len(xs) - 1, int(0.99 * len(xs)))] / 1e6, 3),
            "chunks": chunks_n}
    for name in paths:
        if name != "direct":
            for q in ("p50", "p99"):
                out[name][f"added_{q}_ms"] = round(out[name][f"lat_{q}_ms"]
                                                   - out["direct"][f"lat_{q}_ms"], 3)
    return out


async def run(args: argparse.Namespace, procs: Procs, tmp: Path) -> dict[str, Any]:
    up_port = _port()
    up = f"http://127.0.0.1:{up_port}"
    procs.start([sys.executable, __file__, "--serve-upstream", str(up_port)])
    mesh_url, mesh_pid = start_mesh(procs, up)
    (ngx_url,) = start_nginx(procs, tmp, [up])
    ngx_master = procs.procs[-1].pid
    paths = {"direct": (up_port, []), "mesh": (int(mesh_url.rsplit(":", 1)[1]), [mesh_pid]),
             "nginx": (int(ngx_url.rsplit(":", 1)[1]), [ngx_master])}  # + worker, below
    order = ["direct", "mesh", "nginx", "nginx", "mesh", "direct"]
    if args.before_src:  # the same app from an older tree, interleaved: before/after
        b_url, b_pid = start_mesh(procs, up, "default", args.before_src)
        paths["before"] = (int(b_url.rsplit(":", 1)[1]), [b_pid])
        order = ["direct", "mesh", "before", "nginx", "nginx", "before", "mesh", "direct"]
    for port, _ in paths.values():
        await _wait_listening(port)
        await run_streams(port, 4, 20, 0)  # warm: code paths and pools
    paths["nginx"] = (paths["nginx"][0], [ngx_master, *_children(ngx_master)])  # forked now
    res: dict[str, Any] = {"load_avg_start": os.getloadavg()[0], "cores": os.cpu_count(),
                           "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for rate in args.rates:
        chunks = args.chunks if rate > 0 else args.fast_chunks
        for streams in args.streams:
            pace = f"{rate:g} tok/s each" if rate > 0 else "unthrottled"
            key = f"{streams} streams, {pace}"
            res[key] = await measure(paths, streams, chunks, rate, order)
            res[key]["chunks_per_stream"] = chunks
            print(f"  {key}: done", flush=True)
    res["load_avg_end"] = os.getloadavg()[0]
    return res


def report(r: dict[str, Any]) -> None:
    print(f"load average {r['load_avg_start']:.2f} -> {r['load_avg_end']:.2f} on "
          f"{r['cores']} cores ({r['started']})")
    print(f"{'':<32}{'path':<8}{'chunks/s':>10}{'proxy CPU s':>12}{'chunks/CPU-s':>13}"
          f"{'lat p50/p99 ms':>18}{'added p50/p99':>16}")
    for key, t in r.items():
        if not isinstance(t, dict) or "direct" not in t:
            continue
        for name in [p for p in ("direct", "mesh", "nginx", "before") if p in t]:
            x = t[name]
            per_cpu = "-" if x["chunks_per_cpu_s"] is None or name == "direct" \
                else str(x["chunks_per_cpu_s"])
            added = f"{x['added_p50_ms']:.3f}/{x['added_p99_ms']:.3f}" if name != "direct" else ""
            print(f"{key if name == 'direct' else '':<32}{name:<8}{x['chunks_per_s']:>10}"
                  f"{x['proxy_cpu_s'] if name != 'direct' else '-':>12}{per_cpu:>13}"
                  f"{x['lat_p50_ms']:>9.3f}/{x['lat_p99_ms']:<8.3f}{added:>16}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--rates", type=float, nargs="+", default=[150.0, 0.0],
                    help="tokens/s per stream; 0 = as fast as it goes")
    ap.add_argument("--chunks", type=int, default=300, help="per stream, rated runs")
    ap.add_argument("--fast-chunks", type=int, default=400, help="per stream, unthrottled")
    ap.add_argument("--before-src", help="also relay through the mesh app from this source "
                    "tree (holding mesh_node/), interleaved: before/after")
    ap.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_upstream:
        trio.run(serve_upstream, args.serve_upstream)
        return
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="relay-"))
    try:
        res = trio.run(partial(run, args, procs, tmp))
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    res["args"] = vars(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    report(res)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
