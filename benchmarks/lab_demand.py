"""Demand-driven placement, measured (issue 13): cold request to first token, warm request to
first token, swap time (evict + load), and a burst of 32 concurrent requests with replicas
capped at one against replicas that follow load. One run, lab hosts in network namespaces
(root), real `mesh-node run` + llama-server, the official `openai` client, streamed requests.

  phase 1, one node, three distinct copies of the Gemma 3 270M GGUF, memory for two:
    cold  - a request for a model nothing has loaded (plan, start llama-server, load, 1st token)
    warm  - the same model again (5 requests, median)
    swap  - a request for a third model: the least recently used one is unloaded first (its
            process exits before the newcomer starts), then the newcomer loads (3 swaps, median)
  phase 2, three nodes holding one model, loaded on one: a burst of 32 (24 tokens each) with
    `max_replicas = 1`, then on a fresh mesh with the default: the first burst (the replica
    starts during it) and the next one (both replicas up)

    sudo .venv/bin/python benchmarks/lab_demand.py

Prints a table and writes benchmarks/results/lab_demand.json.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lab"))

from demand_lab import distinct_ggufs, run_client  # noqa: E402
from election_configs import (  # noqa: E402
    GEMMA_ID,
    ElabModel,
    elab_catalog_memory,
    elab_gemma_file,
    elab_need,
    elab_placement,
    elab_specs,
    elab_toml,
)
from netlab import Lab, NodeProc  # noqa: E402

BURST, TOKENS = 32, 24


def _start(lab: Lab, specs: list[Any], extra: str = "") -> list[NodeProc]:
    out = []
    for k, spec in enumerate(specs, start=1):
        hf = lab.host(k).workdir / "hf-empty"
        hf.mkdir(exist_ok=True)
        out.append(lab.host(k).start_node(elab_toml(spec) + extra, env={"HF_HUB_CACHE": str(hf)}))
    return out


def _q(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, math.ceil(q * len(s)) - 1)], 3) if s else float("nan")


def phase_one(gguf: Path, work: Path) -> dict[str, Any]:
    with Lab(1, workdir=work / "one") as lab:
        a, b, c = distinct_ggufs(gguf, work / "three", 3)
        cap = math.floor(elab_need(elab_catalog_memory(a, work / "probe")) * 2.5)
        specs = elab_specs(lab, cap, demo_on=set(),
                           models={1: [ElabModel(f, preload=False) for f in (a, b, c)]})
        (node,) = _start(lab, specs)
        node.wait_for(lambda st: len(st.get("placement", [])) == 3, 60.0)
        ids = ["demand-a", "demand-b", "demand-c"]
        # a cold; a warm x5; b cold (fits); c, a, b: each evicts the least recently used
        order = [ids[0]] + [ids[0]] * 5 + [ids[1], ids[2], ids[0], ids[1]]
        recs = run_client(lab, 1, "seq", node.base_url, str(TOKENS), *order, timeout=600.0)
    bad = [r for r in recs if r["status"] != 200]
    if bad:
        raise SystemExit(f"phase one failed: {bad}")
    ttft = [r["ttft_s"] for r in recs]
    return {"cold_ttft_s": ttft[0], "cold_fits_ttft_s": ttft[6],
            "warm_ttft_s": round(statistics.median(ttft[1:6]), 3),
            "swap_ttft_s": round(statistics.median(ttft[7:10]), 3), "swaps": ttft[7:10],
            "requests": recs}


def _mesh(gguf: Path, work: Path, name: str, max_replicas: int) -> Lab:
    lab = Lab(3, workdir=work / name)
    cap = math.floor(elab_need(elab_catalog_memory(gguf, work / "probe")) * 1.5)
    specs = elab_specs(lab, cap, demo_on=set(),
                       models={k: [ElabModel(gguf, preload=True)] for k in (1, 2, 3)})
    nodes = _start(lab, specs, f"\n[election]\nmax_replicas = {max_replicas}\n")
    nodes[0].wait_for(lambda s: bool(s.get("placement")) and all(
        p["ready"] for p in s["placement"]) and sum(
        m["status"] == "alive" for m in s["members"]) == 3, 120.0)
    return lab


def _burst(lab: Lab, model: str) -> dict[str, Any]:
    recs = run_client(lab, 1, "burst", f"http://{lab.host(1).addr}:9337", model, str(BURST),
                      str(TOKENS), timeout=600.0)
    total = [r["total_s"] for r in recs if r["status"] == 200]
    return {"ok": len(total), "p50_s": _q(total, 0.5), "p90_s": _q(total, 0.9),
            "served_by": len({r.get("served_by") for r in recs})}


def phase_two(gguf: Path, work: Path) -> dict[str, Any]:
    model = GEMMA_ID
    with _mesh(gguf, work, "capped", 1) as lab:
        capped = _burst(lab, model)
    with _mesh(gguf, work, "auto", 8) as lab:
        first = _burst(lab, model)
        p = elab_placement(lab.http_get(1, "/api/status").json(), model)
        second = _burst(lab, model)
    return {"capped": capped, "first": first, "second": second,
            "hosts_after_first": len(p["hosts"]) if p else 0}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lab-demand-") as tmp:
        work = Path(tmp)
        gguf = elab_gemma_file(work / "cache")
        one = phase_one(gguf, work)
        two = phase_two(gguf, work)
    print(f"{'figure':44} {'seconds':>8}")
    for label, value in [("cold request to first token", one["cold_ttft_s"]),
                         ("cold, second model (fits, no eviction)", one["cold_fits_ttft_s"]),
                         ("warm request to first token (median of 5)", one["warm_ttft_s"]),
                         ("swap: evict LRU + load + first token (median 3)", one["swap_ttft_s"])]:
        print(f"{label:44} {value:8.3f}")
    for label, b in [("burst 32, max_replicas = 1", two["capped"]),
                     ("burst 32, replicas follow load: first", two["first"]),
                     ("burst 32, replicas follow load: next", two["second"])]:
        print(f"{label:44} p50 {b['p50_s']:.3f}  p90 {b['p90_s']:.3f}  ok {b['ok']}/{BURST}  "
              f"nodes {b['served_by']}")
    print(f"hosts after the first burst: {two['hosts_after_first']}")
    out = {"phase_one": {k: v for k, v in one.items() if k != "requests"}, "phase_two": two}
    path = ROOT / "benchmarks" / "results" / "lab_demand.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
