"""The pure status builders and the EventHub."""

from __future__ import annotations

import json

import trio

from mesh_node.records import NodeState, Placement
from mesh_node.status.events import EventHub, sse_frame
from mesh_node.status.view import NO_SECRET_WARNING, build_status, model_entries
from tests.support.api_mesh import GEMMA, QWEN, sample_members, sample_placement


def _status(authenticated: bool = True) -> dict:  # type: ignore[type-arg]
    me = sample_members()[0].state
    assert isinstance(me, NodeState)
    return build_status(me=me, uptime_s=12.345, mesh_name="home", authenticated=authenticated,
                        members=sample_members(), placement=sample_placement(),
                        counters={"gossip_bytes_sent": 100, "gossip_packets_sent": 3})


def test_status_view_document_shape() -> None:
    doc = _status()
    assert set(doc) == {"node", "mesh", "members", "catalog", "placement", "counters"}
    assert doc["node"] == {"id": "n1", "name": "studio", "version": "0.1.0", "uptime_s": 12.3,
                           "address": "10.77.0.1", "api_port": 9337, "gossip_port": 9338}
    assert doc["mesh"] == {"name": "home", "authenticated": True, "warning": None}
    m1 = doc["members"][0]
    assert set(m1) >= {"id", "name", "status", "incarnation", "address", "capabilities",
                       "memory_offered", "memory_free", "serving", "inflight"}
    assert m1["capabilities"][1] == {"name": "mlx", "version": "", "splittable": False,
                                     "available": False,
                                     "reason": "not a Mac and mlx not installed"}
    assert [m["status"] for m in doc["members"]] == ["alive", "alive", "suspect"]
    json.dumps(doc)  # serialisable as is


def test_status_view_placement_and_catalog() -> None:
    doc = _status(authenticated=False)
    assert doc["mesh"]["warning"] == NO_SECRET_WARNING
    gemma, qwen = doc["placement"]
    assert gemma["ready"] is True and gemma["hosts"] == [{"id": "n1", "name": "studio"}]
    assert qwen["ready"] is False and qwen["mode"] == "split"
    assert qwen["workers"] == [{"id": "n2", "name": "laptop", "weight": 0.2}]
    assert "studio + laptop" in qwen["reason"]
    cat = {e["id"]: e for e in doc["catalog"]}
    assert cat[QWEN.id]["nodes"] == ["n1", "n2"] and cat[GEMMA.id]["aliases"] == ["gemma"]


def test_status_view_model_entries() -> None:
    entries = {e["id"]: e for e in model_entries(sample_placement(), sample_members())}
    assert entries[GEMMA.id] == {"id": GEMMA.id, "aliases": ["gemma"], "key": "gemma-3-270m",
                                 "backend": "llama", "mode": "solo", "hosts": ["n1"],
                                 "ready": True, "status": "loaded"}
    assert entries[QWEN.id]["ready"] is False and entries[QWEN.id]["status"] == "loading"
    assert model_entries(Placement(), sample_members())[0]["mode"] == "unplanned"


async def test_status_events_slow_subscriber_drops_oldest() -> None:
    hub = EventHub(buffer=4, clock=lambda: 1.0)
    with hub.subscribe() as sub:
        for i in range(10):
            hub.publish("member", {"i": i})  # never blocks although nobody reads
        got = [sub.receive.receive_nowait()["data"]["i"] for _ in range(4)]
        assert got == [6, 7, 8, 9] and sub.dropped == 6
    assert hub.subscribers == 0


async def test_status_events_sse_stream() -> None:
    hub = EventHub(clock=lambda: 5.0)
    frames = hub.sse(keepalive=0.05)
    hello = await frames.__anext__()
    assert b'"kind":"hello"' in hello and hub.subscribers == 1
    assert await frames.__anext__() == b": keepalive\n\n"
    hub.publish("placement", {"model": "m"})
    with trio.fail_after(5):
        frame = await frames.__anext__()
    assert frame == sse_frame({"id": 1, "kind": "placement", "ts": 5.0, "data": {"model": "m"}})
    await frames.aclose()  # type: ignore[attr-defined]
    assert hub.subscribers == 0
