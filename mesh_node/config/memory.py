"""How much memory this node offers the mesh for models."""

from __future__ import annotations

import psutil

from mesh_node.config.model import Config

# Offer 3/4 of physical memory: the OS, the node itself and the user's own programs need the
# rest. On Apple Silicon the GPU may only wire about this much of unified memory by default
# (Metal's recommendedMaxWorkingSetSize is ~2/3-3/4 of RAM), so offering more would make the
# election place models that Metal then refuses to load.
OFFER_FRACTION = 0.75


def detect_memory_bytes() -> int:
    """Total physical memory of this machine, in bytes."""
    return int(psutil.virtual_memory().total)


def available_memory_bytes() -> int:
    """Memory available to new processes right now (psutil's `available`), in bytes."""
    return int(psutil.virtual_memory().available)


def offered_memory(config: Config) -> int:
    """node.memory_bytes when configured, else OFFER_FRACTION of the detected total."""
    if config.node.memory_bytes is not None:
        return config.node.memory_bytes
    return int(detect_memory_bytes() * OFFER_FRACTION)
