"""The load generator: streaming chat requests, concurrent batches, the concurrency sweep.

Trio + httpx (through anyio). One shared client per target; a batch starts `c` requests in
one nursery and its wall time runs from the first send to the last end of stream. Every
request is bounded by `Settings.request_timeout`; a failed request becomes a sample with
an error and the sweep goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from mesh_node.bench.spec import Settings
from mesh_node.bench.sse import StreamTally
from mesh_node.bench.stats import BatchSample, LevelStats, RequestSample, summarize

Progress = Callable[[str], None]
CONNECT_TIMEOUT = 10.0  # a local or LAN server accepts in milliseconds


@dataclass(frozen=True)
class Endpoint:
    """Where a target answers: the chat URL, the `model` to send, extra headers."""

    name: str
    chat_url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    startup_s: float | None = None  # local backends: start -> /health 200


def chat_url(base: str) -> str:
    """`http://h:p`, `http://h:p/` or `http://h:p/v1` -> `http://h:p/v1/chat/completions`."""
    base = base.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


def request_body(model: str, settings: Settings) -> dict[str, Any]:
    """The streaming chat request every target gets, usage requested at the end."""
    body: dict[str, Any] = {
        "model": model, "messages": [{"role": "user", "content": settings.prompt}],
        "max_tokens": settings.max_tokens, "temperature": settings.temperature,
        "stream": True, "stream_options": {"include_usage": True},
    }
    if settings.ignore_eos:
        body["ignore_eos"] = True
    return body


def make_client(max_concurrency: int, settings: Settings) -> httpx.AsyncClient:
    """A client with enough connections for the largest batch and the request timeout."""
    limits = httpx.Limits(max_connections=max_concurrency + 2, max_keepalive_connections=max_concurrency + 2)
    timeout = httpx.Timeout(settings.request_timeout, connect=CONNECT_TIMEOUT)
    return httpx.AsyncClient(limits=limits, timeout=timeout)


async def run_request(client: httpx.AsyncClient, ep: Endpoint, settings: Settings) -> RequestSample:
    """One streaming request, timed with trio's clock; never raises for server trouble."""
    tally = StreamTally()
    t0 = trio.current_time()
    error: str | None = None
    with trio.move_on_after(settings.request_timeout) as scope:
        try:
            await _stream(client, ep, settings, tally, t0)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
    total = trio.current_time() - t0
    if scope.cancelled_caught:
        error = f"timed out after {settings.request_timeout:g}s"
    error = error or tally.error or _missing_tokens(tally)
    ttft = None if tally.first_token_at is None else tally.first_token_at - t0
    return RequestSample(total=total, ttft=ttft, tokens=tally.tokens, error=error)


async def _stream(client: httpx.AsyncClient, ep: Endpoint, settings: Settings,
                  tally: StreamTally, t0: float) -> None:
    body = request_body(ep.model, settings)
    async with client.stream("POST", ep.chat_url, json=body, headers=ep.headers) as r:
        if r.status_code != 200:
            text = (await r.aread()).decode("utf-8", "replace")
            tally.error = f"HTTP {r.status_code}: {text[:200]}"
            return
        async for line in r.aiter_lines():
            tally.feed(line, trio.current_time())
            if tally.done or tally.error:
                return


def _missing_tokens(tally: StreamTally) -> str | None:
    return "stream ended without any content" if tally.first_token_at is None else None


async def run_batch(client: httpx.AsyncClient, ep: Endpoint, settings: Settings,
                    concurrency: int) -> BatchSample:
    """`concurrency` requests at once; wall time from the first send to the last end."""
    results: list[RequestSample] = []

    async def one() -> None:
        results.append(await run_request(client, ep, settings))

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(one)
    return BatchSample(concurrency=concurrency, wall=trio.current_time() - t0,
                       requests=tuple(results))


async def run_sweep(ep: Endpoint, settings: Settings, progress: Progress,
                    client: httpx.AsyncClient | None = None) -> list[LevelStats]:
    """Warm up, then every concurrency level for `iterations` batches; per-level averages."""
    own = client is None
    client = client or make_client(max(settings.concurrency), settings)
    try:
        for i in range(settings.warmup):
            w = await run_request(client, ep, settings)
            progress(f"{ep.name}: warm-up {i + 1}/{settings.warmup}: "
                     + (f"error {w.error}" if w.error else f"{w.tokens} tokens in {w.total:.2f}s"))
        return [await _level(client, ep, settings, c, progress) for c in settings.concurrency]
    finally:
        if own:
            await client.aclose()


async def _level(client: httpx.AsyncClient, ep: Endpoint, settings: Settings, c: int,
                 progress: Progress) -> LevelStats:
    batches = []
    for i in range(settings.iterations):
        b = await run_batch(client, ep, settings, c)
        batches.append(b)
        errors = [r.error for r in b.requests if r.error]
        tokens = sum(r.tokens for r in b.requests if r.ok)
        progress(f"{ep.name}: concurrency {c} batch {i + 1}/{settings.iterations}: "
                 f"{tokens} tokens in {b.wall:.2f}s" + (f", {len(errors)} failed: {errors[0]}"
                                                        if errors else ""))
    return summarize(c, batches)
