"""Headless Debian chromium for the dashboard test and screenshots."""

from __future__ import annotations

import shutil
from pathlib import Path

import trio

from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.records import NodeState
from mesh_node.status.view import build_status
from tests.support.api_mesh import GEMMA, QWEN, sample_members, sample_placement

CHROMIUM_TIMEOUT_S = 60.0


def chromium_bin() -> str:
    """Debian's chromium; fails loudly (scripts/sysdeps.sh installs it)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("chromium not found: run scripts/sysdeps.sh")
    return path


async def chromium(url: str, profile: Path, *extra: str) -> str:
    """Run headless chromium on `url` with `extra` flags; its stdout."""
    cmd = [chromium_bin(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,900", *extra, url]
    with trio.fail_after(CHROMIUM_TIMEOUT_S):
        done = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True)
    return done.stdout.decode(errors="replace")


def dashboard_context() -> FakeMeshContext:
    """A fake node in a three-member mesh with a split placement."""
    ctx = FakeMeshContext([FakeModel(GEMMA.id, aliases=GEMMA.aliases), FakeModel(QWEN.id)],
                          node_id="n1", node_name="studio")
    me = sample_members()[0].state
    assert isinstance(me, NodeState)
    ctx.status_doc = build_status(me=me, uptime_s=4321, mesh_name="home", authenticated=False,
                                  members=sample_members(), placement=sample_placement(),
                                  counters={"gossip_bytes_sent": 1})
    return ctx
