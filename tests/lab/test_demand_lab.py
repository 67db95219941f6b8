"""Demand-driven placement in the lab (issue 13): real `mesh-node run` in network namespaces,
real llama-server, the official `openai` client.

- one node, five distinct GGUFs, memory for two: ten requests round-robin over the five all
  answer 200, and the node never runs more than two llama-server processes (sampled every
  0.1 s from the namespace's process table);
- three nodes holding one model: a burst of 32 concurrent requests adds a second replica,
  and its p50 against the same burst with `max_replicas = 1` is printed (figures only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from demand_lab import ProcSampler, distinct_ggufs, p50, run_client
from election_configs import (
    ElabModel,
    elab_catalog_memory,
    elab_gemma_file,
    elab_need,
    elab_placement,
    elab_specs,
    elab_toml,
)
from netlab import Lab, NodeProc

pytestmark = [pytest.mark.lab, pytest.mark.real]

START_S = 60.0  # node start + join window
BURST = 32
BURST_TOKENS = 12


@pytest.fixture(scope="module")
def dlab_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = elab_gemma_file(tmp_path_factory.mktemp("dlab-cache"))
    return path


def _start(lab: Lab, specs: list[Any], extra: str = "") -> list[NodeProc]:
    nodes = []
    for k, spec in enumerate(specs, start=1):
        hf = lab.host(k).workdir / "hf-empty"
        hf.mkdir(exist_ok=True)
        nodes.append(lab.host(k).start_node(elab_toml(spec) + extra,
                                            env={"HF_HUB_CACHE": str(hf)}))
    return nodes


def _planned(n_models: int) -> Callable[[dict[str, Any]], bool]:
    return lambda st: len(st.get("placement", [])) >= n_models


def test_round_robin_five_models_memory_for_two(lab_factory: Callable[..., Lab],
                                                dlab_gguf: Path) -> None:
    lab = lab_factory(1)
    files = distinct_ggufs(dlab_gguf, lab.workdir / "five", 5)
    memory = elab_catalog_memory(files[0], lab.workdir / "probe")
    cap = math.floor(elab_need(memory) * 2.5)  # two fit, three do not
    specs = elab_specs(lab, cap, demo_on=set(),
                       models={1: [ElabModel(f, preload=False) for f in files]})
    (node,) = _start(lab, specs)
    st = node.wait_for(_planned(5), START_S)
    assert {p["mode"] for p in st["placement"]} == {"available"}, st["placement"]
    with ProcSampler(lab.host(1).ns) as sampler:
        assert sampler.count() == 0  # found, listed, nothing loaded
        recs = run_client(lab, 1, "roundrobin", node.base_url, "10", "8", timeout=420.0)
    print(f"\ndemand lab round-robin: {[(r['model'], r['status'], r.get('ttft_s')) for r in recs]}"
          f"; max llama-server processes {sampler.max_seen} over {sampler.samples} samples")
    assert [r["status"] for r in recs] == [200] * 10, recs
    assert all(r.get("chars", 0) > 0 for r in recs), recs
    assert len({r["model"] for r in recs}) == 5
    assert sampler.samples > 10 and 1 <= sampler.max_seen <= 2, sampler.max_seen
    status = {p["model"]: p for p in node.status()["placement"]}
    loaded = [m for m, p in status.items() if p["status"] == "loaded"]
    assert 1 <= len(loaded) <= 2, status


def _burst(lab: Lab, node: NodeProc, model: str) -> list[dict[str, Any]]:
    return run_client(lab, 1, "burst", node.base_url, model, str(BURST), str(BURST_TOKENS),
                      timeout=400.0)


def _mesh(lab_factory: Callable[..., Lab], gguf: Path, max_replicas: int
          ) -> tuple[Lab, list[NodeProc], str]:
    lab = lab_factory(3)
    memory = elab_catalog_memory(gguf, lab.workdir / "probe")
    cap = math.floor(elab_need(memory) * 1.5)  # one model per node
    specs = elab_specs(lab, cap, demo_on=set(),
                       models={k: [ElabModel(gguf, preload=True)] for k in (1, 2, 3)})
    nodes = _start(lab, specs, f"\n[election]\nmax_replicas = {max_replicas}\n")
    st = nodes[0].wait_for(lambda s: bool(s.get("placement")) and all(
        p["ready"] for p in s["placement"]) and sum(
        m["status"] == "alive" for m in s["members"]) == 3, 120.0)
    model = st["placement"][0]["model"]
    return lab, nodes, model


def test_burst_adds_a_replica(lab_factory: Callable[..., Lab], dlab_gguf: Path) -> None:
    lab, nodes, model = _mesh(lab_factory, dlab_gguf, max_replicas=1)
    capped = _burst(lab, nodes[0], model)
    assert [r["status"] for r in capped] == [200] * BURST, capped
    assert len({r["served_by"] for r in capped}) == 1
    lab.close()

    lab, nodes, model = _mesh(lab_factory, dlab_gguf, max_replicas=8)
    first = _burst(lab, nodes[0], model)
    assert [r["status"] for r in first] == [200] * BURST, first
    p = elab_placement(nodes[0].status(), model)
    assert p is not None and len(p["hosts"]) >= 2, p  # a second replica appeared
    second = _burst(lab, nodes[0], model)  # the replica is still there (slow fall)
    assert [r["status"] for r in second] == [200] * BURST, second
    served = {r["served_by"] for r in first + second}
    print(f"\ndemand lab burst of {BURST} x {BURST_TOKENS} tokens, p50 total s: capped at one "
          f"{p50([r['total_s'] for r in capped])}, with replicas first burst "
          f"{p50([r['total_s'] for r in first])}, next burst {p50([r['total_s'] for r in second])}"
          f"; hosts {len(p['hosts'])}, served by {len(served)} nodes")
    assert len(served) >= 2, served
