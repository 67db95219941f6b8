"""The election in the lab: real split over RPC workers, MLX unservable, failover after kill -9.

Real `mesh-node run` processes in network namespaces, real llama-server / ggml-rpc-server.
Memory caps come from the catalog's own estimate (election_configs), so "fits on no node
alone" follows the estimator. Every wait is bounded.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from election_configs import (
    GEMMA_ID,
    ElabModel,
    elab_catalog_memory,
    elab_chat,
    elab_first_success,
    elab_gemma_file,
    elab_kill_host,
    elab_listeners,
    elab_need,
    elab_placement,
    elab_seed_demo,
    elab_specs,
    elab_split2_cap,
    elab_split3_cap,
    elab_split_ready,
    elab_start,
)
from netlab import Lab, NodeProc

pytestmark = [pytest.mark.lab, pytest.mark.real]

ELAB_ROOT = Path(__file__).resolve().parents[2]
ELAB_SPLIT_READY_S = 150.0  # 3 node starts + worker readiness + llama-server load over RPC
ELAB_RPC_PORT = 50052  # LlamaConfig.rpc_port default (the planner assigns this port too)


@pytest.fixture(scope="module")
def elab_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = elab_gemma_file(tmp_path_factory.mktemp("elab-cache"))
    return path


@pytest.fixture(scope="module")
def elab_gemma_memory(elab_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> int:
    memory: int = elab_catalog_memory(elab_gguf, tmp_path_factory.mktemp("elab-probe"))
    return memory


@pytest.fixture(scope="module")
def elab_mlx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ELAB_ROOT))
    from tests.support.tiny_mlx import make_tiny_mlx_model

    return make_tiny_mlx_model(tmp_path_factory.mktemp("elab-mlx") / "tiny-mlx-llama")


def elab_chat_ok(node: NodeProc, model: str, timeout: float = 60.0) -> dict[str, Any]:
    """A chat completion through `node` that must succeed with some text."""
    res = elab_chat(node.ns, node.base_url, model, timeout=timeout)
    assert res.status == 200, f"chat via {node.ns}: {res.status} {res.body[:300]} {res.error}\n" \
                              + node.log_tail(20)
    doc: dict[str, Any] = res.json()
    text = doc["choices"][0]["message"]["content"]
    assert isinstance(text, str) and text.strip(), doc
    return doc


def elab_shape(p: dict[str, Any]) -> tuple[str, list[str], set[str]]:
    """What every node must agree on: mode, hosts, the set of workers."""
    return p["mode"], [h["id"] for h in p["hosts"]], {w["id"] for w in p["workers"]}


def elab_serving(st: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """member id -> its serving records, as one node's status shows them."""
    return {m["id"]: m["serving"] for m in st["members"]}


@pytest.fixture
def elab_lab(lab_factory: Callable[..., Lab]) -> Iterator[Lab]:
    yield lab_factory(3)


def test_split_over_rpc_workers_and_mlx_unservable(
        elab_lab: Lab, elab_gguf: Path, elab_gemma_memory: int, elab_mlx_dir: Path) -> None:
    lab = elab_lab
    cap = elab_split3_cap(elab_gemma_memory)
    assert elab_need(elab_gemma_memory) > cap  # fits on no node alone ...
    assert math.ceil(elab_need(elab_gemma_memory) / 2) > cap  # ... nor on two (equal halves)
    mlx_memory = elab_catalog_memory(elab_mlx_dir, lab.workdir / "probe")
    assert elab_need(mlx_memory) > cap  # the cap, not the size, forbids the MLX model
    specs = elab_specs(lab, cap, demo_on={1},
                       models={2: [ElabModel(elab_mlx_dir, alias="tiny-mlx")]})
    elab_seed_demo(specs[0].data_dir, elab_gguf)
    nodes = elab_start(lab, specs)
    ids = [n.wait_for(lambda s: bool(s.get("node")), 60.0)["node"]["id"] for n in nodes]

    st = nodes[0].wait_for(elab_split_ready(GEMMA_ID, 3, 2), ELAB_SPLIT_READY_S)
    p = elab_placement(st, GEMMA_ID)
    assert p is not None
    assert [h["id"] for h in p["hosts"]] == [ids[0]], p  # the only holder hosts
    assert {w["id"] for w in p["workers"]} == {ids[1], ids[2]}, p
    assert "split" in p["reason"], p

    # Every node elects the same host and workers and serves through the mesh (workers
    # forward). Workers are compared as a set: their order follows gossiped incumbency, which
    # an earlier planner kept per node (seen diverging here); only the host acts on the order.
    for node in nodes:
        other = elab_placement(node.wait_for(elab_split_ready(GEMMA_ID, 3, 2), 30.0), GEMMA_ID)
        assert other is not None and elab_shape(other) == elab_shape(p), (other, p)
        doc = elab_chat_ok(node, GEMMA_ID)
        assert doc["model"] == GEMMA_ID or GEMMA_ID in json.dumps(doc)

    # The RPC workers listen on their mesh address only (they have no authentication).
    for k in (2, 3):
        lines = elab_listeners(lab.host(k).ns, ELAB_RPC_PORT)
        assert lines, f"no RPC listener on h{k}"
        assert all(f"{lab.host(k).addr}:{ELAB_RPC_PORT}" in ln for ln in lines), lines
        assert all("rpc-server" in ln for ln in lines), lines
    assert not elab_listeners(lab.host(1).ns, ELAB_RPC_PORT)  # the host is no worker

    # The MLX model: unservable with its reason, never split, no worker role anywhere.
    mlx_ids = {e["id"] for e in st["catalog"] if e["backend"] == "mlx"}
    assert len(mlx_ids) == 1, st["catalog"]
    mlx_id = mlx_ids.pop()
    for node in nodes:
        s = node.status()
        mp = elab_placement(s, mlx_id)
        assert mp is not None and mp["mode"] == "unservable", mp
        assert mp["workers"] == [] and mp["hosts"] == [], mp
        assert "cannot split" in mp["reason"] and "needs" in mp["reason"], mp
        for member_id, serving in elab_serving(s).items():
            assert not [r for r in serving if r["model"] == mlx_id], (member_id, serving)
    res = elab_chat(nodes[1].ns, nodes[1].base_url, mlx_id, timeout=40.0)
    assert res.status >= 400, res  # not served anywhere: an error, not a hang
    print(f"\nelection lab: cap {cap / 2**20:.0f} MiB/node, gemma needs "
          f"{elab_need(elab_gemma_memory) / 2**20:.0f} MiB; split reason: {p['reason']}\n"
          f"mlx reason: {mp['reason']}; mlx chat -> HTTP {res.status}")


def test_kill_9_of_the_split_host_re_elects_and_serves(
        elab_lab: Lab, elab_gguf: Path, elab_gemma_memory: int) -> None:
    lab = elab_lab
    cap = elab_split2_cap(elab_gemma_memory)
    assert elab_need(elab_gemma_memory) > cap  # still a split, but any two nodes suffice
    specs = elab_specs(lab, cap, demo_on={1, 2})
    for spec in specs[:2]:
        elab_seed_demo(spec.data_dir, elab_gguf)
    nodes = elab_start(lab, specs)
    ids = [n.wait_for(lambda s: bool(s.get("node")), 60.0)["node"]["id"] for n in nodes]
    st = nodes[2].wait_for(elab_split_ready(GEMMA_ID, 3, 1), ELAB_SPLIT_READY_S)
    p = elab_placement(st, GEMMA_ID)
    assert p is not None
    host_id = p["hosts"][0]["id"]
    assert host_id in ids[:2], p  # a holder hosts
    k_host = ids.index(host_id) + 1
    survivors = [n for k, n in enumerate(nodes, start=1) if k != k_host]
    elab_chat_ok(survivors[0], GEMMA_ID)

    t_kill = time.monotonic()
    elab_kill_host(lab, k_host)
    t_ok = elab_first_success(survivors[0], GEMMA_ID, 90.0)
    st2 = survivors[0].status()
    p2 = elab_placement(st2, GEMMA_ID)
    assert p2 is not None and p2["mode"] == "split", p2
    new_host = p2["hosts"][0]["id"]
    assert new_host != host_id and new_host in ids[:2], p2
    assert host_id not in {w["id"] for w in p2["workers"]}, p2
    for node in survivors:
        elab_chat_ok(node, GEMMA_ID)
    print(f"\nelection lab: kill -9 of split host {host_id[:8]} -> first completion through "
          f"{survivors[0].ns} after {t_ok - t_kill:.2f} s; new placement: {p2['reason']}")
    assert t_ok - t_kill < 90.0
