"""One mesh hop against direct and against an nginx reverse proxy, in the same run.

    .venv/bin/python benchmarks/hop_nginx.py [--requests 1000] [--llama-requests 100]

On loopback: a fast upstream (hop_latency's), a real llama-server (Gemma 3 270M, 1 thread),
one mesh app per upstream (hypercorn + FakeMeshContext routing to it) and one nginx (our own
process, temp config, `daemon off;`, keep-alive upstreams, buffering off) in front of both.
Prints TTFB p50/p99 of direct / mesh / nginx (requests alternate, so machine noise hits all
paths alike), streamed tokens/s mesh vs direct at concurrency 1, 8, 32, and writes
benchmarks/results/hop_nginx.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hop_latency import _cpu_s, _pct, _port, _ttfb, _wait_up  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "hop_nginx.json"
RETRIED: dict[str, int] = {}  # streamed requests retried once after a silent close, by URL
DEMO_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "mesh-node-api-demo"  # shared with tests
PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
LLAMA_START_S = 180.0
NGINX_CONF = """daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
{servers}
}}
"""
NGINX_SERVER = """  upstream up{i} {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://up{i};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }}
  }}
"""


class Procs:
    """Child processes of this run, all terminated (then killed) at exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (child owns it)
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def start_llama(procs: Procs, tmp: Path) -> str:
    """llama-server with Gemma 3 270M on 1 thread; its base URL (health waited for later)."""
    from mesh_node.backends import binaries
    from mesh_node.catalog.demo import demo_model_path
    from mesh_node.config.model import Config, NodeConfig

    binary = binaries.llama_server(Config(node=NodeConfig("bench", DEMO_DIR)))
    model = demo_model_path(DEMO_DIR)
    if binary is None or model is None:
        raise SystemExit("llama-server or the Gemma package is missing (FIELD-NOTES)")
    port = _port()
    procs.start([str(binary.path), "--host", "127.0.0.1", "--port", str(port), "-m", str(model),
                 "-t", "1", "-c", "4096", "-np", "8"],
                env={**os.environ, **binary.env}, log=tmp / "llama.log")
    return f"http://127.0.0.1:{port}"


def start_nginx(procs: Procs, tmp: Path, upstreams: list[str]) -> list[str]:
    """One nginx process proxying to each upstream; the proxy base URLs in the same order."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx not found: run scripts/sysdeps.sh")
    ports = [_port() for _ in upstreams]
    servers = "".join(NGINX_SERVER.format(i=i, upstream=u.removeprefix("http://"), port=p)
                      for i, (u, p) in enumerate(zip(upstreams, ports, strict=True)))
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=tmp, servers=servers))
    procs.start([nginx, "-p", str(tmp), "-c", str(conf)], log=tmp / "nginx.out")
    return [f"http://127.0.0.1:{p}" for p in ports]


def start_mesh(procs: Procs, upstream: str, server: str = "own",
               src: str | None = None) -> tuple[str, int]:
    """A mesh app in front of `upstream` on mesh-node's own server ("hypercorn": on hypercorn;
    "default": the tree's default server); `src`: import mesh_node from that source tree
    instead (an older version, for before/after, on its own default server)."""
    port = _port()
    env = {**os.environ, "HOP_SERVER": server}
    if src is not None:
        env["PYTHONPATH"] = src
    p = procs.start([sys.executable, str(Path(__file__).with_name("hop_latency.py")),
                     "--serve-mesh", str(port), upstream], env=env)
    return f"http://127.0.0.1:{port}", p.pid


async def wait_llama(url: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        with trio.fail_after(LLAMA_START_S):
            while True:
                try:
                    if (await client.get(url + "/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.3)


async def ttfb_paths(paths: dict[str, str], n: int, warm: int, body: bytes | None,
                     pids: dict[str, int]) -> dict[str, Any]:
    """TTFB percentiles per path (ms), requests alternating between paths; CPU per request
    of each process in `pids` (path name -> pid)."""
    import hop_latency
    if body is not None:
        hop_latency.BODY = body  # _ttfb posts this module global
    samples: dict[str, list[float]] = {k: [] for k in paths}
    async with httpx.AsyncClient(timeout=120) as client:
        for url in paths.values():
            await _wait_up(client, url)
        for _ in range(warm):
            for url in paths.values():
                await _ttfb(client, url)
        cpu0 = {name: _cpu_s(pid) for name, pid in pids.items()}
        for _ in range(n):
            for name, url in paths.items():
                samples[name].append(await _ttfb(client, url))
        cpu = {name: (_cpu_s(pid) - cpu0[name]) / n * 1000 for name, pid in pids.items()}
    out: dict[str, Any] = {"requests": n}
    out |= {f"{name}_cpu_ms_per_request": round(c, 3) for name, c in cpu.items()}
    for name, xs in samples.items():
        out[name] = {"p50_ms": round(_pct(xs, 0.5), 3), "p99_ms": round(_pct(xs, 0.99), 3)}
    for name in paths:
        if name != "direct":
            out[f"{name}_added_p50_ms"] = round(out[name]["p50_ms"] - out["direct"]["p50_ms"], 3)
            out[f"{name}_added_p99_ms"] = round(out[name]["p99_ms"] - out["direct"]["p99_ms"], 3)
    return out


async def _stream_tokens(client: httpx.AsyncClient, url: str, max_tokens: int) -> int:
    body = {"model": "bench", "stream": True, "max_tokens": max_tokens, "messages": PROMPT,
            "temperature": 0.0}
    for attempt in range(2):  # a keep-alive connection the server closed as it was reused
        tokens = 0
        try:
            async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                        tokens += 1
            return tokens
        except httpx.RemoteProtocolError:
            if tokens or attempt:
                raise
            RETRIED[url] = RETRIED.get(url, 0) + 1
    return 0


async def tokens_per_s(url: str, conc: int, per_stream: int, max_tokens: int) -> float:
    """Streamed tokens/s over `conc` concurrent clients, each running `per_stream` requests."""
    total = 0
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        async def worker() -> None:
            nonlocal total
            for _ in range(per_stream):
                n = await _stream_tokens(client, url, max_tokens)  # not `total += await`:
                total += n  # that reads `total` before the await and loses the others' adds
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(conc):
                nursery.start_soon(worker)
        return total / (time.perf_counter() - start)


async def throughput(direct: str, mesh: str, concs: list[int], max_tokens: int,
                     rounds: int) -> dict[str, Any]:
    """tokens/s direct vs mesh per concurrency: `rounds` rounds of direct, mesh, mesh, direct
    (drift cancels) after an uncounted warm-up run (llama-server's slots cache the prompt: a
    cold first run would penalise whichever path went first). The ratio is of the summed
    tokens/s; each round's own ratio is kept, so the spread shows how much is noise (one
    1-thread llama-server on 2 cores that also run the client and the mesh)."""
    out: dict[str, Any] = {}
    for conc in concs:
        await tokens_per_s(direct, conc, 1, max_tokens)
        runs = {"direct": 0.0, "mesh": 0.0}
        per_round = []
        for _ in range(rounds):
            got = {"direct": 0.0, "mesh": 0.0}
            for name in ("direct", "mesh", "mesh", "direct"):
                got[name] += await tokens_per_s(direct if name == "direct" else mesh, conc,
                                                2 if conc == 1 else 1, max_tokens) / 2
            per_round.append(got["mesh"] / got["direct"])
            for name in runs:
                runs[name] += got[name] / rounds
        out[str(conc)] = {"direct_tok_s": round(runs["direct"], 1),
                          "mesh_tok_s": round(runs["mesh"], 1),
                          "ratio": round(runs["mesh"] / runs["direct"], 3),
                          "round_ratios": [round(r, 3) for r in per_round]}
    return out


def _nginx_worker(master: int) -> int:
    """The pid of nginx's one worker (the process that proxies), else the master's."""
    try:
        kids = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        kids = []
    return int(kids[0]) if kids else master


def _llama_body(max_tokens: int) -> bytes:
    return json.dumps({"model": "bench", "stream": True, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()


async def run(args: argparse.Namespace, procs: Procs, tmp: Path) -> dict[str, Any]:
    from hop_latency import BODY
    up_port = _port()
    fast = f"http://127.0.0.1:{up_port}"
    procs.start([sys.executable, str(Path(__file__).with_name("hop_latency.py")),
                 "--serve-upstream", str(up_port)])
    llama = start_llama(procs, tmp)
    floor_port = _port()  # the trio floor: what the runtime alone costs (floor_proxy.py)
    floor_pid = procs.start([sys.executable, str(Path(__file__).with_name("floor_proxy.py")),
                             str(floor_port), str(up_port)]).pid
    mesh_fast, fast_pid = start_mesh(procs, fast)
    hyper_fast, hyper_pid = start_mesh(procs, fast, "hypercorn")  # the server it replaced
    mesh_llama, llama_pid = start_mesh(procs, llama)
    before: dict[str, tuple[str, int]] = {}
    if args.before_src:  # the same app from an older tree, in the same interleaved run
        before = {"fast": start_mesh(procs, fast, "default", args.before_src),
                  "llama": start_mesh(procs, llama, "default", args.before_src)}
    ngx_fast, ngx_llama = start_nginx(procs, tmp, [fast, llama])
    ngx_pid = procs.procs[-1].pid
    await wait_llama(llama)
    res: dict[str, Any] = {"load_avg_start": os.getloadavg()[0], "cores": os.cpu_count(),
                           "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    fast_paths = {"direct": fast, "mesh": mesh_fast, "nginx": ngx_fast, "hypercorn": hyper_fast,
                  "floor": f"http://127.0.0.1:{floor_port}"}
    fast_pids = {"mesh": fast_pid, "hypercorn": hyper_pid, "nginx": _nginx_worker(ngx_pid),
                 "floor": floor_pid}
    llama_paths = {"direct": llama, "mesh": mesh_llama, "nginx": ngx_llama}
    llama_pids = {"mesh": llama_pid}
    if before:
        fast_paths["before"], fast_pids["before"] = before["fast"]
        llama_paths["before"], llama_pids["before"] = before["llama"]
    res["ttfb_fast"] = await ttfb_paths(fast_paths, args.requests, 50, BODY, fast_pids)
    res["ttfb_llama"] = await ttfb_paths(llama_paths, args.llama_requests, 5, _llama_body(2),
                                         llama_pids)
    res["throughput"] = await throughput(llama, mesh_llama, args.concurrency, args.max_tokens,
                                         args.rounds)
    res["throughput_retried"] = {("mesh" if u == mesh_llama else "direct"): n
                                 for u, n in RETRIED.items()}
    res["load_avg_end"] = os.getloadavg()[0]
    return res


def report(r: dict[str, Any]) -> None:
    print(f"load average {r['load_avg_start']:.2f} -> {r['load_avg_end']:.2f} "
          f"on {r['cores']} cores ({r.get('started', '')})")
    print(f"{'TTFB (ms)':<22}{'direct p50/p99':>18}{'mesh p50/p99':>18}{'nginx p50/p99':>18}"
          f"{'mesh +p50/+p99':>16}{'nginx +p50/+p99':>17}")
    for key, label in (("ttfb_fast", "fast upstream"), ("ttfb_llama", "llama-server")):
        t = r[key]
        cols = "".join(f"{t[p]['p50_ms']:>9.3f}/{t[p]['p99_ms']:<8.3f}"
                       for p in ("direct", "mesh", "nginx"))
        added = "".join(f"{t[f'{p}_added_p50_ms']:>8.3f}/{t[f'{p}_added_p99_ms']:<7.3f}"
                        for p in ("mesh", "nginx"))
        print(f"{label + ' (n=' + str(t['requests']) + ')':<22}{cols}{added}")
    for key in ("ttfb_fast", "ttfb_llama"):
        if "before" in r[key]:
            b = r[key]
            print(f"{key}: before this change (--before-src, same run): p50/p99 "
                  f"{b['before']['p50_ms']:.3f}/{b['before']['p99_ms']:.3f} ms, added "
                  f"{b['before_added_p50_ms']:.3f}/{b['before_added_p99_ms']:.3f} ms")
    f = r["ttfb_fast"]
    if "hypercorn" in f:
        print(f"same mesh app on hypercorn (fast upstream, same run): "
              f"p50/p99 {f['hypercorn']['p50_ms']:.3f}/{f['hypercorn']['p99_ms']:.3f} ms, added "
              f"{f['hypercorn_added_p50_ms']:.3f}/{f['hypercorn_added_p99_ms']:.3f} ms")
    if "floor" in f:
        print(f"trio floor (floor_proxy.py: head, JSON, kept-alive upstream, nothing else): "
              f"added {f['floor_added_p50_ms']:.3f}/{f['floor_added_p99_ms']:.3f} ms")
    cpu = ", ".join(f"{k.removesuffix('_cpu_ms_per_request')} {v} ms" for k, v in f.items()
                    if k.endswith("_cpu_ms_per_request"))
    print(f"CPU per request (fast upstream): {cpu}")
    for key in ("ttfb_fast", "ttfb_llama"):
        t = r[key]
        for q in ("p50", "p99"):
            ngx = max(t[f"nginx_added_{q}_ms"], 0.0)
            print(f"  {key} added {q}: mesh {t[f'mesh_added_{q}_ms']:.3f} ms vs 2 x nginx "
                  f"{2 * ngx:.3f} ms: {'met' if t[f'mesh_added_{q}_ms'] <= 2 * ngx else 'NOT met'}")
    print(f"{'concurrency':<14}{'direct tok/s':>14}{'mesh tok/s':>14}{'ratio':>8}")
    for conc, t in r["throughput"].items():
        spread = t.get("round_ratios", [])
        rng = f"  rounds {min(spread):.3f}-{max(spread):.3f}" if spread else ""
        print(f"{conc:<14}{t['direct_tok_s']:>14.1f}{t['mesh_tok_s']:>14.1f}{t['ratio']:>8.3f}"
              f"{rng}")
    worst = min(t["ratio"] for t in r["throughput"].values())
    print(f"throughput ratio >= 0.97: {'met' if worst >= 0.97 else 'NOT met'} (min {worst})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000, help="TTFB samples per path, fast")
    ap.add_argument("--llama-requests", type=int, default=200, help="TTFB samples, llama")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-tokens", type=int, default=32, help="per streamed request")
    ap.add_argument("--rounds", type=int, default=3, help="direct/mesh/mesh/direct rounds "
                    "per concurrency (tokens/s)")
    ap.add_argument("--before-src", help="also run the mesh app from this source tree "
                    "(a checkout's root holding mesh_node/), interleaved: before/after")
    args = ap.parse_args()
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="hop-nginx-"))
    try:
        res = trio.run(run, args, procs, tmp)
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
