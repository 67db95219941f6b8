"""Configs and drivers of the transfer lab (tests/lab/test_transfer_lab.py, benchmarks/).

Nodes are election-lab nodes (election_configs) with the issue-14 keys added: holders get the
demo GGUF through [[models]], the node that should copy it gets none. Memory caps follow the
catalog's estimate: a holder offers 0.6 of what the model needs solo (so it can only split),
the big node 2.5 (so it fits solo only there). `tc tbf` on a holder's eth0 slows its uploads,
so a kill lands mid-transfer (the kernel has tbf, not netem: FIELD-NOTES).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from election_configs import GEMMA_ID, ElabModel, ElabNode, elab_need, elab_toml
from netlab import Lab, NodeProc
from netlab_proc import wait_until

SMALL = 0.6  # of the solo need: a holder can host only a split
BIG = 2.5  # of the solo need: the copy target hosts it solo
# These tests are about copies, not the split's round-trip gate: on 2 loaded cores copying
# 241 MiB, a clean-clone CI run saw a smoothed gossip RTT to a holder pass the default 80 ms,
# so the planner skipped the split (and with it the "solo instead of a split" move) and the
# fetcher's first holder changed. The gate itself is tested in the planner's unit tests.
MAX_RTT_MS = 1000.0


def tlab_specs(lab: Lab, need_memory: int, holders: set[int]) -> list[ElabNode]:
    """One spec per lab host; `holders` get the GGUF and the small cap."""
    addrs = [h.addr for h in lab.hosts]
    need = elab_need(need_memory)
    return [ElabNode(name=f"tlab{k}", address=h.addr, data_dir=h.workdir / "data",
                     peers=[a for a in addrs if a != h.addr],
                     memory_bytes=int(need * (SMALL if k in holders else BIG)),
                     models=[ElabModel(h.workdir / "models" / f"{GEMMA_ID}.gguf")]
                     if k in holders else [], max_rtt_ms=MAX_RTT_MS)
            for k, h in enumerate(lab.hosts, start=1)]


def tlab_seed(lab: Lab, gguf: Path, holders: set[int], node_ids: dict[int, str] | None = None
              ) -> None:
    """Hard-link the GGUF into each holder's models dir; fixed node ids where given."""
    for k in holders:
        dest = lab.host(k).workdir / "models" / f"{GEMMA_ID}.gguf"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.link(gguf, dest)
    for k, nid in (node_ids or {}).items():
        data = lab.host(k).workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "node_id").write_text(nid + "\n")


def tlab_start_one(lab: Lab, k: int, spec: ElabNode) -> NodeProc:
    hf = lab.host(k).workdir / "hf-empty"
    hf.mkdir(exist_ok=True)
    return lab.host(k).start_node(elab_toml(spec), env={"HF_HUB_CACHE": str(hf)})


def tlab_start(lab: Lab, specs: Sequence[ElabNode]) -> list[NodeProc]:
    return [tlab_start_one(lab, k, s) for k, s in enumerate(specs, start=1)]


def tlab_throttle(lab: Lab, k: int, mbit: int) -> None:
    """Host k sends at most `mbit` Mbit/s (token bucket on eth0's egress)."""
    lab.host(k).exec(["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate",
                      f"{mbit}mbit", "burst", "256kb", "latency", "200ms"])


def tlab_local(st: dict[str, Any], model: str = GEMMA_ID) -> dict[str, Any] | None:
    """This node's own catalog entry of `model` (with digest and copied)."""
    return next((e for e in st.get("local_catalog", []) if e["id"] == model), None)


def tlab_transfer(st: dict[str, Any], model: str = GEMMA_ID) -> dict[str, Any] | None:
    return next((t for t in st.get("transfers", []) if t["model"] == model), None)


def tlab_solo_on(st: dict[str, Any], node_id: str, model: str = GEMMA_ID) -> bool:
    p = next((p for p in st.get("placement", []) if p["model"] == model), None)
    return (p is not None and p["mode"] == "solo" and [h["id"] for h in p["hosts"]] == [node_id]
            and bool(p["ready"]))


def tlab_wait_bytes(node: NodeProc, at_least: int, timeout: float) -> dict[str, Any]:
    """Status once the node's fetch of the model has at least `at_least` bytes."""
    def reached(st: dict[str, Any]) -> bool:
        t = tlab_transfer(st)
        return t is not None and t["bytes"] >= at_least
    return node.wait_for(reached, timeout, interval=0.1)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def tlab_log_events(node: NodeProc, event: str) -> list[dict[str, Any]]:
    """The node's JSON log lines with this event name."""
    import json

    out = []
    for line in node.log_text().splitlines():
        if f'"{event}"' in line:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == event:
                out.append(doc)
    return out


def tlab_wait_log(node: NodeProc, event: str, timeout: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = wait_until(lambda: tlab_log_events(node, event) or None,
                                           timeout, 0.2, f"{event} in {node.ns}")
    return got


def monotonic() -> float:
    return time.monotonic()
