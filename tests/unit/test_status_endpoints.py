"""Status, events, metrics, health and models endpoints of the app."""

from __future__ import annotations

import json

import httpx
import trio

from mesh_node.api.app import build_app
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.records import NodeState
from mesh_node.status.view import build_status
from mesh_node.timing import Timings
from tests.support.api_mesh import sample_members, sample_placement
from tests.support.api_servers import WAIT_S, api_serving


def _ctx() -> FakeMeshContext:
    ctx = FakeMeshContext([FakeModel("gemma-3-270m", aliases=("gemma",))])
    me = sample_members()[0].state
    assert isinstance(me, NodeState)
    ctx.status_doc = build_status(
        me=me, uptime_s=5, mesh_name="home", authenticated=True, members=sample_members(),
        placement=sample_placement(),
        counters={"gossip_bytes_sent": 1234, "gossip_packets_received_total": 56})
    return ctx


async def test_status_endpoints_status_models_health() -> None:
    ctx = _ctx()
    async with api_serving(build_app(ctx, Timings())) as url, \
            httpx.AsyncClient(base_url=url) as c:
        status = (await c.get("/api/status")).json()
        models = (await c.get("/v1/models")).json()
        health = await c.get("/healthz")
        ready = await c.get("/readyz")
        ctx.ready = (False, "gossip not started")
        unready = await c.get("/readyz")
        page = await c.get("/")
    assert status["node"]["name"] == "studio" and status["api"]["inflight_total"] == 0
    assert models["object"] == "list"
    assert models["data"][0] | {} == {"id": "gemma-3-270m", "object": "model", "created": 0,
                                      "owned_by": "mesh-node", "aliases": ["gemma"],
                                      "key": "gemma-3-270m", "backend": "llama", "mode": "solo",
                                      "hosts": [], "ready": False,
                                      # read by Anthropic's client too
                                      "type": "model", "display_name": "gemma-3-270m",
                                      "created_at": "1970-01-01T00:00:00Z"}
    assert health.status_code == 200 and ready.status_code == 200
    assert unready.status_code == 503 and unready.json()["reason"] == "gossip not started"
    assert page.status_code == 200 and "<title>mesh-node</title>" in page.text


async def test_status_endpoints_metrics() -> None:
    ctx = _ctx()
    async with api_serving(build_app(ctx, Timings(route_retry_window=0.01))) as url, \
            httpx.AsyncClient(base_url=url) as c:
        await c.post("/v1/chat/completions", json={"model": "gemma", "messages": []})
        text = (await c.get("/metrics")).text
    assert 'mesh_members{state="alive"} 2.0' in text
    assert 'mesh_members{state="suspect"} 1.0' in text
    assert "mesh_gossip_bytes_sent_total 1234.0" in text
    assert "mesh_gossip_packets_received_total 56.0" in text
    assert 'mesh_requests_total{model="gemma-3-270m",node="node-a",status="503"} 1.0' in text
    assert 'mesh_request_seconds_count{model="gemma-3-270m",node="node-a"} 1.0' in text


async def test_status_endpoints_events_stream_and_unsubscribe() -> None:
    ctx = _ctx()
    async with api_serving(build_app(ctx, Timings())) as url, \
            httpx.AsyncClient(base_url=url) as c:
        with trio.fail_after(WAIT_S):
            async with c.stream("GET", "/api/events") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                lines = r.aiter_lines()
                seen: list[dict] = []  # type: ignore[type-arg]
                async for line in lines:
                    if not line.startswith("data: "):
                        continue
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["kind"] == "hello":
                        ctx.events.publish("member", {"id": "n9", "status": "alive"})
                    else:
                        break
            while ctx.events.subscribers:  # noqa: ASYNC110 (the server noticed the disconnect)
                await trio.sleep(0.01)
    assert [e["kind"] for e in seen] == ["hello", "member"]
    assert seen[1]["data"] == {"id": "n9", "status": "alive"}
