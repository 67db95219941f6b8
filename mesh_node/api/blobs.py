"""The blob endpoint: a holder serves the model files of its own catalog to its peers.

    GET /mesh/v1/blobs/{digest}/manifest  -> {"digest", "size", "chunk_bytes", "chunks"}
    GET /mesh/v1/blobs/{digest}           -> the file; one `Range: bytes=a-[b]` -> 206

The digest is only a key into this node's catalog (`BlobSource.lookup`): nothing from the
request ever becomes a path, and an unknown digest is 404 before any file is opened.
Authentication: with a mesh secret, a node-to-node signature (api/meshauth.py) and nothing
else (strangers and clients get 401); without one the signature proves nothing, so the API
key is asked for when one is set, as on forwards. Blob bytes are not sealed: the digest
carries their integrity (the fetcher checks every chunk) and a model file is public weights;
README "Models travel" says so.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute
from starlette.types import Receive, Scope, Send

from mesh_node.api import errors
from mesh_node.api.meshauth import FORWARDED
from mesh_node.transfer.manifest import Manifest, parse_range

if TYPE_CHECKING:
    from mesh_node.api.app import _Api

READ_BYTES = 8 * 1024 * 1024  # large reads in a worker thread: few syscalls, few task hops
_DIGEST = re.compile(r"[0-9a-f]{64}")


class BlobSource(Protocol):
    """This node's shareable files, by digest (the node's TransferService)."""

    shares: bool
    counters: dict[str, int]

    def lookup(self, digest: str) -> tuple[Path, Manifest] | None:
        """The catalog file with this digest and its chunk list; None when there is none."""
        ...

    def pull(self, model_id: str) -> dict[str, Any]:
        """Start fetching a model here (`mesh-node pull`); its state."""
        ...


def blob_routes(api: _Api, source: BlobSource) -> list[HttpRoute]:
    def find(request: Request) -> tuple[Path, Manifest]:
        _authenticate(api, request, source)
        digest = request.path_params["digest"]
        found = source.lookup(digest) if source.shares and _DIGEST.fullmatch(digest) else None
        if found is None:
            source.counters["blob_requests_refused"] += 1
            raise errors.ApiError(404, "No shared model file with this digest.",
                                  code="blob_not_found")
        return found

    async def manifest(request: Request) -> Response:
        _, man = find(request)
        return JSONResponse(man.to_json())

    async def blob(request: Request) -> Response:
        path, man = find(request)
        try:
            rng = parse_range(request.headers.get("range"), man.size)
        except ValueError as exc:
            raise errors.ApiError(416, str(exc), code="range_not_satisfiable",
                                  headers={"content-range": f"bytes */{man.size}"}) from None
        return FileSlice(path, rng, man.size, source.counters)

    async def pull(request: Request) -> Response:
        """POST {"model": name}: fetch it onto this node ahead of time (client API key)."""
        api.check_api_key(request)
        try:
            name = json.loads(await request.body())["model"]
        except (ValueError, KeyError, TypeError):
            raise errors.missing_field("model") from None
        model_id = api.ctx.resolve(str(name))
        if model_id is None:
            raise errors.model_not_found(str(name), [m["id"] for m in api.ctx.models()])
        return JSONResponse(source.pull(model_id))

    return [HttpRoute("/mesh/v1/blobs/{digest}/manifest", manifest, methods=["GET"]),
            HttpRoute("/mesh/v1/blobs/{digest}", blob, methods=["GET"]),
            HttpRoute("/mesh/v1/pull", pull, methods=["POST"])]


def _authenticate(api: _Api, request: Request, source: BlobSource) -> None:
    try:
        if api.ctx.keys.authenticated:
            if FORWARDED not in request.headers:
                raise errors.mesh_auth_failed("model files are served to mesh members only")
            api.check_forwarded(request, b"")
        else:
            api.check_api_key(request)
    except errors.ApiError:
        source.counters["blob_requests_refused"] += 1
        raise


class FileSlice(Response):
    """[start, end) of a file (the whole file without a range), read in large blocks in a
    worker thread; the file is opened only here, after the digest was found."""

    def __init__(self, path: Path, rng: tuple[int, int] | None, size: int,
                 counters: dict[str, int]) -> None:
        super().__init__()
        self.path, self.size, self.counters = path, size, counters
        self.start, self.end = rng if rng is not None else (0, size)
        self.partial = rng is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/octet-stream"),
                   (b"content-length", str(self.end - self.start).encode()),
                   (b"accept-ranges", b"bytes")]
        if self.partial:
            headers.append((b"content-range",
                            f"bytes {self.start}-{self.end - 1}/{self.size}".encode()))
        fd = await trio.to_thread.run_sync(os.open, self.path, os.O_RDONLY)
        try:
            await send({"type": "http.response.start", "status": 206 if self.partial else 200,
                        "headers": headers})
            pos = self.start
            while pos < self.end:
                n = min(READ_BYTES, self.end - pos)
                data = await trio.to_thread.run_sync(os.pread, fd, n, pos)
                if not data:
                    raise OSError(f"{self.path} shrank while being served")
                pos += len(data)
                self.counters["blob_bytes_served"] += len(data)
                await send({"type": "http.response.body", "body": data,
                            "more_body": pos < self.end})
        finally:
            os.close(fd)
