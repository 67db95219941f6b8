"""The API key means what the README says: no request is served without it, unless a member
of a mesh with a secret signed it for this very node."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.api.meshauth import forward_headers, forward_request
from mesh_node.cli.main import main
from mesh_node.security import API_KEY_WITHOUT_SECRET, derive_keys
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
    return {**forward_headers(public, "rogue", "node-b", "r1", "POST", PATH, body, time.time()),
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


def test_config_check_warns_about_api_key_without_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MESH_NODE_MESH_SECRET", raising=False)
    monkeypatch.delenv("MESH_NODE_MESH_SECRET_FILE", raising=False)
    bare = tmp_path / "bare.toml"
    bare.write_text('[api]\napi_key = "sk-abc"\n')
    assert main(["config", "check", str(bare)]) == 0
    err = capsys.readouterr().err
    assert err == f"warning: {API_KEY_WITHOUT_SECRET}\n" and "sk-abc" not in err
    sealed = tmp_path / "sealed.toml"
    sealed.write_text('[mesh]\nsecret = "s3cret-value"\n[api]\napi_key = "sk-abc"\n')
    assert main(["config", "check", str(sealed)]) == 0
    assert capsys.readouterr().err == ""
    keyless = tmp_path / "keyless.toml"
    keyless.write_text("[api]\nport = 9400\n")
    assert main(["config", "check", "--json", str(keyless)]) == 0
    assert capsys.readouterr().err == ""


def test_node_start_logs_api_key_without_secret() -> None:
    with capture_logs() as logs:
        build_app(FakeMeshContext([], api_key="k", secret=None), T)
        build_app(FakeMeshContext([], api_key="k", secret="s"), T)
        build_app(FakeMeshContext([], api_key=None, secret=None), T)
    warned = [e for e in logs if e["event"] == "api_key_without_mesh_secret"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert "k" not in {str(v) for v in warned[0].values()}


async def test_forward_without_secret_carries_the_client_key_and_with_secret_does_not() -> None:
    """Origin A -> host B, both with the same api_key: the hop works in both modes; the
    client's key crosses the LAN only when the signature cannot vouch for it."""
    for secret in (None, "s3cret"):
        up = ScriptedUpstream("llama-on-b")
        async with api_serving(up.app()) as up_url:
            ctx_b = _ctx(up_url, secret=secret)
            app_b = build_app(ctx_b, T)
            async with api_serving(app_b) as b_url:
                ctx_a = FakeMeshContext(
                    [FakeModel(MID, aliases=("gemma",), routes=[Route("node-b", b_url, False)])],
                    node_id="node-a", api_key="k", secret=secret, mesh_name="default")
                async with api_serving(build_app(ctx_a, T)) as a_url, \
                        httpx.AsyncClient(base_url=a_url) as c:
                    ok = await c.post(PATH, json=CHAT, headers={"authorization": "Bearer k"})
                    bad = await c.post(PATH, json=CHAT, headers={"authorization": "Bearer no"})
        assert ok.status_code == 200 and ok.headers["x-mesh-served-by"] == "node-b", secret
        assert bad.status_code == 401 and len(up.requests) == 1
        # B's backend never sees the client's key (a local route gets no client headers)
        assert "authorization" not in up.requests[0]["headers"]
        assert b"mesh_forward_auth_failures_total 0.0" in app_b.state.metrics.render()


async def test_forward_without_secret_and_a_different_key_on_the_host_is_refused() -> None:
    up = ScriptedUpstream("b")
    async with api_serving(up.app()) as up_url:
        ctx_b = _ctx(up_url, secret=None)  # api_key "k"
        async with api_serving(build_app(ctx_b, T)) as b_url:
            ctx_a = FakeMeshContext(
                [FakeModel(MID, aliases=("gemma",), routes=[Route("node-b", b_url, False)])],
                node_id="node-a", api_key=None, secret=None, mesh_name="default")
            async with api_serving(build_app(ctx_a, T)) as a_url, \
                    httpx.AsyncClient(base_url=a_url) as c:
                keyless = await c.post(PATH, json=CHAT)  # A is open, B is not
                keyed = await c.post(PATH, json=CHAT, headers={"x-api-key": "k",
                                                               "authorization": "Bearer k"})
    assert keyless.status_code == 401 and keyless.json()["error"]["code"] == "invalid_api_key"
    assert keyed.status_code == 200 and len(up.requests) == 1


async def test_forward_signed_for_another_node_is_refused() -> None:
    up = ScriptedUpstream("b")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx(up_url, secret="s3cret")
        app = build_app(ctx, T)
        async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
            body = httpx.Request("POST", url, json=CHAT).content

            def signed(target: str) -> tuple[dict[str, str], bytes]:
                h, sealed, _ = forward_request(ctx.keys, "node-a", target, "r1", "POST", PATH,
                                               body, time.time())
                return h, sealed

            h, sealed = signed("node-c")
            for_c = await c.post(PATH, content=sealed, headers=h)
            h, sealed = signed("node-b")
            for_b = await c.post(PATH, content=sealed, headers=h)
    assert for_c.status_code == 401 and "bad signature" in for_c.json()["error"]["message"]
    assert for_b.status_code == 200 and len(up.requests) == 1


async def test_what_crosses_the_lan_on_a_forward_without_secret() -> None:
    """The headers a peer receives: signed for it, and the client's key (no secret: the
    signature cannot vouch). With a secret nothing readable crosses: test_api_seal.py."""
    peer = ScriptedUpstream("peer")
    async with api_serving(peer.app()) as peer_url:
        ctx = FakeMeshContext(
            [FakeModel(MID, aliases=("gemma",), routes=[Route("node-b", peer_url, False)])],
            node_id="node-a", api_key="k", secret=None, mesh_name="default")
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post(PATH, json=CHAT, headers={"authorization": "Bearer k",
                                                       "x-api-key": "k"})
    assert r.status_code == 200
    h = peer.requests[0]["headers"]
    assert h["authorization"] == "Bearer k" and h["x-api-key"] == "k"
    assert h["x-mesh-forwarded"] == "node-a" and h["x-mesh-auth"].count(":") == 2
    assert "x-mesh-sealed" not in h


async def test_api_maps_hold_only_open_requests() -> None:
    """inflight (by model) and outbound (by node id, off the wire) empty again after requests."""
    up = ScriptedUpstream("b")
    async with api_serving(up.app()) as up_url:
        ctx = FakeMeshContext([FakeModel(MID, aliases=("gemma",),
                                         routes=[Route("peer-x", up_url, False)])],
                              secret=None)
        app = build_app(ctx, T)
        async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
            for _ in range(3):
                assert (await c.post(PATH, json=CHAT)).status_code == 200
                assert (await c.post(PATH, json={**CHAT, "stream": True})).status_code == 200
    assert dict(app.state.api.outbound) == {} and dict(app.state.api.inflight) == {}
    assert app.state.api.summary()["requests"] == {MID: {"ok": 6, "error": 0}}
