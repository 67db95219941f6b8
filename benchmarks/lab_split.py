"""Decode tok/s of the mesh-orchestrated split against the same split started by hand.

Three lab hosts (network namespaces, root). The mesh: `mesh-node run` on each, memory caps so
the Gemma 3 270M GGUF fits on no node alone, only h1 holding it: h1 hosts, h2 and h3 are RPC
workers. By hand, in the same run and the same namespaces: `ggml-rpc-server` on h2 and h3 (other
port) and `llama-server -m ... --rpc h2:p,h3:p` on h1: the command the mesh ran (read from its
`backend_started` log event) with only the listen address and worker ports changed, so only
the orchestration differs. Requests alternate between
the hand server, the mesh through the host's API and the mesh through a worker's API (one
forwarding hop); decode tok/s is llama-server's own `timings.predicted_per_second`.

    sudo .venv/bin/python benchmarks/lab_split.py [--runs 7] [--tokens 64]

Prints a table and writes benchmarks/results/lab_split.json. Target: mesh/hand >= 0.97.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lab"))

from election_configs import (  # noqa: E402
    ELAB_THREADS,
    GEMMA_ID,
    elab_catalog_memory,
    elab_gemma_file,
    elab_seed_demo,
    elab_specs,
    elab_split3_cap,
    elab_split_ready,
    elab_start,
)
from netlab import Lab, wait_until  # noqa: E402

from mesh_node.backends import binaries  # noqa: E402
from mesh_node.config.model import Config, NodeConfig  # noqa: E402

HAND_RPC_PORT = 50062  # beside the mesh's workers on 50052
HAND_API_PORT = 8091
PROMPT = "Write a short story about a lighthouse keeper and a storm."


def mesh_host_argv(log_text: str) -> list[str]:
    """The llama-server argv the mesh started (its `backend_started` event)."""
    for line in log_text.splitlines():
        if line.startswith("{") and '"backend_started"' in line:
            ev = json.loads(line)
            if str(ev.get("child", "")).startswith("llama-host:"):
                return [str(a) for a in ev["argv"]]
    raise RuntimeError("no llama-host backend_started event in the host's log")


def arg_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def chat_timed(ns: str, url: str, tokens: int) -> dict[str, Any]:
    """One chat completion from inside `ns`: llama-server's timings plus client wall time."""
    body = json.dumps({"model": GEMMA_ID, "max_tokens": tokens, "temperature": 0,
                       "ignore_eos": True, "messages": [{"role": "user", "content": PROMPT}]})
    argv = ["ip", "netns", "exec", ns, "curl", "-sS", "-m", "120", "-X", "POST",
            "-H", "content-type: application/json", "--data-binary", "@-",
            "-w", "\n%{http_code} %{time_total}", f"{url}/v1/chat/completions"]
    cp = subprocess.run(argv, input=body, capture_output=True, text=True, timeout=130)
    text, _, tail = cp.stdout.rpartition("\n")
    code, wall = tail.split() if tail.count(" ") == 1 else ("0", "0")
    if code != "200":
        raise RuntimeError(f"chat via {url}: HTTP {code} {text[:300]} {cp.stderr}")
    doc = json.loads(text)
    t = doc.get("timings")
    if not isinstance(t, dict):
        raise RuntimeError(f"no timings object in the response via {url}: {list(doc)}")
    n = int(t["predicted_n"])
    return {"decode_tps": float(t["predicted_per_second"]), "predicted_n": n,
            "prompt_tps": float(t.get("prompt_per_second", 0.0)), "wall_s": float(wall),
            "wall_tps": n / float(wall) if float(wall) > 0 else 0.0}


def hand_argv_from(mesh_argv: list[str], lab: Lab, server: str) -> list[str]:
    """The mesh's llama-server command with only the listen address and worker ports changed."""
    argv = [server, *mesh_argv[1:]]
    argv[argv.index("--host") + 1] = lab.host(1).addr
    argv[argv.index("--port") + 1] = str(HAND_API_PORT)
    i = argv.index("--rpc") + 1
    argv[i] = ",".join(f"{w.rsplit(':', 1)[0]}:{HAND_RPC_PORT}" for w in argv[i].split(","))
    return argv


def start_hand_split(lab: Lab, mesh_argv: list[str]) -> list[str]:
    """Workers on h2/h3 and llama-server on h1, started by hand; returns the server argv."""
    cfg = Config(NodeConfig("bench", lab.workdir))
    server, rpc = binaries.llama_server(cfg), binaries.rpc_server(cfg)
    if server is None or rpc is None:
        raise RuntimeError("llama-server / ggml-rpc-server not found")
    for k in (2, 3):
        lab.host(k).run([str(rpc.path), "-H", lab.host(k).addr, "-p", str(HAND_RPC_PORT),
                         "-t", str(ELAB_THREADS), "-c"], env=rpc.env)
    argv = hand_argv_from(mesh_argv, lab, str(server.path))
    time.sleep(1.0)  # let the workers bind before llama-server connects to them
    lab.host(1).run(argv, env=server.env)
    wait_until(lambda: lab.http_get(1, "/health", port=HAND_API_PORT).status == 200, 120.0, 0.5,
               "the hand-started llama-server to be healthy")
    return argv


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (their own threads, not their children)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: stat(5) fields 14 and 15
    return total / os.sysconf("SC_CLK_TCK")


def measure(urls: dict[str, tuple[str, str]], runs: int, tokens: int, node_pids: list[int]
            ) -> dict[str, list[dict[str, Any]]]:
    """Rounds of one request per path (one warm-up each), the order rotating every round, so
    machine noise and order effects hit every path alike."""
    for ns, url in urls.values():
        chat_timed(ns, url, 8)
    names = list(urls)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[: i % len(names)]:
            ns, url = urls[name]
            cpu0 = cpu_seconds(node_pids)
            r = chat_timed(ns, url, tokens)
            # CPU the three mesh-node processes burn meanwhile: it competes with the decode
            r["nodes_cpu_s"] = cpu_seconds(node_pids) - cpu0
            out[name].append(r)
    return out


def summarize(series: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Medians per path, and the median of per-round ratios to the hand path (paired)."""
    hand = series["hand"]
    return {name: {"decode_tps_median": statistics.median(r["decode_tps"] for r in rs),
                   "wall_tps_median": statistics.median(r["wall_tps"] for r in rs),
                   "predicted_n_median": statistics.median(r["predicted_n"] for r in rs),
                   "nodes_cpu_s_median": statistics.median(r["nodes_cpu_s"] for r in rs),
                   "paired_ratio_median": statistics.median(
                       r["decode_tps"] / h["decode_tps"] for r, h in zip(rs, hand, strict=True))}
            for name, rs in series.items()}


def run(runs: int, tokens: int) -> dict[str, Any]:
    with Lab(3) as lab:
        gguf = elab_gemma_file(lab.workdir / "cache")
        cap = elab_split3_cap(elab_catalog_memory(gguf, lab.workdir / "probe"))
        specs = elab_specs(lab, cap, demo_on={1})
        elab_seed_demo(specs[0].data_dir, gguf)
        nodes = elab_start(lab, specs)
        t0 = time.monotonic()
        nodes[0].wait_for(elab_split_ready(GEMMA_ID, 3, 2), 150.0)
        split_ready_s = time.monotonic() - t0
        mesh_argv = mesh_host_argv(nodes[0].log_text())
        hand_argv = start_hand_split(lab, mesh_argv)
        urls = {"hand": (lab.host(1).ns, f"http://{lab.host(1).addr}:{HAND_API_PORT}"),
                "mesh_via_host": (nodes[0].ns, nodes[0].base_url),
                "mesh_via_worker": (nodes[1].ns, nodes[1].base_url)}
        series = measure(urls, runs, tokens, [n.proc.pid for n in nodes])
    summary = summarize(series)
    hand = summary["hand"]["decode_tps_median"]
    return {"runs": runs, "tokens": tokens, "cap_bytes": cap, "split_ready_s": split_ready_s,
            "mesh_argv": mesh_argv, "hand_argv": hand_argv, "series": series, "summary": summary,
            "ratio_mesh_via_host": summary["mesh_via_host"]["decode_tps_median"] / hand,
            "ratio_mesh_via_worker": summary["mesh_via_worker"]["decode_tps_median"] / hand,
            "loadavg": os.getloadavg()[0], "cores": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    r = run(args.runs, args.tokens)
    path = ROOT / "benchmarks" / "results" / "lab_split.json"
    path.write_text(json.dumps(r, indent=2) + "\n")
    print(f"mesh split ready {r['split_ready_s']:.1f} s after start; "
          f"{args.runs} runs x {args.tokens} tokens per path, alternating")
    print(f"split: {' '.join(r['mesh_argv'][r['mesh_argv'].index('--rpc'):])}")
    print(f"{'path':<18}{'decode tok/s':>14}{'client tok/s':>14}{'paired ratio':>14}"
          f"{'nodes CPU s':>13}  (medians per request)")
    for name, s in r["summary"].items():
        print(f"{name:<18}{s['decode_tps_median']:>14.2f}{s['wall_tps_median']:>14.2f}"
              f"{s['paired_ratio_median']:>14.3f}{s['nodes_cpu_s_median']:>13.3f}")
    print(f"ratio mesh/hand: via host {r['ratio_mesh_via_host']:.3f}, "
          f"via worker {r['ratio_mesh_via_worker']:.3f} (target >= 0.97: "
          f"{'met' if min(r['ratio_mesh_via_host'], r['ratio_mesh_via_worker']) >= 0.97 else 'NOT met'})")
    print(f"load average {r['loadavg']:.2f} on {r['cores']} cores; wrote {path}")


if __name__ == "__main__":
    main()
