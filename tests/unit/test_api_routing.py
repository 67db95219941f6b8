"""Routing through the app on loopback: failover, streaming relay, disconnects, node-to-node auth."""

from __future__ import annotations

import time

import httpx
import structlog
import trio

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.api.meshauth import forward_request
from mesh_node.security import MeshKeys, derive_keys
from mesh_node.timing import Timings
from tests.support.api_servers import (
    WAIT_S,
    ScriptedUpstream,
    api_serving,
    closed_port_url,
    raw_upstream,
    read_request_head,
    sse_data,
)

T = Timings(route_retry_window=3.0, upstream_connect_timeout=1.0, upstream_read_timeout=5.0)
CHAT = {"model": "gemma", "messages": [{"role": "user", "content": "hi"}]}
MID = "gemma-3-270m"
SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n")


def _ctx(routes: list[Route], **kw: object) -> FakeMeshContext:
    return FakeMeshContext([FakeModel(MID, aliases=("gemma",), routes=routes)],
                           **kw)  # type: ignore[arg-type]


async def test_api_route_refused_then_second_serves() -> None:
    up = ScriptedUpstream("b")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx([Route("dead", closed_port_url(), False), Route("b", up_url, False)],
                   secret=None)  # a scripted peer speaks clear HTTP: no sealing
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["served_by"] == "b"
    assert r.headers["x-mesh-served-by"] == "b"
    seen = up.requests[0]["headers"]
    assert seen["x-mesh-forwarded"] == "node-a"
    assert seen["x-mesh-request-id"] == r.headers["x-request-id"]


async def test_api_route_503_then_success_after_wait() -> None:
    up = ScriptedUpstream("b", statuses=[503])
    async with api_serving(up.app()) as up_url:
        ctx = _ctx([Route("b", up_url, True)])
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and len(up.requests) == 2 and ctx.waits >= 1


async def test_api_route_host_appears_after_reelection() -> None:
    up = ScriptedUpstream("new")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx([])
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c, \
                trio.open_nursery() as n:
            async def elect() -> None:
                await trio.sleep(0.3)
                ctx.set_routes(MID, [Route("new", up_url, True)])
            n.start_soon(elect)
            start = trio.current_time()
            r = await c.post("/v1/chat/completions", json=CHAT)
            took = trio.current_time() - start
    assert r.status_code == 200 and r.json()["served_by"] == "new"
    assert 0.25 < took < 2.0


async def test_api_route_died_before_first_byte_is_retried() -> None:
    async def dies(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(SSE_HEAD)
        await stream.aclose()

    up = ScriptedUpstream("good")
    async with raw_upstream(dies) as bad_url, api_serving(up.app()) as up_url:
        ctx = _ctx([Route("bad", bad_url, True), Route("good", up_url, False)], secret=None)
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 200
    assert sse_data(r.content)[-1] == "[DONE]"
    assert not any(isinstance(d, dict) and "error" in d for d in sse_data(r.content))


async def test_api_route_failure_after_first_byte_ends_with_error_event() -> None:
    async def breaks(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        chunk = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
        await stream.send_all(SSE_HEAD + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await stream.aclose()

    async with raw_upstream(breaks) as bad_url:
        ctx = _ctx([Route("bad", bad_url, True)])
        app = build_app(ctx, T)
        async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/v1/chat/completions", json={**CHAT, "stream": True})
    data = sse_data(r.content)
    assert data[0]["choices"][0]["delta"]["content"] == "x"
    assert data[-1]["error"]["code"] == "upstream_failed"
    assert b'mesh_requests_total{model="gemma-3-270m",node="bad",status="502"} 1.0' in \
        app.state.metrics.render()


async def test_api_route_sse_relayed_chunk_by_chunk() -> None:
    up = ScriptedUpstream("b", gated=True)
    async with api_serving(up.app()) as up_url:
        ctx = _ctx([Route("b", up_url, True)])
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c, \
                c.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            assert up.release is not None
            got: list[bytes] = []
            with trio.fail_after(WAIT_S):
                async for chunk in r.aiter_raw():
                    got.append(chunk)
                    # the client holds chunk k while upstream has produced only chunk k
                    assert up.sent == len(got)
                    if len(got) == len(up.chunks):
                        break
                    assert not up.finished
                    await up.release.send(None)
    assert b"".join(got) == b"".join(up.chunks)


async def test_api_route_client_disconnect_cancels_upstream() -> None:
    up = ScriptedUpstream("b", gated=True)
    async with api_serving(up.app()) as up_url:
        ctx = _ctx([Route("b", up_url, True)])
        app = build_app(ctx, T)
        async with api_serving(app) as url:
            async with httpx.AsyncClient(base_url=url) as c, \
                    c.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                first = await r.aiter_raw().__anext__()
                assert first == up.chunks[0]
            with trio.fail_after(WAIT_S):
                await up.cancelled.wait()  # the upstream generator was torn down
                while app.state.api.inflight_total:  # noqa: ASYNC110 (a counter, no event)
                    await trio.sleep(0.01)
    assert not up.finished and app.state.api.outbound["b"] == 0
    assert b'status="499"' in app.state.metrics.render()


async def test_api_route_least_inflight_and_mlx_rewrite() -> None:
    busy, idle = ScriptedUpstream("busy"), ScriptedUpstream("idle")
    async with api_serving(busy.app()) as busy_url, api_serving(idle.app()) as idle_url:
        ctx = _ctx([Route("busy", busy_url, True),
                    Route("idle", idle_url, False, rewrite_model="/models/tiny-mlx")],
                   secret=None)
        ctx.inflight_by_node = {"busy": 4, "idle": 1}
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.json()["served_by"] == "idle" and not busy.requests
    assert idle.requests[0]["body"]["model"] == "/models/tiny-mlx"
    assert r.json()["model"] == MID  # the mesh-facing name, not the folder path


async def test_api_forwarded_auth_and_no_reforward() -> None:
    up = ScriptedUpstream("b")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx([Route("elsewhere", up_url, False)], node_id="node-b", api_key="k")
        app = build_app(ctx, T)
        async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
            body = httpx.Request("POST", url, json=CHAT).content

            async def send(now: float, rid: str, keys: MeshKeys | None = None) -> httpx.Response:
                h, sealed, _ = forward_request(keys or ctx.keys, "node-a", "node-b", rid, "POST",
                                               "/v1/chat/completions", body, now)
                return await c.post("/v1/chat/completions", content=sealed, headers=h)

            bad = await send(time.time(), "r1", derive_keys("wrong", "test-mesh"))
            stale = await send(time.time() - 100, "r2")
            fresh = await send(time.time(), "r3")
            replay = await c.post("/v1/chat/completions", content=fresh.request.content,
                                  headers=fresh.request.headers)
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "mesh_auth_failed"
    assert stale.status_code == 401 and "stale" in stale.json()["error"]["message"]
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]["message"]
    # valid and no Bearer needed, but node-b only has a remote route: never forwarded again
    assert fresh.status_code == 503 and fresh.json()["error"]["code"] == "not_hosted_here"
    assert not up.requests
    assert b"mesh_forward_auth_failures_total 3.0" in app.state.metrics.render()


async def test_api_two_nodes_share_request_id_and_skip_bearer_between_nodes() -> None:
    up = ScriptedUpstream("llama-on-b")
    async with api_serving(up.app()) as up_url:
        ctx_b = _ctx([Route("node-b", up_url, True)], node_id="node-b", api_key="k")
        async with api_serving(build_app(ctx_b, T)) as b_url:
            ctx_a = _ctx([Route("node-b", b_url, False)], node_id="node-a", api_key="k")
            async with api_serving(build_app(ctx_a, T)) as a_url, \
                    httpx.AsyncClient(base_url=a_url) as c:
                with structlog.testing.capture_logs(
                        processors=[structlog.contextvars.merge_contextvars]) as logs:
                    r = await c.post("/v1/chat/completions", json={**CHAT, "stream": True},
                                     headers={"authorization": "Bearer k",
                                              "x-request-id": "trace-me"})
    assert r.status_code == 200 and sse_data(r.content)[-1] == "[DONE]"
    assert r.headers["x-request-id"] == "trace-me"
    assert "authorization" not in up.requests[0]["headers"]
    done = [e for e in logs if e["event"] == "request_done"]
    assert len(done) == 2 and {e["request_id"] for e in done} == {"trace-me"}
    assert {e["node"] for e in done} == {"node-b"}  # A reports who served it


async def test_api_route_client_disconnect_cancels_non_streamed_upstream() -> None:
    closed = trio.Event()

    async def slow(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        with trio.move_on_after(WAIT_S):
            while await stream.receive_some(65536):  # b"" once the proxy hangs up
                pass
            closed.set()

    async with raw_upstream(slow) as slow_url:
        ctx = _ctx([Route("slow", slow_url, True)])
        app = build_app(ctx, T)
        async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
            try:
                await c.post("/v1/chat/completions", json=CHAT, timeout=0.5)
                raise AssertionError("the upstream never answers")
            except httpx.ReadTimeout:
                pass  # the client gives up and closes its connection
            with trio.fail_after(WAIT_S):
                await closed.wait()
    assert app.state.api.inflight_total == 0 and app.state.api.outbound["slow"] == 0
    assert b'status="499"' in app.state.metrics.render()


async def test_api_route_host_declared_dead_before_first_byte_is_retried() -> None:
    """A powered-off host keeps its socket open and never answers: the attempt is abandoned
    when gossip declares the host dead, well before the read timeout, and retried."""
    async def silent(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await trio.sleep_forever()

    up = ScriptedUpstream("good")
    async with raw_upstream(silent) as mute_url, api_serving(up.app()) as up_url:
        ctx = _ctx([Route("mute", mute_url, False), Route("good", up_url, False)],
                   secret=None)
        ctx.inflight_by_node = {"good": 5}  # least in-flight picks "mute" first
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c, \
                trio.open_nursery() as n:
            async def gossip_declares_dead() -> None:
                await trio.sleep(0.5)
                ctx.declare_dead("mute")
            n.start_soon(gossip_declares_dead)
            start = trio.current_time()
            r = await c.post("/v1/chat/completions", json=CHAT)
            took = trio.current_time() - start
    assert r.status_code == 200 and r.json()["served_by"] == "good"
    assert took < T.upstream_read_timeout  # not the 5 s read timeout


async def test_api_route_new_host_during_a_failed_attempt_is_tried_at_once() -> None:
    """A failover: while the request waits on a host that went silent, the new host appears
    in the routes; when the attempt is abandoned, the new route is tried at once, not after
    waiting for a further change (which may never come: the table already changed)."""
    from mesh_node.api.loading import REPOLL_S

    reached = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        reached.set()  # the attempt on the silent host is under way
        await trio.sleep_forever()

    up = ScriptedUpstream("standby")
    async with raw_upstream(silent) as mute_url, api_serving(up.app()) as up_url:
        mute = Route("mute", mute_url, False)
        ctx = _ctx([mute], secret=None)
        waited: list[float] = []
        wait_for_change = ctx.wait_for_change

        async def spy(timeout: float) -> None:  # noqa: ASYNC109
            waited.append(timeout)
            await wait_for_change(timeout)
        ctx.wait_for_change = spy  # type: ignore[method-assign]
        async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c, \
                trio.open_nursery() as n:
            async def failover() -> None:
                await reached.wait()
                ctx.set_routes(MID, [mute, Route("standby", up_url, False)])  # standby ready
                ctx.dead.add("mute")  # then gossip gives up on the host: no change notice
                ctx.changed()
            n.start_soon(failover)
            r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["served_by"] == "standby"
    assert REPOLL_S not in waited  # the load wait was never entered


async def test_api_broken_chunked_body_is_a_400_not_a_crash() -> None:
    """A client whose chunked body breaks its framing gets the server's 400; the handler
    hears a disconnect, which is not a crash of ours (no 500, no request_crashed log)."""
    ctx = _ctx([Route("b", closed_port_url(), True)])
    with structlog.testing.capture_logs() as logs:
        async with api_serving(build_app(ctx, T)) as url:
            port = int(url.rsplit(":", 1)[1])
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                                  b"transfer-encoding: chunked\r\n\r\nzz\r\n")
            answer = b""
            with trio.fail_after(WAIT_S):
                while chunk := await stream.receive_some(65536):
                    answer += chunk
            await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:120]
    assert not [e for e in logs if e["event"] in ("request_crashed", "api_app_failed")]
