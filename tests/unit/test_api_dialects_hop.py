"""Every dialect across a node-to-node hop: the same auth rule as the OpenAI routes, sealed
bodies when the mesh has a secret, the client's key carried when it has none, and the mesh
model name in every chunk of the (opened) answer. Host B serves an MLX model whose server
echoes its folder path; entry A hosts nothing; a sniffer sits on the LAN between them."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.api.meshauth import forward_headers
from mesh_node.security import derive_keys
from tests.support.api_servers import ScriptedUpstream, api_serving, sse_data
from tests.unit.test_api_seal import sniffed
from tests.unit.test_api_surfaces import FOLDER, MID, MLX_CHUNKS, T

KEY = "sk-hop"
PROMPT = "the-vault-code-is-OSCAR-3"
MSG = [{"role": "user", "content": PROMPT}]


def _ctx(node_id: str, route: Route, secret: str | None) -> FakeMeshContext:
    return FakeMeshContext([FakeModel(MID, aliases=("tiny",), backend="mlx", routes=[route])],
                           node_id=node_id, api_key=KEY, secret=secret, mesh_name="default")


@pytest.mark.parametrize("secret", ["s3cret", None], ids=["secret", "no-secret"])
async def test_every_dialect_crosses_the_hop_with_the_mesh_name_in_every_chunk(
        secret: str | None) -> None:
    up = ScriptedUpstream("mlx-on-b", chunks=list(MLX_CHUNKS))
    seen: list[bytes] = []
    async with api_serving(up.app()) as up_url:
        ctx_b = _ctx("node-b", Route("node-b", up_url, True, rewrite_model=FOLDER), secret)
        app_b = build_app(ctx_b, T)
        async with api_serving(app_b) as b_url, \
                sniffed(int(b_url.rsplit(":", 1)[1]), seen) as relay_port:
            ctx_a = _ctx("node-a", Route("node-b", f"http://127.0.0.1:{relay_port}", False),
                         secret)
            async with api_serving(build_app(ctx_a, T)) as a_url, \
                    httpx.AsyncClient(base_url=a_url, timeout=10) as c:
                bearer = {"authorization": f"Bearer {KEY}"}
                openai = await c.post("/v1/chat/completions", headers=bearer, json={
                    "model": "tiny", "stream": True, "messages": MSG})
                anth = {"model": "tiny", "max_tokens": 8, "messages": MSG}
                whole = await c.post("/v1/messages", json=anth, headers={"x-api-key": KEY})
                streamed = await c.post("/v1/messages", json={**anth, "stream": True},
                                        headers={"x-api-key": KEY})
                ollama = await c.post("/api/chat", headers=bearer, json={
                    "model": f"{MID}:latest", "messages": MSG})
                generated = await c.post("/api/generate", headers=bearer, json={
                    "model": "tiny", "prompt": PROMPT, "stream": False})
                no_key = await c.post("/v1/messages", json=anth)
    docs = [d for d in sse_data(openai.content) if d != "[DONE]"]
    assert openai.status_code == 200 and {d["model"] for d in docs} == {MID}
    assert whole.status_code == 200, whole.text
    assert whole.json()["model"] == MID and whole.json()["content"][0]["text"] == "hi"
    events = sse_data(streamed.content)
    assert streamed.status_code == 200 and events[0]["message"]["model"] == MID
    assert "".join(e["delta"].get("text", "") for e in events
                   if e["type"] == "content_block_delta") == "Hello"
    lines = [json.loads(line) for line in ollama.text.splitlines()]
    assert ollama.status_code == 200 and len(lines) == 3
    assert {d["model"] for d in lines} == {f"{MID}:latest"} and lines[-1]["done"] is True
    assert generated.status_code == 200 and generated.json()["model"] == f"{MID}:latest"
    for r in (openai, whole, streamed, ollama, generated):
        assert FOLDER not in r.text and r.headers["x-mesh-served-by"] == "node-b"
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    assert len(up.requests) == 5 and {r["body"]["model"] for r in up.requests} == {FOLDER}
    assert all(PROMPT in json.dumps(r["body"]) for r in up.requests)  # B's backend got it
    assert b"mesh_forward_auth_failures_total 0.0" in app_b.state.metrics.render()
    wire = b"".join(seen)
    assert wire.lower().count(b"x-mesh-auth") >= 5  # all five went over the relay
    if secret is None:  # documented: the hop is clear, and carries the client's key
        assert PROMPT.encode() in wire and KEY.encode() in wire
        assert b"x-mesh-sealed" not in wire.lower()
    else:
        assert PROMPT.encode() not in wire and KEY.encode() not in wire
        assert b'"Hel' not in wire and b"Hello" not in wire
        assert wire.lower().count(b"x-mesh-sealed: 1") >= 10  # five requests, five answers


@pytest.mark.parametrize("secret", ["s3cret", None], ids=["secret", "no-secret"])
@pytest.mark.parametrize(("path", "body"), [
    ("/v1/messages", {"model": "tiny", "max_tokens": 8, "messages": MSG}),
    ("/v1/messages/count_tokens", {"model": "tiny", "messages": MSG}),
    ("/api/chat", {"model": "tiny", "messages": MSG}),
    ("/api/generate", {"model": "tiny", "prompt": PROMPT}),
    ("/api/embed", {"model": "tiny", "input": PROMPT}),
])
async def test_a_forged_forward_gets_no_dialect_route_without_the_key(
        path: str, body: dict[str, object], secret: str | None) -> None:
    """What a stranger can sign (the key of the public mesh name) opens no dialect route."""
    up = ScriptedUpstream("b")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx("node-b", Route("node-b", up_url, True), secret)
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            raw = json.dumps(body).encode()
            public = derive_keys(None, "default").http_key
            forged = forward_headers(public, "rogue", "node-b", "r1", "POST", path, raw,
                                     time.time())
            r = await c.post(path, content=raw,
                             headers={**forged, "content-type": "application/json"})
    assert r.status_code == 401, r.text
    assert not up.requests
