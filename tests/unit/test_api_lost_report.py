"""The router's hook into gossip (issue 16): a refused connect to a peer is reported as strong
evidence about it, a local backend never is, a peer that answers never is."""

from __future__ import annotations

import httpx

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from tests.support.api_servers import ScriptedUpstream, api_serving, closed_port_url
from tests.unit.test_api_routing import CHAT, T, _ctx


async def test_api_refused_peer_is_reported_to_gossip_as_refused() -> None:
    up = ScriptedUpstream("b")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx([Route("dead", closed_port_url(), False),
                    Route("gone-local", closed_port_url(), True), Route("b", up_url, False)],
                   secret=None)
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.headers["x-mesh-served-by"] == "b"
    assert ctx.unreachable == [("dead", True)]
