"""Forward a checked request to a ready host: replica choice, retries, streaming relay.

Before the first byte reaches the client anything may be retried (connection refused, 502/503,
host died mid-headers); after it, a failure ends the stream with an SSE error event.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import httpx
import structlog
import trio
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from mesh_node.api import errors
from mesh_node.api.context import MeshContext, Route
from mesh_node.api.dialects.base import Shaper
from mesh_node.api.dialects.openai import OpenAiShaper
from mesh_node.api.loading import LoadWait
from mesh_node.api.meshauth import forward_request
from mesh_node.api.routing import order_routes
from mesh_node.api.seal import unsealed
from mesh_node.api.tracker import ApiState, Tracker
from mesh_node.api.upstream import ConnectRefused
from mesh_node.timing import Timings

_DONE = b"data: [DONE]"  # OpenAI SSE end of stream (every backend speaks it)
log = structlog.get_logger("mesh_node.api")
SERVED_BY = "x-mesh-served-by"
_HOST_WATCH_S = 1.0  # while awaiting a peer's first byte, re-check it is alive this often
_CLOSE_GRACE_S = 2.0  # bound on closing an upstream after the client went away


@dataclass(frozen=True)
class Job:
    """A checked request to forward."""

    model_id: str
    path: str
    body: dict[str, Any]
    raw: bytes
    stream: bool
    request_id: str
    forwarded: bool  # arrived from another node: serve locally or fail, never re-forward
    shaper: Shaper | None = None  # the client's dialect; None: OpenAI (model name rewritten)
    client_auth: tuple[tuple[str, str], ...] = ()  # client key headers for the next node

    def shape(self) -> Shaper:
        return self.shaper or OpenAiShaper(self.model_id)


class _Retry(Exception):
    """This attempt failed before any byte reached the client; try elsewhere."""


class RelayResponse(StreamingResponse):
    """A streaming response whose cleanup always runs, also when the client vanishes early."""

    def __init__(self, gen: AsyncIterator[bytes], cleanup: Callable[[], Awaitable[None]],
                 **kw: Any) -> None:
        super().__init__(gen, **kw)
        self._gen = gen
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._close()

    async def relay(self, send: Send) -> None:
        """Send status, headers and every chunk; the caller watches for the client leaving
        (Starlette's __call__ would spawn its own watcher task per response)."""
        try:
            await self.stream_response(send)
        finally:
            await self._close()

    async def _close(self) -> None:
        # An un-started generator skips its own finally on aclose: hence the cleanup hook.
        with trio.move_on_after(_CLOSE_GRACE_S) as cs:
            cs.shield = True
            await self._gen.aclose()  # type: ignore[attr-defined]
            await self._cleanup()


class Forwarder:
    """Sends jobs upstream through one shared httpx transport.

    The transport is called directly, not through httpx.AsyncClient: the client's auth,
    redirect, cookie and default-header layers cost ~0.1 ms of CPU per request (measured) and
    do nothing for a proxy.
    """

    def __init__(self, ctx: MeshContext, timings: Timings, transport: httpx.AsyncBaseTransport,
                 state: ApiState, wall: Callable[[], float] = time.time) -> None:
        self.ctx, self.timings, self.transport, self.state, self.wall = (
            ctx, timings, transport, state, wall)
        self._timeout = httpx.Timeout(connect=timings.upstream_connect_timeout,
                                      read=timings.upstream_read_timeout, write=30.0,
                                      pool=timings.upstream_connect_timeout).as_dict()
        self._urls: dict[tuple[str, str], httpx.URL] = {}

    async def handle(self, job: Job, tracker: Tracker) -> Response:
        """The upstream's response, or ApiError (503 no host, 504 timeout)."""
        wait = LoadWait(self.ctx, self.timings, job.model_id)  # bounded: api/loading.py
        while True:
            routes = self.routes(job)
            for route in order_routes(routes, self.ctx.inflight(), self.state.outbound):
                try:
                    return await self._attempt(route, job, tracker)
                except _Retry as exc:
                    tracker.retried()
                    log.warning("upstream_failed_over", model=job.model_id, peer=route.node_id,
                                reason=str(exc))
            if job.forwarded:
                raise errors.not_hosted_here(job.model_id)
            # routes that changed during the attempts (a failover's new host became ready
            # while a dead one was tried) are tried at once, not after the next change
            await wait.next(len(routes), changed=self.routes(job) != routes)

    def routes(self, job: Job) -> list[Route]:
        """THE place a request resolves where it can go (read from the node's route table,
        built once per placement/view change); a forwarded job is served locally or not."""
        routes = self.ctx.routes(job.model_id)
        if job.forwarded:
            routes = [r for r in routes if r.local]
        return routes

    def connect_failed(self, route: Route, exc: Exception) -> _Retry:
        """THE place an upstream connect failure (refused, unreachable, timed out) is seen:
        the attempt is retried elsewhere, and a peer that refused is reported to gossip as
        evidence (issue 16: a crashed process on a live machine refuses at once)."""
        self._lost(route, isinstance(exc, ConnectRefused))
        return _Retry(f"connect: {exc!r}")

    def _request(self, route: Route, job: Job) -> tuple[httpx.Request, bytes | None]:
        """The upstream request, and the nonce that opens a sealed answer (None: clear)."""
        content = job.raw
        if route.rewrite_model:
            content = json.dumps({**job.body, "model": route.rewrite_model}).encode()
        headers = {"content-type": "application/json", "x-request-id": job.request_id}
        nonce = None
        if not route.local:
            signed, content, nonce = forward_request(self.ctx.keys, self.ctx.node_id,
                                                     route.node_id, job.request_id, "POST",
                                                     job.path, content, self.wall())
            headers |= signed
            headers.update(job.client_auth)
        return httpx.Request("POST", self._url(route.url, job.path), content=content,
                             headers=headers, extensions={"timeout": self._timeout}), nonce

    def _url(self, base: str, path: str) -> httpx.URL:
        """The parsed upstream URL, parsed once per (host, path): httpx's URL parser was
        ~6 % of a hop's CPU in the profile. Bounded: hosts come from the route table."""
        key = (base, path)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= 1024:
                self._urls.clear()
            url = self._urls[key] = httpx.URL(base.rstrip("/") + path)
        return url

    async def _attempt(self, route: Route, job: Job, tracker: Tracker) -> Response:
        self.state.open_outbound(route.node_id)
        handed_off = False
        try:
            if route.local:  # a local backend that dies closes its socket: no watch needed
                resp, first, rest = await self._until_first_byte(route, job)
            else:
                resp, first, rest = await self._watched(route, job)
            tracker.node = route.node_id  # never a peer's header: it keys metric labels
            tracker.first_byte()
            if rest is not None:
                handed_off = True
                return self._relay(resp, first, rest, route, job, tracker)
            return self._plain(resp, first, route, job, tracker)
        finally:
            if not handed_off:
                self.state.close_outbound(route.node_id)

    async def _until_first_byte(self, route: Route, job: Job
                                ) -> tuple[httpx.Response, bytes, AsyncIterator[bytes] | None]:
        """(response, first chunk, rest) for a stream; (response, whole body, None) otherwise."""
        resp = await self._send(route, job)
        try:
            if job.stream and resp.headers.get("content-type", "").startswith("text/event-stream"):
                first, rest = await _first_chunk(resp, job.model_id)
                return resp, first, rest
            return resp, await _read_all(resp, job.model_id), None
        except BaseException:
            with trio.CancelScope(shield=True):
                await resp.aclose()
            raise

    async def _watched(self, route: Route, job: Job
                       ) -> tuple[httpx.Response, bytes, AsyncIterator[bytes] | None]:
        """`_until_first_byte`, abandoned as retryable when gossip declares the host dead or
        gone meanwhile: a powered-off host never closes its sockets, and a generation may
        legitimately take minutes, so no read timeout can tell the two apart."""
        result = None
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_host, route.node_id, nursery.cancel_scope)
            try:
                result = await self._until_first_byte(route, job)
            except Exception as exc:  # _Retry / ApiError: re-raised below, not as a group
                error = exc
            nursery.cancel_scope.cancel()
        if error is not None:
            raise error
        if result is None:
            raise _Retry("host left the mesh before the first byte")
        return result

    async def _watch_host(self, node_id: str, scope: trio.CancelScope) -> None:
        while self.ctx.host_alive(node_id):
            await self.ctx.wait_for_change(_HOST_WATCH_S)
        log.warning("upstream_host_lost", peer=node_id)
        scope.cancel()

    async def _send(self, route: Route, job: Job) -> httpx.Response:
        request, nonce = self._request(route, job)
        try:
            resp = await self.transport.handle_async_request(request)
        except (httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ConnectError) as exc:
            raise self.connect_failed(route, exc) from None
        except httpx.TimeoutException:
            raise errors.upstream_timeout(job.model_id) from None
        except httpx.TransportError as exc:
            self._lost(route, False)
            raise _Retry(f"transport: {exc!r}") from None
        if resp.status_code in (502, 503):
            await resp.aclose()
            raise _Retry(f"status {resp.status_code}")
        if nonce is not None:
            try:
                resp = unsealed(resp, request, self.ctx.keys.seal_key, nonce)
            except httpx.RemoteProtocolError as exc:
                await resp.aclose()
                raise _Retry(f"answer: {exc}") from None
        return resp

    def _lost(self, route: Route, refused: bool) -> None:
        """Tell gossip what this node saw of a peer (issue 16: LAN evidence)."""
        if not route.local:
            self.ctx.report_unreachable(route.node_id, refused)

    def _plain(self, resp: httpx.Response, body: bytes, route: Route, job: Job,
               tracker: Tracker) -> Response:
        ctype, body = job.shape().body(resp.status_code,
                                       resp.headers.get("content-type", "application/json"), body)
        tracker.finish(resp.status_code)
        return Response(body, status_code=resp.status_code, media_type=ctype,
                        headers={SERVED_BY: tracker.node})

    def _relay(self, resp: httpx.Response, first: bytes, rest: AsyncIterator[bytes],
               route: Route, job: Job, tracker: Tracker) -> Response:
        """Relay the stream through the job's shaper: each whole upstream event goes out as
        soon as it arrives (shaped), never held for the next."""
        shaper = job.shape()
        shaped = shaper.stream()
        outcome = {"status": 499}  # nginx's "client closed request" unless the stream ends
        done = False

        async def cleanup() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.state.close_outbound(route.node_id)
            tracker.finish(outcome["status"])
            with trio.move_on_after(_CLOSE_GRACE_S) as cs:
                cs.shield = True
                await resp.aclose()

        async def gen() -> AsyncIterator[bytes]:
            try:
                if _DONE in first:
                    outcome["status"] = resp.status_code
                if out := shaped.feed(first):
                    yield out
                async for chunk in rest:
                    if _DONE in chunk:  # the upstream's last event: a client that leaves
                        outcome["status"] = resp.status_code  # after it got the whole answer
                    if out := shaped.feed(chunk):
                        yield out
                if out := shaped.end():
                    yield out
                outcome["status"] = resp.status_code
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                outcome["status"] = 502
                log.warning("upstream_stream_broken", peer=route.node_id, error=repr(exc))
                self._lost(route, False)
                yield shaped.fail(f"the host failed mid-stream: {type(exc).__name__}")
            finally:
                await cleanup()

        headers = {SERVED_BY: tracker.node, "cache-control": "no-cache",
                   "x-accel-buffering": "no"}
        return RelayResponse(gen(), cleanup, status_code=resp.status_code, headers=headers,
                             media_type=shaper.media_type)


async def _first_chunk(resp: httpx.Response,
                       model: str) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first body bytes and the iterator of the rest; a host dying here is retryable.
    The transport's stream is read directly: `aiter_raw` adds a byte chunker, a byte counter
    and a context manager per piece (~0.09 ms of a hop's profile), and cleanup closes `resp`."""
    chunks = cast(AsyncIterable[bytes], resp.stream).__aiter__()
    try:
        first = b""
        while not first:
            first = await chunks.__anext__()
        return first, chunks
    except StopAsyncIteration:
        return b"", chunks
    except httpx.TimeoutException:
        await resp.aclose()
        raise errors.upstream_timeout(model) from None
    except httpx.TransportError as exc:
        await resp.aclose()
        raise _Retry(f"died before first byte: {exc!r}") from None


async def _read_all(resp: httpx.Response, model: str) -> bytes:
    try:
        return await resp.aread()
    except httpx.TimeoutException:
        raise errors.upstream_timeout(model) from None
    except httpx.TransportError as exc:
        raise _Retry(f"died before the response was complete: {exc!r}") from None
    finally:
        await resp.aclose()
