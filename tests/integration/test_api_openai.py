"""The official openai client against the app, routed to a real llama-server with Gemma 3 270M."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import openai
import pytest
import trio
from openai.types.chat import ChatCompletionMessageParam

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.timing import Timings
from tests.support.api_llama import llama_server
from tests.support.api_servers import api_serving

pytestmark = pytest.mark.real
MID = "gemma-3-270m-q4_k_m"
KEY = "sk-mesh-test"
MSG: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Say hello in one short sentence."}]
T = TypeVar("T")


@pytest.fixture
async def llama_url() -> AsyncIterator[str]:
    async with llama_server() as url:
        yield url


def _ctx(routes: list[Route], node_id: str) -> FakeMeshContext:
    return FakeMeshContext([FakeModel(MID, aliases=("gemma",), key="gemma-3-270m",
                                      routes=routes)], node_id=node_id, api_key=KEY)


async def _in_thread(fn: Callable[[], T]) -> T:
    """The sync client in a worker thread: it owns its own HTTP stack, trio keeps serving."""
    with trio.fail_after(120):
        return await trio.to_thread.run_sync(fn)


def _client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


async def test_api_openai_client_against_real_llama(llama_url: str) -> None:
    ctx = _ctx([Route("node-a", llama_url, True)], "node-a")
    async with api_serving(build_app(ctx, Timings())) as url:
        client = _client(url)
        models = await _in_thread(lambda: [m.id for m in client.models.list()])
        chat = await _in_thread(lambda: client.chat.completions.create(
            model="gemma", messages=MSG, max_tokens=16))

        def stream() -> list[str]:
            parts = client.chat.completions.create(model="gemma-3-270m", messages=MSG,
                                                   max_tokens=16, stream=True)
            return [c.choices[0].delta.content or "" for c in parts if c.choices]
        pieces = await _in_thread(stream)
        errors = await _in_thread(lambda: _expected_errors(url))
    assert models == [MID]
    assert chat.choices[0].message.content and chat.choices[0].message.content.strip()
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    assert len([p for p in pieces if p]) >= 2 and "".join(pieces).strip()
    assert errors == ["NotFoundError", "AuthenticationError", "BadRequestError"]


def _expected_errors(url: str) -> list[str]:
    calls: list[Callable[[], Any]] = [
        lambda: _client(url).chat.completions.create(model="no-such-model", messages=MSG),
        lambda: _client(url, "wrong").chat.completions.create(model="gemma", messages=MSG),
        lambda: _client(url).chat.completions.create(model="gemma", messages="hi"),  # type: ignore[arg-type]
    ]
    seen = []
    for call in calls:
        try:
            call()
            seen.append("no error")
        except openai.APIStatusError as exc:
            seen.append(type(exc).__name__)
    return seen


async def test_api_openai_stream_through_two_nodes(llama_url: str) -> None:
    ctx_b = _ctx([Route("node-b", llama_url, True)], "node-b")
    async with api_serving(build_app(ctx_b, Timings())) as b_url:
        ctx_a = _ctx([Route("node-b", b_url, False)], "node-a")
        app_a = build_app(ctx_a, Timings())
        async with api_serving(app_a) as a_url:
            client = _client(a_url)

            def stream() -> tuple[list[str], str]:
                raw = client.chat.completions.with_raw_response.create(
                    model="gemma", messages=MSG, max_tokens=12, stream=True)
                parts = [c.choices[0].delta.content or "" for c in raw.parse() if c.choices]
                return parts, raw.headers["x-mesh-served-by"]
            pieces, served_by = await _in_thread(stream)
    assert "".join(pieces).strip() and served_by == "node-b"
    assert b'mesh_requests_total{model="gemma-3-270m-q4_k_m",node="node-b",status="200"} 1.0' \
        in app_a.state.metrics.render()
