"""Bench runner against an httpx mock transport on trio's mock clock: exact TTFT and rates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

from mesh_node.bench.runner import (
    Endpoint,
    chat_url,
    request_body,
    run_batch,
    run_request,
    run_sweep,
)
from mesh_node.bench.spec import Settings

EP = Endpoint("fake", "http://bench.test/v1/chat/completions", "m")
SETTINGS = Settings(concurrency=(1, 2), iterations=2, warmup=1, max_tokens=5, request_timeout=30)


def _line(obj: object) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _fake_server(first: float = 0.5, step: float = 0.1, tokens: int = 5, usage: bool = True,
                 seen: list[dict[str, object]] | None = None) -> httpx.MockTransport:
    """A streaming chat server: first token after `first` s, then one every `step` s."""

    async def body() -> AsyncIterator[bytes]:
        yield _line({"choices": [{"delta": {"role": "assistant", "content": None}}]})
        await trio.sleep(first)
        for i in range(tokens):
            if i:
                await trio.sleep(step)
            yield _line({"choices": [{"delta": {"content": f"t{i}"}}]})
        if usage:
            yield _line({"choices": [], "usage": {"completion_tokens": tokens}})
        yield b"data: [DONE]\n\n"

    async def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(json.loads(request.content))
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handler)


async def test_bench_request_timings_on_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[dict[str, object]] = []
    async with httpx.AsyncClient(transport=_fake_server(seen=seen)) as client:
        r = await run_request(client, EP, SETTINGS)
    assert r.error is None and r.tokens == 5
    assert r.ttft == pytest.approx(0.5) and r.total == pytest.approx(0.9)
    assert seen[0]["stream"] is True and seen[0]["stream_options"] == {"include_usage": True}
    assert seen[0]["max_tokens"] == 5 and seen[0]["model"] == "m"


async def test_bench_request_counts_deltas_without_usage(
        autojump_clock: trio.testing.MockClock) -> None:
    async with httpx.AsyncClient(transport=_fake_server(tokens=3, usage=False)) as client:
        r = await run_request(client, EP, SETTINGS)
    assert r.tokens == 3 and r.ok


async def test_bench_request_http_error_is_a_sample(autojump_clock: trio.testing.MockClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": "loading"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        r = await run_request(client, EP, SETTINGS)
    assert not r.ok and r.error is not None and r.error.startswith("HTTP 503")


async def test_bench_request_timeout(autojump_clock: trio.testing.MockClock) -> None:
    slow = Settings(request_timeout=5.0)
    async with httpx.AsyncClient(transport=_fake_server(first=60.0)) as client:
        r = await run_request(client, EP, slow)
    assert r.error == "timed out after 5s" and r.total == pytest.approx(5.0)


async def test_bench_request_connection_refused_is_a_sample() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        r = await run_request(client, EP, SETTINGS)
    assert r.error is not None and "ConnectError" in r.error


async def test_bench_batch_runs_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    async with httpx.AsyncClient(transport=_fake_server()) as client:
        b = await run_batch(client, EP, SETTINGS, 4)
    assert len(b.requests) == 4 and all(r.ok for r in b.requests)
    assert b.wall == pytest.approx(0.9)  # together, not 4 x 0.9


async def test_bench_sweep_levels_and_progress(autojump_clock: trio.testing.MockClock) -> None:
    lines: list[str] = []
    async with httpx.AsyncClient(transport=_fake_server()) as client:
        levels = await run_sweep(EP, SETTINGS, lines.append, client=client)
    assert [lv.concurrency for lv in levels] == [1, 2]
    assert [lv.requests for lv in levels] == [2, 4]
    assert levels[1].avg_decode_tps == pytest.approx(4 / 0.4)
    assert levels[1].avg_batch_tps == pytest.approx(10 / 0.9)
    assert lines[0].startswith("fake: warm-up 1/1: 5 tokens")
    assert sum("concurrency 2 batch" in ln for ln in lines) == 2 and len(lines) == 5


def test_bench_chat_url_and_body() -> None:
    want = "http://h:1/v1/chat/completions"
    for base in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/", want):
        assert chat_url(base) == want
    body = request_body("m", Settings(ignore_eos=False, prompt="p"))
    assert "ignore_eos" not in body and body["messages"] == [{"role": "user", "content": "p"}]
    assert request_body("m", Settings())["ignore_eos"] is True
