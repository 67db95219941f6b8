"""Added latency of one mesh hop: time to first byte direct vs through the mesh app, and
what the Anthropic and Ollama translation adds on top of the OpenAI path.

Three processes on loopback: a fast upstream (answers a streamed chat at once), the mesh app
(hypercorn, a FakeMeshContext routing to that upstream) and this client. The client alternates
direct and mesh requests over keep-alive connections so machine noise hits both alike; the
mesh requests go in turn to /v1/chat/completions (OpenAI, relayed as is), /v1/messages
(Anthropic, translated) and /api/chat (Ollama, translated), all streamed.

    .venv/bin/python benchmarks/hop_latency.py [--requests 2000] [--upstream URL]

--upstream points the hop at an existing server (a real llama-server, for example) instead of
the built-in fast one.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from functools import partial
from typing import Any

import httpx
import trio

BODY = json.dumps({"model": "bench", "stream": True, "max_tokens": 1,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
# the same request in each dialect: (path, body)
DIALECTS = {"openai": ("/v1/chat/completions", BODY),
            "anthropic": ("/v1/messages", BODY),  # the same fields are a valid Messages body
            "ollama": ("/api/chat", json.dumps({"model": "bench", "options": {"num_predict": 1},
                                                "messages": [{"role": "user",
                                                              "content": "hi"}]}).encode())}
CHUNK = (b'data: {"id":"c","model":"bench","choices":[{"delta":{"content":"x"}}]}\n\n'
         b'data: [DONE]\n\n')
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"content-length: %d\r\n\r\n" % len(CHUNK)) + CHUNK


async def read_request(stream: trio.SocketStream, buf: bytes) -> tuple[bytes, bytes] | None:
    """One keep-alive HTTP/1.1 request from `stream` after `buf`: (body, what follows);
    None when the client closed. Minimal: the synthetic upstreams' clients send
    Content-Length bodies only."""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(buf) < length:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf += data
    return buf[:length], buf[length:]


async def _upstream_conn(stream: trio.SocketStream) -> None:
    """Minimal keep-alive HTTP/1.1: one fixed SSE answer per request (bodies are small)."""
    buf = b""
    try:
        while (got := await read_request(stream, buf)) is not None:
            buf = got[1]
            await stream.send_all(RESPONSE)
    except trio.BrokenResourceError:
        return


async def serve_upstream(port: int) -> None:
    await trio.serve_tcp(_upstream_conn, port, host="127.0.0.1")


async def serve_mesh(port: int, upstream: str) -> None:
    from mesh_node.api.app import build_app
    from mesh_node.api.context import Route
    from mesh_node.api.fake import FakeMeshContext, FakeModel
    from mesh_node.api.server import serve_api
    from mesh_node.timing import Timings
    if os.environ.get("HOP_QUIET_LOGS", "1") == "1":  # a node logs JSON to a file, not a TTY
        import logging

        import structlog
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ctx = FakeMeshContext([FakeModel("bench", routes=[Route("up", upstream, True)])])
    # hop_nginx.py also runs the app on hypercorn; no keyword otherwise, so the script also
    # drives an older mesh_node (PYTHONPATH=...) for before/after figures
    import inspect
    kw: dict[str, Any] = {"server": "hypercorn"} if (
        os.environ.get("HOP_SERVER") == "hypercorn"
        and "server" in inspect.signature(serve_api).parameters) else {}
    await serve_api(build_app(ctx, Timings()), "127.0.0.1", port, **kw)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ttfb(client: httpx.AsyncClient, url: str, dialect: str = "openai") -> float:
    # BODY read at call time: hop_nginx.py swaps it for its own request
    path, body = ("/v1/chat/completions", BODY) if dialect == "openai" else DIALECTS[dialect]
    start = time.perf_counter()
    async with client.stream("POST", url + path, content=body,
                             headers={"content-type": "application/json"}) as r:
        elapsed = None
        async for _ in r.aiter_raw():
            if elapsed is None:
                elapsed = time.perf_counter() - start
    assert elapsed is not None, "empty response"
    return elapsed


async def _wait_up(client: httpx.AsyncClient, url: str) -> None:
    with trio.fail_after(30):
        while True:
            try:
                await _ttfb(client, url)
                return
            except httpx.TransportError:
                await trio.sleep(0.1)


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000


def _cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc), so the hop's cost is known even
    when other load on the machine inflates wall-clock latency."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(direct: str, mesh: str, n: int, mesh_pid: int) -> dict[str, float]:
    """Alternating direct/mesh TTFB samples (ms percentiles) and mesh CPU per request; then,
    as a second phase, the three dialects through the mesh in turn (TTFB and CPU each)."""
    async with httpx.AsyncClient(timeout=30) as client:
        await _wait_up(client, direct)
        await _wait_up(client, mesh)
        for _ in range(50):  # warm connections and code paths
            await _ttfb(client, direct)
            for dialect in DIALECTS:
                await _ttfb(client, mesh, dialect)
        d, m = [], []
        cpu0 = _cpu_s(mesh_pid)
        for _ in range(n):
            d.append(await _ttfb(client, direct))
            m.append(await _ttfb(client, mesh))
        cpu = (_cpu_s(mesh_pid) - cpu0) / n * 1000
        dialects = await _dialects(client, mesh, n, mesh_pid)
    return {**dialects, "mesh_cpu_ms": cpu, "direct_p50": _pct(d, 0.5),
            "direct_p99": _pct(d, 0.99), "mesh_p50": _pct(m, 0.5), "mesh_p99": _pct(m, 0.99),
            "added_p50": _pct(m, 0.5) - _pct(d, 0.5), "added_p99": _pct(m, 0.99) - _pct(d, 0.99),
            "added_median_of_pairs": statistics.median(b - a for a, b in zip(d, m, strict=True))
            * 1000}


async def _dialects(client: httpx.AsyncClient, mesh: str, n: int,
                    mesh_pid: int) -> dict[str, float]:
    """TTFB of each dialect through the mesh, in turn (noise hits all alike), and what the
    translation adds over the OpenAI path: p50 difference and median of paired differences.
    CPU per request of each dialect from runs of 50 (tick resolution is 10 ms)."""
    by: dict[str, list[float]] = {k: [] for k in DIALECTS}
    cpu: dict[str, float] = dict.fromkeys(DIALECTS, 0.0)
    for i in range(0, n, 50):
        for dialect in DIALECTS:
            t0 = _cpu_s(mesh_pid)
            for _ in range(min(50, n - i)):
                by[dialect].append(await _ttfb(client, mesh, dialect))
            cpu[dialect] += _cpu_s(mesh_pid) - t0
    out = {f"{k}_p50": _pct(v, 0.5) for k, v in by.items()}
    out |= {f"{k}_cpu_ms": c / n * 1000 for k, c in cpu.items()}
    for k in ("anthropic", "ollama"):
        out[f"{k}_added_p50"] = _pct(by[k], 0.5) - _pct(by["openai"], 0.5)
        out[f"{k}_added_pairs"] = statistics.median(
            b - a for a, b in zip(by["openai"], by[k], strict=True)) * 1000
    return out


def _profiled(fn: Any, *args: Any) -> None:
    """trio.run(fn, *args), under cProfile counting this thread's CPU time (not wall time,
    which a loaded machine inflates with preemption) when HOP_PROFILE_OUT names a stats file;
    SIGINT ends the run and the stats are written (hop_profile.py)."""
    out = os.environ.get("HOP_PROFILE_OUT")
    if not out:
        trio.run(fn, *args)
        return
    import cProfile
    import signal
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # terminate(): stats written too
    prof = cProfile.Profile(time.thread_time)
    prof.enable()
    try:
        trio.run(fn, *args)
    except KeyboardInterrupt:
        pass
    finally:
        prof.disable()
        prof.dump_stats(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--upstream", help="existing upstream base URL instead of the fast one")
    ap.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve-mesh", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_upstream:
        trio.run(serve_upstream, args.serve_upstream)
        return
    if args.serve_mesh:
        _profiled(serve_mesh, int(args.serve_mesh[0]), args.serve_mesh[1])
        return
    procs = []
    try:
        upstream = args.upstream
        if upstream is None:
            up_port = _port()
            upstream = f"http://127.0.0.1:{up_port}"
            procs.append(subprocess.Popen([sys.executable, __file__, "--serve-upstream",
                                           str(up_port)]))
        mesh_port = _port()
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve-mesh", str(mesh_port),
                                       upstream], env={**os.environ}))
        r = trio.run(partial(measure, upstream, f"http://127.0.0.1:{mesh_port}", args.requests,
                             procs[-1].pid))
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
    print(f"requests per path: {args.requests} (alternating), upstream {upstream}")
    print(f"TTFB direct: p50 {r['direct_p50']:.3f} ms  p99 {r['direct_p99']:.3f} ms")
    print(f"TTFB mesh:   p50 {r['mesh_p50']:.3f} ms  p99 {r['mesh_p99']:.3f} ms")
    print(f"added by one hop: p50 {r['added_p50']:.3f} ms  p99 {r['added_p99']:.3f} ms  "
          f"(median of paired differences {r['added_median_of_pairs']:.3f} ms)")
    print(f"mesh process CPU per request: {r['mesh_cpu_ms']:.3f} ms (load-independent cost)")
    print(f"dialects through the mesh, in turn: openai p50 {r['openai_p50']:.3f} ms, "
          f"CPU {r['openai_cpu_ms']:.3f} ms/request")
    for k in ("anthropic", "ollama"):
        print(f"  {k}: p50 {r[f'{k}_p50']:.3f} ms, CPU {r[f'{k}_cpu_ms']:.3f} ms/request; "
              f"translation adds {r[f'{k}_added_p50']:.3f} ms p50 (median of paired "
              f"differences {r[f'{k}_added_pairs']:.3f} ms)")
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("target p50 added < 1 ms:", "met" if r["added_p50"] < 1.0 else "NOT met")


if __name__ == "__main__":
    main()
