"""Every dialect through two nodes (entry A forwards to host B) to real backends started with
the shipped commands: llama-server on the Gemma demo (no template in the file: our Jinja
template) and mlx_lm.server on a tiny generated MLX model (it echoes its folder path).

Official clients (openai, anthropic, ollama) at node A; raw SSE/NDJSON read where a test
needs every chunk exactly as sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import httpx
import ollama
import openai
import pytest
import trio

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.backends import llama, mlx
from mesh_node.backends.supervisor import ChildSpec, Supervisor
from mesh_node.catalog.entry import CatalogEntry, gguf_entry, mlx_entry
from mesh_node.timing import Timings
from tests.support.api_servers import api_serving, sse_data
from tests.support.backends_config import backends_test_config
from tests.support.backends_procs import free_port, shared_demo_gguf
from tests.support.tiny_mlx import make_tiny_mlx_model

pytestmark = pytest.mark.real
GEMMA = "gemma-3-270m-q4_k_m"
TINY = "tiny-mlx-llama"
KEY = "sk-dialects"
LOAD = 180.0
T = TypeVar("T")
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}},
          "required": ["name"], "additionalProperties": False}
ASK = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]


async def _in_thread(fn: Callable[[], T]) -> T:
    with trio.fail_after(180):
        return await trio.to_thread.run_sync(fn)


@asynccontextmanager
async def _backend(spec: ChildSpec) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        sup: Supervisor = await nursery.start(Supervisor(Timings()).run)
        child = await sup.start(spec)
        with trio.fail_after(LOAD):
            assert (await child.wait_ready()).status == "ready"
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def _two_nodes(model: FakeModel, local: Route) -> AsyncIterator[str]:
    """Node B hosts `model` at `local`; node A (yielded URL) reaches it only through B."""
    model.routes = [local]
    ctx_b = FakeMeshContext([model], node_id="node-b", api_key=KEY)
    async with api_serving(build_app(ctx_b, Timings())) as b_url:
        front = FakeModel(model.id, model.aliases, model.key, model.backend,
                          routes=[Route("node-b", b_url, False)])
        ctx_a = FakeMeshContext([front], node_id="node-a", api_key=KEY)
        async with api_serving(build_app(ctx_a, Timings())) as a_url:
            yield a_url


def _entry_gemma() -> CatalogEntry:
    entry = gguf_entry(GEMMA, [shared_demo_gguf()], 2048)
    assert entry.error is None and entry.arch == "gemma3" and not entry.chat_template
    return entry


async def test_llama_tools_and_dialects_through_another_node(tmp_path: Path) -> None:
    port = free_port()
    spec = llama.host_spec(_entry_gemma(), port, (), backends_test_config(tmp_path, 2048))
    assert "--jinja" in spec.argv and "--no-jinja" not in spec.argv
    model = FakeModel(GEMMA, aliases=("gemma",), key="gemma-3-270m")
    async with _backend(spec), \
            _two_nodes(model, Route("node-b", f"http://127.0.0.1:{port}", True)) as url:
        oa = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=120)
        an = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0, timeout=120)
        tool = await _in_thread(lambda: oa.chat.completions.create(
            model="gemma", messages=ASK, max_tokens=64,  # type: ignore[arg-type]
            tools=[{"type": "function", "function": {"name": "get_weather",
                                                     "parameters": WEATHER}}]))
        # Greedy decoding for the forced calls: sampled, the 270M model runs out of its 64
        # tokens without a call about 1 time in 3, straight at llama-server as through a hop.
        forced = await _in_thread(lambda: oa.chat.completions.create(
            model="gemma", messages=ASK, max_tokens=64, tool_choice="required",  # type: ignore[arg-type]
            temperature=0,
            tools=[{"type": "function", "function": {"name": "get_weather",
                                                     "parameters": WEATHER}}]))
        as_json = await _in_thread(lambda: oa.chat.completions.create(
            model="gemma", max_tokens=64, response_format={  # short by schema: ends in time
                "type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
            messages=[{"role": "user", "content": "Give a JSON object with a name."}]))
        msg = await _in_thread(lambda: an.messages.create(
            model="gemma-3-270m", max_tokens=64, messages=ASK,  # type: ignore[arg-type]
            tools=[{"name": "get_weather", "input_schema": WEATHER}],  # type: ignore[list-item]
            tool_choice={"type": "any"}, extra_body={"temperature": 0}))
        counted = await _in_thread(lambda: an.messages.count_tokens(
            model="gemma", messages=[{"role": "user", "content": "Hello there"}]))
        ol = ollama.Client(host=url, headers={"Authorization": f"Bearer {KEY}"})
        ol_tool = await _in_thread(lambda: ol.chat(model="gemma-3-270m:latest", messages=ASK,
                                                   options={"num_predict": 32},
                                                   tools=[{"type": "function", "function": {
                                                       "name": "get_weather",
                                                       "parameters": WEATHER}}]))
    assert tool.choices[0].finish_reason in ("tool_calls", "stop", "length")  # a 200 either way
    calls = forced.choices[0].message.tool_calls or []
    assert calls and all(c.type == "function" and c.function.name == "get_weather"
                         for c in calls)
    call = calls[0]
    assert call.type == "function"
    assert isinstance(json.loads(call.function.arguments), dict)
    assert set(json.loads(as_json.choices[0].message.content or "")) == {"name"}
    # the forced call comes whole; the model may ramble before it until max_tokens
    assert msg.stop_reason in ("tool_use", "max_tokens") and msg.model == GEMMA
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input, dict)
    assert counted.input_tokens > 2
    assert ol_tool.done and ol_tool.model == f"{GEMMA}:latest"


async def _raw(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    r = await client.post(path, json=body, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    return r


async def test_mlx_stream_names_the_mesh_model_in_every_chunk_of_every_dialect(
        tmp_path: Path) -> None:
    folder = make_tiny_mlx_model(tmp_path / TINY)
    entry = mlx_entry(TINY, folder, 512)
    port = free_port()
    model = FakeModel(TINY, backend="mlx")
    local = Route("node-b", f"http://127.0.0.1:{port}", True, rewrite_model=str(folder))
    user = [{"role": "user", "content": "hello"}]
    async with _backend(mlx.host_spec(entry, port, backends_test_config(tmp_path))), \
            _two_nodes(model, local) as url, \
            httpx.AsyncClient(base_url=url, timeout=120) as c:
        oai = await _raw(c, "/v1/chat/completions", {"model": TINY, "messages": user,
                                                      "max_tokens": 8, "stream": True})
        ant = await _raw(c, "/v1/messages", {"model": TINY, "messages": user,
                                              "max_tokens": 8, "stream": True})
        oll = await _raw(c, "/api/chat", {"model": f"{TINY}:latest", "messages": user,
                                           "options": {"num_predict": 8}})
        gen = await _raw(c, "/api/generate", {"model": TINY, "prompt": "hello",
                                               "options": {"num_predict": 8}})
        whole = await _raw(c, "/v1/messages", {"model": TINY, "messages": user,
                                                "max_tokens": 8})
        count = await c.post("/v1/messages/count_tokens", json={"model": TINY, "messages": user},
                             headers={"x-api-key": KEY})
    assert str(folder) not in oai.text + ant.text + oll.text + gen.text + whole.text
    chunks = [d for d in sse_data(oai.content) if d != "[DONE]"]
    assert len(chunks) >= 2 and {d["model"] for d in chunks} == {TINY}
    events = sse_data(ant.content)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert events[0]["message"]["model"] == TINY
    assert events[-2]["usage"]["output_tokens"] > 0
    lines = [json.loads(x) for x in oll.text.splitlines()] + [
        json.loads(x) for x in gen.text.splitlines()]
    assert len(lines) >= 4 and {d["model"] for d in lines} == {f"{TINY}:latest"}
    assert lines[-1]["done"] and lines[-1]["eval_count"] > 0
    assert whole.json()["model"] == TINY and whole.json()["usage"]["output_tokens"] > 0
    assert count.status_code == 404 and count.json()["error"]["type"] == "not_found_error"
