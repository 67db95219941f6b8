"""BackendChildren's published host states: what the planner is told about a failing host."""

from pathlib import Path

from mesh_node.catalog.entry import CatalogEntry
from mesh_node.node.children import _Host

ENTRY = CatalogEntry("m", Path("/m.gguf"), "gguf", "llama", 1, 1, None, "m")


def test_failed_solo_host_says_failed() -> None:
    h = _Host(key=("m", ()), child="llama-host:m", port=1, entry=ENTRY, backend="llama")
    assert h.published("failed: exit code 1") == "failed: exit code 1"
    assert h.published("ready") == "ready"


def test_failed_split_host_says_retrying_not_failed() -> None:
    """A split host dies with any of its RPC workers; the planner must not disqualify it."""
    h = _Host(key=("m", (("w", "a", 1, 0.5),)), child="c", port=1, entry=ENTRY,
              backend="llama", workers=(("w", 0.5),))
    state = h.published("failed: exit code 1")
    assert state == "retrying: exit code 1"
    assert not state.startswith("failed")
    assert state not in ("starting", "ready")  # not an incumbent either
