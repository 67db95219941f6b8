"""The API's ASGI entry: proxied POST routes go straight to their handler, the rest to Starlette.

Profiling one hop (benchmarks/hop_profile.py) put Starlette's layers (ServerErrorMiddleware,
ExceptionMiddleware, the request-id middleware, a regex match over 30 routes and the
per-route exception wrapper) at about a tenth of the proxy's CPU per request. The proxied
routes need none of it: their path and method are known, their errors are `ApiError`s in the
dialect of the path. This entry keeps everything those layers did for them (request id on the
response and in the logs, each dialect's error shape, a shaped 500 on a crash, a quiet end
when the client's connection is gone) in one function; other methods and paths (405, 404,
GETs, the dashboard) still go through Starlette, unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import structlog
import trio
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute
from starlette.types import Message, Receive, Scope, Send

from mesh_node.api import errors
from mesh_node.api.dialects.shapes import Dialect, dialect_of, error_body
from mesh_node.api.middleware import _SCOPE_KEY
from mesh_node.api.routing import request_id

log = structlog.get_logger("mesh_node.api")
Handler = Callable[[Request], Awaitable[Response]]
# The client's connection failed under the response, or its body ended in a disconnect
# (the server says so for a closed connection and for a broken chunked body, which it then
# answers with a 400 itself): nothing of ours crashed, and this app has no answer to give.
CONNECTION_LOST = (trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError,
                   ClientDisconnect)


class MeshApp:
    """ASGI app: `hot` POST paths handled directly, everything else by `app` (Starlette)."""

    def __init__(self, app: Starlette, routes: Iterable[HttpRoute],
                 dialect: Dialect = "openai") -> None:
        self.app = app
        self.state: State = app.state
        self.dialect = dialect
        self.hot: dict[str, Handler] = {r.path: r.endpoint for r in routes
                                        if r.methods == {"POST"}}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.hot.get(scope["path"]) if (
            scope["type"] == "http" and scope["method"] == "POST") else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        await self._hot(handler, scope, receive, send)

    async def _hot(self, handler: Handler, scope: Scope, receive: Receive,
                   send: Send) -> None:
        given = next((v for k, v in scope["headers"]
                      if k == b"x-mesh-request-id"), None) or next(
            (v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = request_id(given.decode("latin-1") if given else None)
        scope[_SCOPE_KEY] = rid
        raw_rid = rid.encode()
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", raw_rid)]
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            request = Request(scope, receive)
            try:
                response = await handler(request)
                await response(scope, receive, send_with_id)
            except errors.ApiError as exc:
                if started:
                    raise
                await self._error(scope, exc, exc.headers)(scope, receive, send_with_id)
            except CONNECTION_LOST as exc:
                log.info("client_connection_lost", error=repr(exc), path=scope["path"])
            except Exception as exc:
                log.exception("request_crashed", error=repr(exc))
                if started:
                    raise
                err = errors.ApiError(500, "Internal error in mesh-node.",
                                      type_=errors.SERVER, code="internal")
                await self._error(scope, err, {})(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    def _error(self, scope: Scope, err: errors.ApiError, headers: dict[str, str]) -> Response:
        """`err` in the error shape of the dialect the request speaks."""
        names = {k.decode("latin-1"): v for k, v in scope["headers"]}
        body = error_body(dialect_of(scope["path"], names, self.dialect), err)
        return JSONResponse(body, status_code=err.status, headers=headers)

