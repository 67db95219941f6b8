"""The API key means what the README says: no request is served without it, unless a member
of a mesh with a secret signed it for this very node."""

from __future__ import annotations

import time

import httpx

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.api.meshauth import forward_headers
from mesh_node.security import derive_keys
from mesh_node.timing import Timings
from tests.support.api_servers import ScriptedUpstream, api_serving

T = Timings(route_retry_window=1.0, upstream_connect_timeout=1.0, upstream_read_timeout=5.0)
CHAT = {"model": "gemma", "messages": [{"role": "user", "content": "hi"}]}
MID = "gemma-3-270m"
PATH = "/v1/chat/completions"


def _ctx(up_url: str, *, secret: str | None, node_id: str = "node-b") -> FakeMeshContext:
    return FakeMeshContext([FakeModel(MID, aliases=("gemma",),
                                      routes=[Route(node_id, up_url, True)])],
                           node_id=node_id, api_key="k", secret=secret, mesh_name="default")


def _forged(body: bytes) -> dict[str, str]:
    """What a stranger can compute: the HMAC key derived from the public mesh name alone."""
    public = derive_keys(None, "default").http_key
    return {**forward_headers(public, "rogue", "r1", "POST", PATH, body, time.time()),
            "content-type": "application/json"}


async def test_forged_forward_without_secret_needs_the_client_key() -> None:
    up = ScriptedUpstream("b")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx(up_url, secret=None)
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            body = httpx.Request("POST", url, json=CHAT).content
            plain = await c.post(PATH, content=body, headers={"content-type": "application/json"})
            forged = await c.post(PATH, content=body, headers=_forged(body))
            keyed = await c.post(PATH, content=body,
                                 headers={**_forged(body), "authorization": "Bearer k"})
    assert plain.status_code == 401
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_api_key"
    assert keyed.status_code == 200  # a forward that carries the client's key is served
    assert len(up.requests) == 1


async def test_forged_forward_with_secret_is_refused() -> None:
    up = ScriptedUpstream("b")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx(up_url, secret="s3cret")
        app = build_app(ctx, T)
        async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
            body = httpx.Request("POST", url, json=CHAT).content
            forged = await c.post(PATH, content=body, headers=_forged(body))
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "mesh_auth_failed"
    assert not up.requests
    assert b"mesh_forward_auth_failures_total 1.0" in app.state.metrics.render()
