"""The Anthropic and Ollama endpoints through the app on loopback, over a scripted upstream
that answers like mlx_lm.server (it echoes the folder path it was sent as the model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.timing import Timings
from tests.support.api_servers import ScriptedUpstream, api_serving, sse_data

T = Timings(route_retry_window=1.0, upstream_connect_timeout=1.0, upstream_read_timeout=5.0)
MID = "tiny-mlx-llama"
FOLDER = "/models/tiny-mlx-llama"
KEY = "sk-test"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    doc = {"id": "chatcmpl-1", "model": FOLDER,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(doc)}\n\n".encode()


MLX_CHUNKS = [b": keepalive 1/1\n\n", _chunk({"role": "assistant", "content": "Hel"}),
              _chunk({"content": "lo"}), _chunk({}, "stop"),
              b'data: {"id":"chatcmpl-1","model":"' + FOLDER.encode() + b'","choices":[],'
              b'"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n', b"data: [DONE]\n\n"]


def _upstream() -> ScriptedUpstream:
    return ScriptedUpstream("mlx-host", chunks=list(MLX_CHUNKS))


def _ctx(url: str) -> FakeMeshContext:
    route = Route("mlx-host", url, True, rewrite_model=FOLDER)
    return FakeMeshContext([FakeModel(MID, aliases=("tiny",), backend="mlx", routes=[route])],
                           api_key=KEY)


async def test_openai_stream_from_mlx_names_the_mesh_model_in_every_chunk() -> None:
    up = _upstream()
    async with api_serving(up.app()) as up_url, \
            api_serving(build_app(_ctx(up_url), T)) as url, \
            httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {KEY}"}) as c:
        r = await c.post("/v1/chat/completions", json={
            "model": "tiny", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    docs = [d for d in sse_data(r.content) if d != "[DONE]"]
    assert r.status_code == 200 and len(docs) == 4
    assert {d["model"] for d in docs} == {MID} and FOLDER not in r.text
    assert up.requests[0]["body"]["model"] == FOLDER


async def test_anthropic_messages_translated_for_mlx_whole_and_streamed() -> None:
    up = _upstream()
    body = {"model": "tiny", "max_tokens": 16, "system": "Be brief.",
            "stop_sequences": ["\n\n"],
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "Hello."},
                         {"role": "user", "content": [{"type": "text", "text": "again"}]}]}
    async with api_serving(up.app()) as up_url, \
            api_serving(build_app(_ctx(up_url), T)) as url, \
            httpx.AsyncClient(base_url=url, headers={"x-api-key": KEY}) as c:
        whole = await c.post("/v1/messages", json=body)
        streamed = await c.post("/v1/messages", json={**body, "stream": True})
    sent = up.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["model"] == FOLDER
    assert [m["role"] for m in sent["body"]["messages"]] == ["system", "user", "assistant",
                                                             "user"]
    assert sent["body"]["stop"] == ["\n\n"] and sent["body"]["max_tokens"] == 16
    assert whole.status_code == 200, whole.text
    msg = whole.json()
    assert msg["type"] == "message" and msg["model"] == MID
    assert msg["content"] == [{"type": "text", "text": "hi"}]  # the scripted reply
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [d for d in sse_data(streamed.content)]
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert events[0]["message"]["model"] == MID
    assert events[-2]["usage"] == {"input_tokens": 4, "output_tokens": 2}


async def test_anthropic_errors_in_its_shape() -> None:
    up = _upstream()
    msg = {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    async with api_serving(up.app()) as up_url, \
            api_serving(build_app(_ctx(up_url), T)) as url, \
            httpx.AsyncClient(base_url=url) as c:
        wrong = await c.post("/v1/messages", json={**msg, "model": "tiny"},
                             headers={"x-api-key": "nope"})
        unknown = await c.post("/v1/messages", json={**msg, "model": "nope"},
                               headers={"x-api-key": KEY})
        bad = await c.post("/v1/messages", json={"model": "tiny", "messages": []},
                           headers={"x-api-key": KEY})
        models = await c.get("/v1/models", headers={"x-api-key": "nope",
                                                    "anthropic-version": "2023-06-01"})
    for r, status, kind in [(wrong, 401, "authentication_error"),
                            (unknown, 404, "not_found_error"),
                            (bad, 400, "invalid_request_error"),
                            (models, 401, "authentication_error")]:
        assert r.status_code == status and r.json()["type"] == "error", r.text
        assert r.json()["error"]["type"] == kind and r.json()["error"]["message"]
    assert not up.requests


async def test_ollama_chat_streams_ndjson_and_lists_models() -> None:
    up = _upstream()
    auth = {"authorization": f"Bearer {KEY}"}
    async with api_serving(up.app()) as up_url:
        app = build_app(_ctx(up_url), T)
        async with api_serving(app) as url, \
                httpx.AsyncClient(base_url=url, headers=auth) as c:
            chat = await c.post("/api/chat", json={
                "model": f"{MID}:latest", "keep_alive": "10m",
                "messages": [{"role": "user", "content": "hi"}]})
            tags = await c.get("/api/tags")
            ps = await c.get("/api/ps")
            show = await c.post("/api/show", json={"model": "tiny"})
            loaded = await c.post("/api/generate", json={"model": "tiny"})
            pulled = await c.post("/api/pull", json={"model": "tiny", "stream": False})
            create = await c.post("/api/create", json={"model": "x"})
            unknown = await c.post("/api/chat", json={"model": "nope", "messages": []})
            version = await c.get("/api/version", headers={"authorization": ""})
        async with api_serving(app.state.ollama_app) as own_url, \
                httpx.AsyncClient(base_url=own_url, headers=auth) as c:
            root = await c.get("/")
            own_tags = await c.get("/api/tags")
            own_missing = await c.get("/v1/models")
    assert chat.status_code == 200 and chat.headers["content-type"].startswith(
        "application/x-ndjson")
    lines = [json.loads(line) for line in chat.text.splitlines()]
    assert [d["message"]["content"] for d in lines] == ["Hel", "lo", ""]
    assert {d["model"] for d in lines} == {f"{MID}:latest"}
    assert lines[-1]["done"] and lines[-1]["eval_count"] == 2
    assert up.requests[0]["body"]["stream"] is True
    assert tags.json()["models"][0]["name"] == f"{MID}:latest"
    assert ps.json()["models"][0]["hosts"] == ["mlx-host"]
    assert show.json()["details"]["family"] == MID
    assert loaded.json()["done_reason"] == "load" and len(up.requests) == 1
    assert pulled.json() == {"status": "success"}
    assert create.status_code == 501 and "not supported" in create.json()["error"]
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    assert version.json()["version"]
    assert root.text == "Ollama is running" and own_tags.json() == tags.json()
    assert own_missing.status_code == 404 and "error" in own_missing.json()


def test_ollama_port_is_off_by_default_and_checked(tmp_path: Path) -> None:
    from mesh_node.config.load import ConfigError, load_config

    assert load_config(None).api.ollama_port is None
    good = tmp_path / "good.toml"
    good.write_text("[api]\nollama_port = 11434\n")
    assert load_config(good).api.ollama_port == 11434
    bad = tmp_path / "bad.toml"
    bad.write_text("[api]\nollama_port = 70000\n")
    with pytest.raises(ConfigError, match="ollama_port"):
        load_config(bad)
