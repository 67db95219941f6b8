"""Sealed node-to-node bodies: the frame codec, and what a LAN sniffer sees between two nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
import trio

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.api.seal import (
    FrameOpener,
    FrameSealer,
    SealError,
    open_request,
    seal_request,
)
from mesh_node.timing import Timings
from tests.support.api_servers import (
    ScriptedUpstream,
    api_serving,
    raw_upstream,
    read_request_head,
    sse_data,
)

KEY, NONCE = b"s" * 32, b"n" * 12
T = Timings(route_retry_window=1.0, upstream_connect_timeout=1.0, upstream_read_timeout=5.0)
MID = "gemma-3-270m"
PROMPT = "the-launch-code-is-TANGO-7"
ANSWER = "Hel"  # the scripted upstream's first streamed piece / its JSON answer is "hi"


def _frames(chunks: list[bytes]) -> bytes:
    s = FrameSealer(KEY, NONCE)
    return b"".join(s.frame(c, i == len(chunks) - 1) for i, c in enumerate(chunks))


def test_seal_request_round_trip_and_tamper() -> None:
    sealed = seal_request(KEY, NONCE, b'{"prompt": "x"}')
    assert b"prompt" not in sealed
    assert open_request(KEY, NONCE, sealed) == b'{"prompt": "x"}'
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), sealed[:-3]):
        with pytest.raises(SealError):
            open_request(KEY, NONCE, bad)
    with pytest.raises(SealError):
        open_request(KEY, b"m" * 12, sealed)


def test_frames_open_in_any_pieces_and_in_order() -> None:
    wire = _frames([b"data: a\n\n", b"", b"data: b\n\n", b""])
    for step in (1, 7, len(wire)):
        opener, got = FrameOpener(KEY, NONCE), []
        for i in range(0, len(wire), step):
            got += opener.feed(wire[i:i + step])
        opener.finish()
        assert b"".join(got) == b"data: a\n\ndata: b\n\n"


@pytest.mark.parametrize("mangle", [
    lambda w: w[:-1],  # cut inside the last frame
    lambda w: w[: len(w) // 2],  # cut between frames: no last frame
    lambda w: w + w[:30],  # data after the last frame
    lambda w: w[:10] + bytes([w[10] ^ 1]) + w[11:],  # a flipped bit
    lambda w: b"\xff\xff\xff\xff" + w,  # an absurd length
])
def test_frames_cut_tampered_or_extended_are_errors(mangle) -> None:  # type: ignore[no-untyped-def]
    wire = mangle(_frames([b"one", b"two", b""]))
    opener = FrameOpener(KEY, NONCE)
    with pytest.raises(SealError):
        opener.feed(wire)
        opener.finish()


def test_frames_reordered_or_from_another_forward_do_not_open() -> None:
    s = FrameSealer(KEY, NONCE)
    first, second = s.frame(b"one", False), s.frame(b"two", True)
    with pytest.raises(SealError):
        FrameOpener(KEY, NONCE).feed(second + first)
    with pytest.raises(SealError):
        FrameOpener(KEY, b"o" * 12).feed(first)


@asynccontextmanager
async def sniffed(target_port: int, seen: list[bytes]) -> AsyncIterator[int]:
    """A TCP relay on loopback that records every byte both ways (the LAN between nodes)."""
    async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
        try:
            while data := await src.receive_some(65536):
                seen.append(data)
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await dst.aclose()

    async def handle(client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", target_port)
        async with trio.open_nursery() as n:
            n.start_soon(pump, client, server)
            n.start_soon(pump, server, client)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("secret", ["s3cret", None], ids=["secret", "no-secret"])
async def test_nothing_readable_crosses_between_nodes_with_a_secret(secret: str | None) -> None:
    up = ScriptedUpstream("llama-on-b")
    seen: list[bytes] = []
    chat = {"model": "gemma", "messages": [{"role": "user", "content": PROMPT}]}
    async with api_serving(up.app()) as up_url:
        ctx_b = FakeMeshContext([FakeModel(MID, aliases=("gemma",),
                                           routes=[Route("node-b", up_url, True)])],
                                node_id="node-b", api_key="k", secret=secret)
        async with api_serving(build_app(ctx_b, T)) as b_url, \
                sniffed(int(b_url.rsplit(":", 1)[1]), seen) as relay_port:
            ctx_a = FakeMeshContext([FakeModel(MID, aliases=("gemma",), routes=[
                Route("node-b", f"http://127.0.0.1:{relay_port}", False)])],
                node_id="node-a", api_key="k", secret=secret)
            async with api_serving(build_app(ctx_a, T)) as a_url, \
                    httpx.AsyncClient(base_url=a_url, headers={"authorization": "Bearer k"}) as c:
                plain = await c.post("/v1/chat/completions", json=chat)
                streamed = await c.post("/v1/chat/completions", json={**chat, "stream": True})
    assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"] == "hi"
    assert streamed.status_code == 200 and sse_data(streamed.content)[-1] == "[DONE]"
    assert sse_data(streamed.content)[0]["choices"][0]["delta"]["content"] == ANSWER
    assert up.requests[0]["body"]["messages"][0]["content"] == PROMPT  # B's backend got it
    wire = b"".join(seen)
    assert b"x-mesh-auth" in wire  # the relay did carry the node-to-node traffic
    if secret is None:  # documented: without a secret the hop is clear
        assert PROMPT.encode() in wire and b'"content":"Hel"' in wire
    else:
        assert PROMPT.encode() not in wire and b"Hel" not in wire and b'"hi"' not in wire
        assert b"authorization" not in wire.lower() and b"Bearer k" not in wire
        assert wire.count(b"x-mesh-sealed: 1") + wire.count(b"x-mesh-sealed:1") >= 4


def test_seal_key_is_its_own_and_needs_the_secret() -> None:
    from mesh_node.security import derive_keys

    k = derive_keys("s3cret", "home")
    assert len(k.seal_key) == 32 and k.seal_key not in (k.http_key, k.gossip_key)
    assert derive_keys("s3cret", "office").seal_key != k.seal_key
    assert derive_keys("other", "home").seal_key != k.seal_key
    assert "seal_key" not in repr(k)


async def test_a_body_at_the_limit_still_crosses_sealed() -> None:
    """The host's body limit allows the 16-byte tag of a sealed forward, no more."""
    up = ScriptedUpstream("b")
    limit = 2048
    async with api_serving(up.app()) as up_url:
        ctx_b = FakeMeshContext([FakeModel(MID, aliases=("gemma",),
                                           routes=[Route("node-b", up_url, True)])],
                                node_id="node-b", max_body_bytes=limit)
        async with api_serving(build_app(ctx_b, T)) as b_url:
            ctx_a = FakeMeshContext([FakeModel(MID, aliases=("gemma",),
                                               routes=[Route("node-b", b_url, False)])],
                                    node_id="node-a", max_body_bytes=limit)
            async with api_serving(build_app(ctx_a, T)) as a_url, \
                    httpx.AsyncClient(base_url=a_url) as c:
                head = b'{"model": "gemma", "messages": [{"role": "user", "content": "'
                tail = b'"}]}'
                body = head + b"x" * (limit - len(head) - len(tail)) + tail
                at_limit = await c.post("/v1/chat/completions", content=body,
                                        headers={"content-type": "application/json"})
                over = await c.post("/v1/chat/completions", content=body[:-4] + b'x"}]}',
                                    headers={"content-type": "application/json"})
    assert len(body) == limit
    assert at_limit.status_code == 200 and len(up.requests) == 1
    assert over.status_code == 413


def _nonce_of(head: bytes) -> bytes:
    line = next(x for x in head.split(b"\r\n") if x.lower().startswith(b"x-mesh-auth:"))
    return bytes.fromhex(line.split(b":", 1)[1].strip().decode().split(":")[1])


async def _sealed_host(stream: trio.SocketStream, *, frames: int, forged: bool) -> None:
    """A host that answers a sealed stream, then dies after `frames` frames (no last one);
    `forged`: a stranger on the path who answers 200 in clear instead."""
    from mesh_node.security import derive_keys

    head = await read_request_head(stream)
    if forged:
        body = b'data: {"choices":[{"delta":{"content":"evil"}}]}\n\n'
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                              b"content-length: %d\r\n\r\n" % len(body) + body)
        return
    sealer = FrameSealer(derive_keys("test-secret", "test-mesh").seal_key, _nonce_of(head))
    out = b"".join(sealer.frame(b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n', False)
                   for _ in range(frames))
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                          b"x-mesh-sealed: 1\r\ntransfer-encoding: chunked\r\n\r\n"
                          + f"{len(out):x}\r\n".encode() + out + b"\r\n0\r\n\r\n")
    await stream.aclose()  # HTTP-wise complete: only the missing last frame tells the cut


async def test_a_sealed_stream_cut_by_the_host_ends_with_an_error_event() -> None:
    async with raw_upstream(partial(_sealed_host, frames=2, forged=False)) as host_url:
        ctx = FakeMeshContext([FakeModel(MID, aliases=("gemma",),
                                         routes=[Route("node-b", host_url, False)])])
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/v1/chat/completions", json={
                "model": "gemma", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    data = sse_data(r.content)
    assert [d["choices"][0]["delta"]["content"] for d in data[:2]] == ["x", "x"]
    assert data[-1]["error"]["code"] == "upstream_failed"  # not a silent, truncated success


async def test_an_unsealed_success_to_a_sealed_request_is_not_relayed() -> None:
    good = ScriptedUpstream("unused")
    async with raw_upstream(partial(_sealed_host, frames=0, forged=True)) as evil_url, \
            api_serving(good.app()) as good_url:
        ctx = FakeMeshContext([FakeModel(MID, aliases=("gemma",), routes=[
            Route("node-b", evil_url, False), Route("local", good_url, True)])])
        ctx.inflight_by_node = {"local": 5}  # the forged peer is tried first
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/v1/chat/completions", json={
                "model": "gemma", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and b"evil" not in r.content
    assert sse_data(r.content)[0]["choices"][0]["delta"]["content"] == "Hel"  # retried locally
