"""Request ids: on every response header and in every log line of the request (contextvars)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh_node.api.routing import request_id

_SCOPE_KEY = "mesh_request_id"


def request_id_of(scope: MutableMapping[str, Any]) -> str:
    return str(scope.get(_SCOPE_KEY, ""))


class RequestIdMiddleware:
    """Pure ASGI (no body buffering, streaming intact): id from X-Mesh-Request-Id/X-Request-Id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        given = headers.get(b"x-mesh-request-id") or headers.get(b"x-request-id")
        rid = request_id(given.decode("latin-1") if given else None)
        scope[_SCOPE_KEY] = rid
        raw_rid = rid.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", raw_rid)]
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
