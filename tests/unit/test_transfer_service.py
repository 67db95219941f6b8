"""The transfer service (trio shell) between two in-process nodes over real HTTP: digests in
the background join the catalog, `pull` copies a model from a peer, the copy is verified,
joins the catalog as a copy, is shared onward, and the progress reaches status and events."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio

from mesh_node.api.app import build_app
from mesh_node.api.fake import FakeMeshContext
from mesh_node.api.server import serve_api
from mesh_node.catalog.entry import CatalogEntry, gguf_entry
from mesh_node.config.model import Config, NodeConfig
from mesh_node.records import MemberView, NodeState
from mesh_node.status.events import EventHub
from mesh_node.timing import Timings
from mesh_node.transfer.service import TransferService
from tests.support.backends_gguf import write_tiny_gguf

T = Timings(transfer_progress_publish=0.01, transfer_retry_min=0.01, transfer_retry_max=0.05)


def _service(tmp: Path, name: str, catalog: list[CatalogEntry],
             members: Sequence[MemberView], changed: trio.Event, events: EventHub
             ) -> TransferService:
    cfg = Config(node=NodeConfig(name, tmp / name / "data"), demo_model=False)
    keys = FakeMeshContext().keys  # one mesh secret for both
    usable = {e.id: e for e in catalog if not e.error}
    return TransferService(cfg, name, keys, catalog, usable, lambda: members, lambda: (),
                           events, T, changed.set)


async def test_pull_copies_verifies_and_shares_onward(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "models" / "tiny-model.gguf", n_tensor_elems=200_000)
    entry = gguf_entry("tiny-model", [gguf], 256)
    holder_changed, me_changed = trio.Event(), trio.Event()
    members: list[MemberView] = []
    events = EventHub()
    holder = _service(tmp_path, "holder", [entry], [], holder_changed, events)
    me = _service(tmp_path, "me", [], members, me_changed, events)
    async with trio.open_nursery() as n:
        await n.start(holder.run)
        with trio.fail_after(10):
            await holder_changed.wait()  # the digest was computed in the background
        digest = holder.usable["tiny-model"].digest
        assert len(digest) == 64 and holder.lookup(digest) is not None
        app = build_app(FakeMeshContext(node_id="holder"), T, blobs=holder)
        port = await n.start(partial(serve_api, app, "127.0.0.1", 0))
        st = NodeState("holder", "holder", "127.0.0.1", port, 9338, 1, 1,
                       catalog=(holder.usable["tiny-model"].to_summary(),))
        members.append(MemberView("holder", "alive", 1, "127.0.0.1", 9338, st))
        await n.start(me.run)
        with trio.fail_after(10):
            await me_changed.wait()  # its own (empty) catalog digested
        me_changed = trio.Event()
        me.on_catalog = me_changed.set
        with events.subscribe() as sub:
            assert me.pull("tiny-model")["state"] == "starting"
            assert me.pull("tiny-model")["state"] in ("starting", "fetching")  # one fetch only
            with trio.fail_after(10):
                await me_changed.wait()
            kinds = []
            while True:
                try:
                    kinds.append(sub.receive.receive_nowait())
                except trio.WouldBlock:
                    break
        copy = me.usable["tiny-model"]
        assert copy.copied and copy.digest == digest and copy.error is None
        assert copy.path.read_bytes() == gguf.read_bytes()
        assert me.lookup(digest) is not None  # the copy is shared onward
        (t,) = me.status()
        assert t["state"] == "verified" and t["bytes"] == t["total"] == gguf.stat().st_size
        assert any(e["kind"] == "transfer" and e["data"]["state"] == "verified" for e in kinds)
        assert me.counters["transfers_completed"] == 1
        assert holder.counters["blob_bytes_served"] == gguf.stat().st_size
        assert me.pull("tiny-model")["state"] == "present"
        assert me.pull("other")["state"].startswith("failed")
        n.cancel_scope.cancel()
