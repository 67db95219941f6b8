"""Models travel: LAN copy throughput against curl + nginx, and placed-to-serving time.

Two lab hosts (network namespaces on one bridge, root). h1 holds the Gemma 3 270M GGUF
(253 MB) and can only split it; h2 has the memory to serve it solo and no file. In one run:
  1. the mesh: both nodes start; h2 is placed as the copy target, fetches the file from h1,
     verifies it and serves it solo. Measured: from h2's `transfer_started` (the move was
     planned) to its first completion answered there, with the split in between;
  2. throughput, alternating runs: `curl` on h2 fetching the file from nginx (sendfile on) on
     h1, against the production fetcher (transfer/fetch.py: signed Range request, 16 MiB
     chunks hashed in a worker thread, written with pwrite, fsync, rename) on h2 fetching it
     from h1's mesh node. Both write the file to the same disk.

    sudo .venv/bin/python benchmarks/lab_transfer.py [--runs 5]

Prints a table and writes benchmarks/results/lab_transfer.json. Goal: mesh/nginx >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lab"))

RESULTS = ROOT / "benchmarks" / "results" / "lab_transfer.json"
NGINX_PORT = 8099
NGINX_CONF = """daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen {addr}:{port}; root {root}; }}
}}
"""


def fetch_once(url: str, node_id: str, digest: str, size: int, out: str) -> None:
    """Inside h2: one production fetch of the file from h1's node; prints seconds."""
    import trio
    from election_configs import ELAB_MESH, ELAB_SECRET

    from mesh_node.api.meshauth import forward_headers
    from mesh_node.security import derive_keys
    from mesh_node.timing import DEFAULT_TIMINGS
    from mesh_node.transfer.core import Progress
    from mesh_node.transfer.fetch import Fetch, FetchJob, Source, counters_zero
    from mesh_node.transfer.store import Store

    keys = derive_keys(ELAB_SECRET, ELAB_MESH)

    def sign(s: Source, method: str, path: str) -> dict[str, str]:
        return forward_headers(keys.http_key, "bench", s.node_id, "bench", method, path, b"",
                               time.time())

    async def main() -> float:
        t0 = time.perf_counter()
        prog = Progress("bench", digest, size, trio.current_time())
        await Fetch(FetchJob("bench", digest, size), lambda: [Source(node_id, "h1", url)],
                    sign, Store(Path(out), None), prog, DEFAULT_TIMINGS, counters_zero()).run()
        return time.perf_counter() - t0

    print(json.dumps({"seconds": trio.run(main)}))


def get_once(url: str, node_id: str, digest: str) -> None:
    """Inside h2: the blob GET alone (signed, body discarded): the holder's serving path and
    the network, without hashing or disk; prints seconds."""
    import trio
    from election_configs import ELAB_MESH, ELAB_SECRET

    from mesh_node.api.meshauth import forward_headers
    from mesh_node.security import derive_keys
    from mesh_node.transfer.http import get

    keys = derive_keys(ELAB_SECRET, ELAB_MESH)
    path = f"/mesh/v1/blobs/{digest}"

    async def main() -> float:
        h = forward_headers(keys.http_key, "bench", node_id, "bench", "GET", path, b"",
                            time.time())
        t0 = time.perf_counter()
        async with get(url + path, h | {"range": "bytes=0-"}, 5, 20) as a:
            async for _ in a.body():
                pass
        return time.perf_counter() - t0

    print(json.dumps({"seconds": trio.run(main)}))


def curl_fsync_once(url: str, out: str) -> None:
    """Inside h2: curl to a file, then fsync it (a durable copy, as the fetcher makes)."""
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "-o", out, url], check=True)
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def _ts(ev: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(ev["timestamp"]).replace("Z", "+00:00")).timestamp()


def main() -> None:
    from election_configs import GEMMA_ID, elab_catalog_memory, elab_chat, elab_gemma_file
    from netlab import Lab
    from transfer_configs import (
        tlab_local,
        tlab_log_events,
        tlab_seed,
        tlab_solo_on,
        tlab_specs,
        tlab_start,
    )

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / "mesh-node-transfer-bench"
    gguf = elab_gemma_file(cache)
    size = gguf.stat().st_size
    memory = elab_catalog_memory(gguf, cache / "probe")
    with Lab(2) as lab:
        h1, h2 = lab.host(1), lab.host(2)
        tlab_seed(lab, gguf, {1})
        small, big = tlab_start(lab, tlab_specs(lab, memory, {1}))
        big_id = big.wait_for(lambda st: bool(st.get("node")), 30)["node"]["id"]
        st = big.wait_for(lambda st: bool((e := tlab_local(st)) and e["copied"])
                          and tlab_solo_on(st, big_id), 180)

        def first_answer() -> float | None:
            res = elab_chat(big.ns, big.base_url, GEMMA_ID, max_tokens=4, timeout=30)
            return time.time() if res.status == 200 else None
        t_answer = next(t for _ in range(600) if (t := first_answer()) is not None)
        started = _ts(tlab_log_events(big, "transfer_started")[0])
        verified_ev = tlab_log_events(big, "transfer_verified")[0]
        placed = {"placed_to_verified_s": round(_ts(verified_ev) - started, 2),
                  "placed_to_first_answer_s": round(t_answer - started, 2),
                  "copy_s": verified_ev["seconds"]}
        digest = tlab_local(st)["digest"]  # type: ignore[index]
        holder_id = small.status()["node"]["id"]

        # throughput, alternating: nginx+curl vs the production fetcher, h1 -> h2
        ng = h1.workdir / "nginx"
        ng.mkdir()
        (ng / "nginx.conf").write_text(NGINX_CONF.format(d=ng, addr=h1.addr, port=NGINX_PORT,
                                                         root=gguf.parent))
        h1.run(["/usr/sbin/nginx", "-p", str(ng), "-c", str(ng / "nginx.conf")])
        time.sleep(1.0)  # not a sync: the probe below checks nginx answers
        url = f"http://{h1.addr}:{NGINX_PORT}/{gguf.name}"
        out = h2.workdir / "bench-out"
        curl_s: list[float] = []
        curl_sync_s: list[float] = []
        get_s: list[float] = []
        mesh_s: list[float] = []

        def me(*argv: str) -> float:
            cp = h2.exec([sys.executable, __file__, *argv], timeout=300)
            return float(json.loads(cp.stdout.strip().splitlines()[-1])["seconds"])
        for _ in range(args.runs):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            cp = h2.exec(["curl", "-sS", "-o", str(out / "curl.gguf"), "-w", "%{time_total}",
                          url], timeout=120)
            assert (out / "curl.gguf").stat().st_size == size
            curl_s.append(float(cp.stdout))
            (out / "curl.gguf").unlink()
            curl_sync_s.append(me("--curl-fsync-once", url, str(out / "curl.gguf")))
            get_s.append(me("--get-once", small.base_url, holder_id, digest))
            shutil.rmtree(out, ignore_errors=True)
            mesh_s.append(me("--fetch-once", small.base_url, holder_id, digest, str(size),
                             str(out)))
        mb = size / 1e6
        doc = {
            "date": time.strftime("%Y-%m-%d"), "file_bytes": size, "runs": args.runs,
            "load_average": os.getloadavg(),
            "nginx_curl_s": curl_s, "nginx_curl_fsync_s": curl_sync_s,
            "mesh_get_only_s": get_s, "mesh_fetch_s": mesh_s,
            "nginx_MBps_median": round(mb / statistics.median(curl_s), 1),
            "nginx_fsync_MBps_median": round(mb / statistics.median(curl_sync_s), 1),
            "mesh_get_only_MBps_median": round(mb / statistics.median(get_s), 1),
            "mesh_MBps_median": round(mb / statistics.median(mesh_s), 1),
            "ratio_median": round(statistics.median(curl_s) / statistics.median(mesh_s), 3),
            "ratio_durable_median": round(statistics.median(curl_sync_s)
                                          / statistics.median(mesh_s), 3),
            "ratio_get_only_median": round(statistics.median(curl_s)
                                           / statistics.median(get_s), 3),
            **placed,
        }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--fetch-once":
        fetch_once(*sys.argv[2:5], int(sys.argv[5]), sys.argv[6])
    elif len(sys.argv) > 1 and sys.argv[1] == "--get-once":
        get_once(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "--curl-fsync-once":
        curl_fsync_once(*sys.argv[2:4])
    else:
        main()
