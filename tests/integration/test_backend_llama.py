"""Real llama-server (Gemma 3 270M) solo and split over two real RPC workers, supervised."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from mesh_node import records
from mesh_node.backends import llama
from mesh_node.backends.supervisor import Supervisor
from mesh_node.catalog.entry import CatalogEntry, gguf_entry
from mesh_node.timing import Timings
from tests.support.backends_config import backends_test_config
from tests.support.backends_procs import (
    free_port,
    group_members,
    listening_addresses,
    pid_alive,
    shared_demo_gguf,
)

pytestmark = pytest.mark.real
LOAD = 180.0  # model load on 2 busy cores; measured ~2 s idle
FAST = Timings(backend_restart_min=0.2, backend_restart_max=1.0, backend_stop_grace=3.0)


@pytest.fixture(scope="module")
def gemma() -> CatalogEntry:
    entry = gguf_entry("gemma-3-270m-q4_k_m", [shared_demo_gguf()], 512)
    assert entry.error is None and entry.arch == "gemma3"
    return entry


async def _chat(port: int, stream: bool) -> str:
    body = {"model": "x", "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 12, "temperature": 0, "stream": stream}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=120) as client:
        if not stream:
            r = await client.post(url, json=body)
            r.raise_for_status()
            return str(r.json()["choices"][0]["message"]["content"])
        parts: list[str] = []
        async with client.stream("POST", url, json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    parts.append(delta.get("content") or "")
                elif line == "data: [DONE]":
                    parts.append("<DONE>")
        return "".join(parts)


async def test_backend_llama_solo_chat_streamed_and_not(gemma: CatalogEntry, tmp_path: Path,
                                                         nursery: trio.Nursery) -> None:
    sup: Supervisor = await nursery.start(Supervisor(FAST).run)
    port = free_port()
    spec = llama.host_spec(gemma, port, (), backends_test_config(tmp_path))
    assert ("-t", "1") == tuple(spec.argv[spec.argv.index("-t"):spec.argv.index("-t") + 2])
    child = await sup.start(spec)
    with trio.fail_after(LOAD):
        assert (await child.wait_ready()).status == "ready"
    text = await _chat(port, stream=False)
    assert text.strip()
    streamed = await _chat(port, stream=True)
    assert streamed.endswith("<DONE>") and streamed.removesuffix("<DONE>").strip()
    async with httpx.AsyncClient() as c:
        metrics = await c.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert metrics.status_code == 200 and "llamacpp:" in metrics.text


async def test_backend_llama_split_over_two_rpc_workers(gemma: CatalogEntry, tmp_path: Path,
                                                         nursery: trio.Nursery) -> None:
    cfg = backends_test_config(tmp_path)
    sup: Supervisor = await nursery.start(Supervisor(FAST).run)
    workers = []
    for addr in ("127.0.0.2", "127.0.0.3"):
        port = free_port(addr)
        child = await sup.start(llama.worker_spec(addr, port, cfg))
        with trio.fail_after(60):
            assert (await child.wait_ready()).status == "ready"
        assert listening_addresses(port) == {addr}  # bound to the given address only
        workers.append(records.WorkerAssignment(f"node-{addr}", addr, port, 1.0))
    port = free_port()
    spec = llama.host_spec(gemma, port, workers, cfg)
    rpc = f"127.0.0.2:{workers[0].rpc_port},127.0.0.3:{workers[1].rpc_port}"
    assert spec.argv[spec.argv.index("--rpc") + 1] == rpc
    host = await sup.start(spec)
    with trio.fail_after(LOAD):
        assert (await host.wait_ready()).status == "ready"
    assert (await _chat(port, stream=False)).strip()


def test_backend_llama_worker_refuses_wildcard(tmp_path: Path) -> None:
    cfg = backends_test_config(tmp_path)
    for bad in ("0.0.0.0", "::", ""):
        with pytest.raises(ValueError, match="no authentication"):
            llama.worker_spec(bad, 50052, cfg)


async def test_backend_llama_sigkill_restarts_and_cancel_leaves_nothing(
        gemma: CatalogEntry, tmp_path: Path) -> None:
    port = free_port()
    spec = llama.host_spec(gemma, port, (), backends_test_config(tmp_path))
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            sup: Supervisor = await nursery.start(Supervisor(FAST).run)
            child = await sup.start(spec)
            with trio.fail_after(LOAD):
                first = await child.wait_ready()
            assert first.pid is not None
            os.kill(first.pid, signal.SIGKILL)
            with trio.fail_after(LOAD):
                await sup.wait_for(spec.name, ("failed",))
                second = await sup.wait_for(spec.name, ("ready",))
            assert second.restarts == 1 and second.pid not in (None, first.pid)
            assert (await _chat(port, stream=False)).strip()
            assert second.pid is not None
            group = group_members(second.pid)
            nursery.cancel_scope.cancel()
    crashes = [e for e in logs if e["event"] == "backend_crashed"]
    assert len(crashes) == 1 and crashes[0]["code"] == -signal.SIGKILL
    assert group and not any(pid_alive(p) for p in group + [first.pid])
