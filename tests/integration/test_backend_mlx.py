"""Real mlx_lm.server serving a tiny generated MLX model; split requests refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from mesh_node.backends import mlx
from mesh_node.backends.capabilities import mlx_capability
from mesh_node.backends.supervisor import Supervisor
from mesh_node.catalog.entry import CatalogEntry, mlx_entry
from mesh_node.timing import Timings
from tests.support.backends_config import backends_test_config
from tests.support.backends_procs import free_port, pid_alive
from tests.support.tiny_mlx import make_tiny_mlx_model

pytestmark = pytest.mark.real
LOAD = 120.0
FAST = Timings(backend_restart_min=0.2, backend_restart_max=1.0, backend_stop_grace=3.0)


@pytest.fixture
def tiny(tmp_path: Path) -> CatalogEntry:
    entry = mlx_entry("tiny-llama-mlx", make_tiny_mlx_model(tmp_path / "tiny-llama-mlx"), 512)
    assert entry.error is None and entry.backend == "mlx"
    return entry


async def test_backend_mlx_serves_completion(tiny: CatalogEntry, tmp_path: Path,
                                             nursery: trio.Nursery) -> None:
    cfg = backends_test_config(tmp_path)
    assert mlx_capability(cfg).available
    sup: Supervisor = await nursery.start(Supervisor(FAST).run)
    port = free_port()
    child = await sup.start(mlx.host_spec(tiny, port, cfg))
    with trio.fail_after(LOAD):
        state = await child.wait_ready()
    assert state.status == "ready" and state.pid is not None
    body = mlx.rewrite_request_body(
        {"model": "tiny-llama-mlx", "messages": [{"role": "user", "content": "hello"}],
         "max_tokens": 8}, tiny)
    assert body["model"] == str(tiny.path)
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["choices"][0]["message"]["content"] is not None
    assert out["usage"]["completion_tokens"] > 0
    await sup.stop(child.name)
    assert not pid_alive(state.pid)


def test_backend_mlx_split_refused(tiny: CatalogEntry) -> None:
    with pytest.raises(mlx.SplitNotSupported, match="cannot split"):
        mlx.split_spec(tiny, workers=("a", "b"))
