"""Load: 64 concurrent streaming clients against a 3-node mesh for a few minutes.

Four lab hosts (network namespaces, root), real `mesh-node run` and llama.cpp: h1 and h2 hold
the Gemma 3 270M GGUF as one model with `replicas = 2` (two solo llama-server hosts, 1 thread
each), h3 holds nothing, h4 runs no node and hosts the clients. Each client streams chat
completions (small max_tokens) in a loop through h1, h2 or h3 in turn, so two thirds of the
requests are forwarded over the mesh. Every request is a `request` record of a fault-matrix
history (tests/lab/faults/history.py); the node's RSS (VmRSS of each mesh-node process) is
sampled every few seconds. Figures come from the fault checker (`request_figures`).

    sudo .venv/bin/python benchmarks/lab_load.py [--clients 64] [--duration 180] [--max-tokens 8]

Prints a summary and writes benchmarks/results/lab_load.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
sys.path.insert(0, str(ROOT))

from election_configs import (  # noqa: E402
    GEMMA_ID,
    ElabModel,
    elab_chat,
    elab_gemma_file,
    elab_placement,
    elab_specs,
    elab_toml,
)
from faults.history import read_history  # noqa: E402
from faults.reqcheck import check_requests, percentile, request_figures  # noqa: E402
from netlab import Lab, NodeProc  # noqa: E402

LOAD_MEMORY = 2 * 1024**3  # far above the model's need: solo on each holder
LOAD_READY_S = 240.0
LOAD_RSS_EVERY_S = 5.0
LOAD_RSS_LIMIT_MB = 100.0  # growth from warm-up to the end that counts as unbounded


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MB; None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """Samples each node's VmRSS until stopped: {label: [(t, MB), ...]}."""

    def __init__(self, nodes: dict[str, NodeProc]) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.samples: dict[str, list[tuple[float, float]]] = {k: [] for k in nodes}
        self.stop_ev = threading.Event()

    def run(self) -> None:
        while not self.stop_ev.is_set():
            for label, node in self.nodes.items():
                mb = rss_mb(node.proc.pid)
                if mb is not None:
                    self.samples[label].append((time.time(), mb))
            self.stop_ev.wait(LOAD_RSS_EVERY_S)


def ready_for_load(st: dict[str, Any]) -> bool:
    """3 members alive and both replicas of the model serving."""
    p = elab_placement(st, GEMMA_ID)
    alive = [m for m in st.get("members", []) if m["status"] == "alive"]
    ready = {m["id"] for m in st.get("members", []) for s in m["serving"]
             if s["model"] == GEMMA_ID and s["role"] == "host" and s["ready"]}
    return (len(alive) == 3 and p is not None and len(p["hosts"]) == 2
            and {h["id"] for h in p["hosts"]} <= ready)


def start_mesh(lab: Lab, gguf: Path) -> dict[str, NodeProc]:
    model = ElabModel(gguf, alias="gemma", replicas=2)
    specs = elab_specs(lab, LOAD_MEMORY, demo_on=set(), models={1: [model], 2: [model]})[:3]
    # h4 runs no node (only the clients): it is nobody's static peer
    specs = [replace(s, peers=[p for p in s.peers if p != lab.host(4).addr]) for s in specs]
    env = {"HF_HUB_CACHE": str(lab.workdir / "hf-empty")}
    (lab.workdir / "hf-empty").mkdir(exist_ok=True)
    return {f"h{k}": lab.host(k).start_node(elab_toml(s), env=env)
            for k, s in enumerate(specs, start=1)}


def rss_summary(samples: dict[str, list[tuple[float, float]]], warm: float
                ) -> dict[str, dict[str, float]]:
    """Per node: RSS at the start of the load, max, end, growth (MB)."""
    out = {}
    for label, xs in samples.items():
        during = [mb for t, mb in xs if t >= warm] or [mb for _, mb in xs]
        out[label] = {"start_mb": round(during[0], 1), "max_mb": round(max(during), 1),
                      "end_mb": round(during[-1], 1),
                      "growth_mb": round(during[-1] - during[0], 1),
                      "p50_mb": round(percentile(during, 50), 1)}
    return out


def run_load(clients: int, duration: float, max_tokens: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Lab(4) as lab:
        gguf = elab_gemma_file(Path(tmp))
        nodes = start_mesh(lab, gguf)
        t0 = time.monotonic()
        nodes["h3"].wait_for(ready_for_load, LOAD_READY_S)
        ready_s = time.monotonic() - t0
        for node in nodes.values():  # a warm-up completion through each entry node
            res = elab_chat(node.ns, node.base_url, GEMMA_ID, max_tokens=4, timeout=120.0)
            if res.status != 200:
                raise RuntimeError(f"warm-up through {node.ns} failed: {res}")
        rss = RssSampler(nodes)
        rss.start()
        hist_path = Path(tmp) / "load-history.jsonl"
        urls = ",".join(n.base_url for n in nodes.values())
        warm = time.time()
        cp = lab.host(4).exec([sys.executable, str(Path(__file__).resolve()), "client",
                               "--urls", urls, "--clients", str(clients), "--duration",
                               str(duration), "--max-tokens", str(max_tokens),
                               "--history", str(hist_path)], timeout=duration + 400)
        rss.stop_ev.set()
        rss.join(timeout=10)
        hist = read_history(hist_path)
        alive = {k: n.proc.poll() is None for k, n in nodes.items()}
        check = check_requests(hist, max_errors=0, min_ok=clients)
        result = {"clients": clients, "duration_s": duration, "max_tokens": max_tokens,
                  "ready_s": round(ready_s, 1), "figures": request_figures(hist),
                  "ok": check.ok and all(alive.values()), "errors_seen": check.detail,
                  "nodes_alive": alive, "rss": rss_summary(rss.samples, warm),
                  "client_out": cp.stdout.strip().splitlines()[-1:]}
        result["rss_bounded"] = all(v["growth_mb"] < LOAD_RSS_LIMIT_MB
                                    for v in result["rss"].values())
        return result


# --- the client process (runs inside h4) --------------------------------------------------------
async def _one_stream(client: Any, url: str, max_tokens: int) -> tuple[int, str, int, float | None]:
    """One streaming completion: (status, error, content chunks, seconds to first content)."""
    body = {"model": GEMMA_ID, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "Count from one to ten."}]}
    t0 = time.monotonic()
    tokens, ttft, done = 0, None, False
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            return resp.status_code, (await resp.aread()).decode(errors="replace")[:200], 0, None
        async for line in resp.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                delta = json.loads(line[6:])["choices"][0].get("delta", {})
                if delta.get("content"):
                    tokens += 1
                    ttft = ttft if ttft is not None else time.monotonic() - t0
    return 200, "" if done else "stream ended without [DONE]", tokens, ttft


async def _client_loop(i: int, urls: list[str], until: float, max_tokens: int, hist: Any) -> None:
    import httpx

    n = i
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0)) as client:
        while time.monotonic() < until:
            url = urls[n % len(urls)]
            n += 1
            start = time.time()
            try:
                status, err, tokens, ttft = await _one_stream(client, url, max_tokens)
            except Exception as exc:  # noqa: BLE001 - every failure is a recorded error
                status, err, tokens, ttft = 0, f"{type(exc).__name__}: {exc}", 0, None
            hist.request(url, start, time.time(), status, err, tokens, ttft)


def client_main(args: argparse.Namespace) -> None:
    import trio
    from faults.history import History

    hist = History(Path(args.history))
    urls = args.urls.split(",")
    until = time.monotonic() + args.duration

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(args.clients):
                nursery.start_soon(_client_loop, i, urls, until, args.max_tokens, hist)

    trio.run(main)
    hist.close()
    print(json.dumps({"done": True, "clients": args.clients}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    cl = sub.add_parser("client")
    cl.add_argument("--urls", required=True)
    cl.add_argument("--history", required=True)
    for p in (ap, cl):
        p.add_argument("--clients", type=int, default=64)
        p.add_argument("--duration", type=float, default=180.0)
        p.add_argument("--max-tokens", type=int, default=8)
    args = ap.parse_args()
    if args.cmd == "client":
        client_main(args)
        return
    result = run_load(args.clients, args.duration, args.max_tokens)
    path = ROOT / "benchmarks" / "results" / "lab_load.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    if not (result["ok"] and result["rss_bounded"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
