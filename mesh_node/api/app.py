"""The ASGI app: OpenAI-compatible endpoints, status, events, metrics, health, dashboard."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import httpx
import structlog
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route as HttpRoute
from starlette.types import Message, Receive, Scope, Send

from mesh_node.api import errors
from mesh_node.api.context import MeshContext
from mesh_node.api.meshauth import (
    AUTH,
    CLIENT_AUTH_HEADERS,
    FORWARDED,
    REQUEST_ID,
    ForwardVerifier,
    auth_nonce,
)
from mesh_node.api.middleware import RequestIdMiddleware, request_id_of
from mesh_node.api.payload import Kind, parse, read_limited
from mesh_node.api.proxy import Forwarder, Job, RelayResponse
from mesh_node.api.seal import (
    SEAL_OVERHEAD,
    SEALED,
    FrameSealer,
    SealError,
    open_request,
    sealed_message,
)
from mesh_node.api.tracker import ApiState, Tracker
from mesh_node.api.upstream import H11Transport
from mesh_node.security import API_KEY_WITHOUT_SECRET
from mesh_node.status.metrics import CONTENT_TYPE, ApiMetrics
from mesh_node.timing import Timings

log = structlog.get_logger("mesh_node.api")


class _Api:
    """Handlers over one context; build_app wires them into Starlette."""

    def __init__(self, ctx: MeshContext, timings: Timings, transport: httpx.AsyncBaseTransport,
                 wall: Callable[[], float]) -> None:
        self.ctx = ctx
        self.wall = wall
        self.state = ApiState()
        self.metrics = ApiMetrics(ctx.status)
        self.verifier = ForwardVerifier(ctx.keys.http_key, ctx.node_id, wall())
        if ctx.api_key is not None and not ctx.keys.authenticated:
            log.warning("api_key_without_mesh_secret", node=ctx.node_id,
                        hint=API_KEY_WITHOUT_SECRET)
        self.forwarder = Forwarder(ctx, timings, transport, self.state, wall)

    def check_api_key(self, request: Request) -> None:
        """401 unless the entry request carries the configured Bearer key."""
        if self.ctx.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self.ctx.api_key.encode()):
            raise errors.invalid_api_key()

    async def models(self, request: Request) -> Response:
        self.check_api_key(request)
        data = [{"object": "model", "created": 0, "owned_by": "mesh-node", **m}
                for m in self.ctx.models()]
        return JSONResponse({"object": "list", "data": data})

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        try:
            size = int(declared) if declared is not None else None
        except ValueError:
            raise errors.invalid_json("bad Content-Length") from None
        limit = self.ctx.max_body_bytes  # a sealed forward carries a 16-byte GCM tag more
        limit += SEAL_OVERHEAD if request.headers.get(SEALED) == "1" else 0
        return await read_limited(request.stream(), limit, size)

    def check_forwarded(self, request: Request, raw: bytes) -> None:
        """401 (counted) unless the node-to-node signature is valid, fresh, new and for this
        node; 503 (counted) when the replay cache is at its cap."""
        h = request.headers
        refused = self.verifier.check(h.get(AUTH), h.get(FORWARDED, ""), h.get(REQUEST_ID, ""),
                                      request.method, request.url.path, raw, self.wall())
        if refused is None:
            return
        log.warning("forward_auth_failed", peer=h.get(FORWARDED), reason=refused.reason)
        if refused.status == 503:
            if refused.reason == "replay cache full":
                self.metrics.replay_cache_full.inc()
            raise errors.mesh_auth_busy(refused.reason)
        self.metrics.mesh_auth_failures.inc()
        raise errors.mesh_auth_failed(refused.reason)

    def client_auth(self, request: Request) -> tuple[tuple[str, str], ...]:
        """The client's key headers, carried on a forward only when the mesh has no secret:
        the next node then checks them itself (with a secret, the signature vouches)."""
        if self.ctx.keys.authenticated:
            return ()
        return tuple((n, v) for n in CLIENT_AUTH_HEADERS if (v := request.headers.get(n)))

    async def proxy(self, request: Request, kind: Kind) -> Response:
        forwarded = FORWARDED in request.headers
        if not forwarded or not self.ctx.keys.authenticated:
            # Without a mesh secret the signature's key comes from the public mesh name:
            # anyone can forge it, so a forwarded request needs the client's key as well.
            self.check_api_key(request)
        raw = await self.read_body(request)
        sealer = None
        if forwarded:
            self.check_forwarded(request, raw)
            raw, sealer = self.open_sealed(request, raw)
        body = parse(raw, kind)
        model_id = self.ctx.resolve(body["model"])
        if model_id is None:
            raise errors.model_not_found(body["model"], [m["id"] for m in self.ctx.models()])
        job = Job(model_id, request.url.path, body, raw, bool(body.get("stream")),
                  request_id_of(request.scope), forwarded, self.client_auth(request))
        tracker = Tracker(self.state, self.metrics, self.ctx.events, model_id, self.ctx.node_id)
        return _Forwarded(self.forwarder, job, tracker, sealer)

    def open_sealed(self, request: Request, raw: bytes) -> tuple[bytes, FrameSealer | None]:
        """A signed forward's body in clear, and the sealer of its answer. With a secret every
        forward is sealed; an unsealed one (or one that does not open) is 400, counted."""
        sealed = request.headers.get(SEALED) == "1"
        if not self.ctx.keys.authenticated:
            if sealed:
                raise errors.mesh_seal_failed("sealed forward to a mesh without a secret")
            return raw, None
        nonce = auth_nonce(request.headers[AUTH])  # checked by check_forwarded
        try:
            if not sealed:
                raise SealError("a mesh with a secret forwards sealed bodies only")
            return open_request(self.ctx.keys.seal_key, nonce, raw), \
                FrameSealer(self.ctx.keys.seal_key, nonce)
        except SealError as exc:
            self.metrics.mesh_auth_failures.inc()
            log.warning("forward_seal_failed", peer=request.headers.get(FORWARDED),
                        reason=str(exc))
            raise errors.mesh_seal_failed(str(exc)) from None

    async def chat(self, request: Request) -> Response:
        return await self.proxy(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self.proxy(request, "completions")

    async def embeddings(self, request: Request) -> Response:
        return await self.proxy(request, "embeddings")

    async def status(self, request: Request) -> Response:
        return JSONResponse({**self.ctx.status(), "api": self.state.summary()})

    async def events(self, request: Request) -> Response:
        async def nothing() -> None:
            return None
        return RelayResponse(self.ctx.events.sse(), nothing, media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def metrics_page(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "node": self.ctx.node_id})

    async def readyz(self, request: Request) -> Response:
        ready, reason = self.ctx.readiness()
        return JSONResponse({"ready": ready, "reason": reason}, status_code=200 if ready else 503)

    async def dashboard(self, request: Request) -> Response:
        page = resources.files("mesh_node.status").joinpath("static/dashboard.html")
        doc = {**self.ctx.status(), "api": self.state.summary()}
        return HTMLResponse(inline_status(page.read_text(encoding="utf-8"), doc))


class _Forwarded(Response):
    """Forwards the job when Starlette sends this response: one nursery per request whose
    only extra task watches for the client leaving, which cancels the upstream request (and,
    mid-stream, the relay). Profiling showed trio task spawns and nurseries as a main
    per-request cost, so the answer and any stream share this one watcher."""

    def __init__(self, forwarder: Forwarder, job: Job, tracker: Tracker,
                 sealer: FrameSealer | None = None) -> None:
        super().__init__()
        self.forwarder, self.job, self.tracker, self.sealer = forwarder, job, tracker, sealer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        failed: list[errors.ApiError] = []  # kept out of the nursery's ExceptionGroup
        started = False

        async def tracked(message: Message) -> None:
            # The client may leave while the last message is being written (hypercorn reports
            # the close from inside that send): the answer still counts as given.
            nonlocal started
            started = True
            await send(message if self.sealer is None else sealed_message(self.sealer, message))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope)
            try:
                response = await self.forwarder.handle(self.job, self.tracker)
                if isinstance(response, RelayResponse):
                    await response.relay(tracked)
                else:
                    await response(scope, receive, tracked)
            except errors.ApiError as exc:
                failed.append(exc)
            except BaseException:
                self.tracker.finish(499)
                raise
            finally:
                nursery.cancel_scope.cancel()
        if failed:
            self.tracker.finish(failed[0].status)
            raise failed[0]
        if not started:  # the client left before the answer: upstream already cancelled
            self.tracker.finish(499)
            log.info("client_disconnected", model=self.job.model_id)
            await Response(status_code=499)(scope, receive, send)


async def _watch_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    """Cancel `scope` once the client disconnects (the body is already read, so the only
    message left to receive is http.disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def inline_status(page: str, doc: dict[str, Any]) -> str:
    """Put the status document into the page; "</" escaped so no string can end the script."""
    data = json.dumps(doc).replace("</", "<\\/")
    return page.replace('type="application/json">null</script>',
                        f'type="application/json">{data}</script>', 1)


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        err = errors.method_not_allowed(request.method, request.url.path)
    elif exc.status_code == 404:
        err = errors.route_not_found(request.url.path)
    else:
        err = errors.ApiError(exc.status_code, str(exc.detail))
    return JSONResponse(err.body(), status_code=err.status, headers=dict(exc.headers or {}))


# The client's connection failed under the response (hypercorn's trio server can race a
# close against a send while a client hangs up): nothing of ours crashed, and no answer
# can reach that client any more.
_CONNECTION_LOST = (trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError)


def _crash(request: Request, exc: Exception) -> Response:
    if isinstance(exc, _CONNECTION_LOST):
        log.info("client_connection_lost", error=repr(exc), path=request.url.path)
        return Response(status_code=499)
    log.exception("request_crashed", error=repr(exc))
    body = errors.error_body("Internal error in mesh-node.", errors.SERVER, None, "internal")
    return JSONResponse(body, status_code=500)


def build_app(ctx: MeshContext, timings: Timings, *,
              transport: httpx.AsyncBaseTransport | None = None,
              wall: Callable[[], float] = time.time) -> Starlette:
    """The API app for one node; `transport` replaces the network in tests."""
    upstream = transport or H11Transport()  # lean keep-alive pool: see api/upstream.py
    api = _Api(ctx, timings, upstream, wall)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await upstream.aclose()

    routes = [
        HttpRoute("/v1/models", api.models, methods=["GET"]),
        HttpRoute("/v1/chat/completions", api.chat, methods=["POST"]),
        HttpRoute("/v1/completions", api.completions, methods=["POST"]),
        HttpRoute("/v1/embeddings", api.embeddings, methods=["POST"]),
        HttpRoute("/api/status", api.status, methods=["GET"]),
        HttpRoute("/api/events", api.events, methods=["GET"]),
        HttpRoute("/metrics", api.metrics_page, methods=["GET"]),
        HttpRoute("/healthz", api.healthz, methods=["GET"]),
        HttpRoute("/readyz", api.readyz, methods=["GET"]),
        HttpRoute("/", api.dashboard, methods=["GET"]),
    ]
    handlers: dict[Any, Any] = {errors.ApiError: _api_error, HTTPException: _http_error,
                                Exception: _crash}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    app.state.api = api.state
    app.state.metrics = api.metrics
    return app
