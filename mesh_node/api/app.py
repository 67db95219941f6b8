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
from mesh_node.api.blobs import BlobSource, blob_routes
from mesh_node.api.context import MeshContext
from mesh_node.api.dialects.base import Shaper
from mesh_node.api.dialects.shapes import Dialect, dialect_of, error_body
from mesh_node.api.hot import CONNECTION_LOST, MeshApp
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
from mesh_node.api.surfaces import OllamaApi, anthropic_routes, ollama_routes
from mesh_node.api.tracker import ApiState, Tracker
from mesh_node.api.upstream import Http1Transport
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
        """401 unless the entry request carries the configured key, as a Bearer token or
        (Anthropic's habit) in `x-api-key`."""
        if self.ctx.api_key is None:
            return
        token = request.headers.get("x-api-key")
        if token is None:
            scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
            token = bearer if scheme.lower() == "bearer" else ""
        if not hmac.compare_digest(token.strip().encode(), self.ctx.api_key.encode()):
            raise errors.invalid_api_key()

    async def models(self, request: Request) -> Response:
        """The model list in a shape both OpenAI's and Anthropic's clients read."""
        self.check_api_key(request)
        data = [{"object": "model", "created": 0, "owned_by": "mesh-node", "type": "model",
                 "display_name": m["id"], "created_at": "1970-01-01T00:00:00Z", **m}
                for m in self.ctx.models()]
        ids = [m["id"] for m in data]
        return JSONResponse({"object": "list", "data": data, "has_more": False,
                             "first_id": ids[0] if ids else None,
                             "last_id": ids[-1] if ids else None})

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
                                      request.method, request.scope["path"], raw,
                                      self.wall())
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

    async def proxy(self, request: Request, kind: Kind,
                    shaper: Callable[[str, str], Shaper] | None = None) -> Response:
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
        return self.dispatch(request, model_id, request.scope["path"], body, raw, forwarded,
                             shaper(model_id, request_id_of(request.scope)) if shaper else None,
                             sealer)

    def dispatch(self, request: Request, model_id: str, path: str, body: dict[str, Any],
                 raw: bytes, forwarded: bool, shaper: Shaper | None,
                 sealer: FrameSealer | None = None, keep_alive: int | None = None) -> Response:
        """Forward a checked request for `model_id` to `path` of a host; `shaper` gives the
        answer the client's dialect (None: OpenAI); `sealer` seals the answer of a sealed
        forward back to its origin (None: clear). Every dialect's entry requests come here, so
        the client's key travels with each of them when the mesh has no secret; `keep_alive`
        is the request's Ollama keep-alive in seconds (None: the idle window)."""
        job = Job(model_id, path, body, raw, bool(body.get("stream")),
                  request_id_of(request.scope), forwarded, shaper, self.client_auth(request))
        tracker = Tracker(self.state, self.metrics, self.ctx.events, model_id, self.ctx.node_id,
                          entry=not forwarded, keep=keep_alive)  # demand: api/demand.py
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


def _shaped(request: Request, err: errors.ApiError, headers: dict[str, str]) -> Response:
    """`err` in the error shape of the dialect the request speaks."""
    default: Dialect = getattr(request.app.state, "dialect", "openai")
    body = error_body(dialect_of(request.url.path, request.headers, default), err)
    return JSONResponse(body, status_code=err.status, headers=headers)


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    return _shaped(request, exc, exc.headers)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        err = errors.method_not_allowed(request.method, request.url.path)
    elif exc.status_code == 404:
        err = errors.route_not_found(request.url.path)
    else:
        err = errors.ApiError(exc.status_code, str(exc.detail))
    return _shaped(request, err, dict(exc.headers or {}))


def _crash(request: Request, exc: Exception) -> Response:
    if isinstance(exc, CONNECTION_LOST):  # the client's connection is gone: api/hot.py
        log.info("client_connection_lost", error=repr(exc), path=request.url.path)
        return Response(status_code=499)
    log.exception("request_crashed", error=repr(exc))
    return _shaped(request, errors.ApiError(500, "Internal error in mesh-node.",
                                            type_=errors.SERVER, code="internal"), {})


def build_app(ctx: MeshContext, timings: Timings, *,
              transport: httpx.AsyncBaseTransport | None = None,
              wall: Callable[[], float] = time.time,
              blobs: BlobSource | None = None) -> MeshApp:
    """The API app for one node; `transport` replaces the network in tests; `blobs`: the
    node's model files for its peers and `mesh-node pull` (issue 14, api/blobs.py)."""
    upstream = transport or Http1Transport()  # lean keep-alive pool: see api/upstream.py
    api = _Api(ctx, timings, upstream, wall)
    ollama = OllamaApi(api, wall)

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
        *anthropic_routes(api),
        *ollama_routes(ollama),
        HttpRoute("/api/status", api.status, methods=["GET"]),
        HttpRoute("/api/events", api.events, methods=["GET"]),
        HttpRoute("/metrics", api.metrics_page, methods=["GET"]),
        HttpRoute("/healthz", api.healthz, methods=["GET"]),
        HttpRoute("/readyz", api.readyz, methods=["GET"]),
        HttpRoute("/", api.dashboard, methods=["GET"]),
        *(blob_routes(api, blobs) if blobs is not None else []),
    ]
    handlers: dict[Any, Any] = {errors.ApiError: _api_error, HTTPException: _http_error,
                                Exception: _crash}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)  # for the routes MeshApp leaves to Starlette
    app.state.api = api.state
    app.state.metrics = api.metrics
    app.state.ollama_app = _ollama_app(ollama, handlers)
    return MeshApp(app, routes)


def _ollama_app(ollama: OllamaApi, handlers: dict[Any, Any]) -> MeshApp:
    """The Ollama API alone, for its own listener (`[api] ollama_port`); same state as the
    main app, whose lifespan owns the upstream transport."""
    routes = [HttpRoute("/", ollama.root, methods=["GET", "HEAD"]), *ollama_routes(ollama)]
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.add_middleware(RequestIdMiddleware)
    app.state.dialect = "ollama"
    return MeshApp(app, routes, dialect="ollama")
