"""The Anthropic Messages and Ollama endpoints: a thin shell over the dialect cores.

Each handler checks the key, reads the body, lets the dialect turn it into a chat-completions
request, resolves the model, and hands the job to the same forwarder as the OpenAI endpoints,
with the dialect's shaper for the answer. Errors keep the dialect's shape (app.py's handlers).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route as HttpRoute

from mesh_node.api import errors
from mesh_node.api.dialects import anthropic, ollama
from mesh_node.api.dialects.anthropic_stream import AnthropicShaper, PassThroughShaper
from mesh_node.api.dialects.base import Shaper
from mesh_node.api.dialects.ollama_stream import EmbedShaper, Kind, OllamaShaper, rfc3339
from mesh_node.api.middleware import request_id_of

if TYPE_CHECKING:
    from mesh_node.api.app import _Api

COUNT_TOKENS = "/v1/messages/count_tokens"


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.invalid_json(str(exc)) from None
    except RecursionError:
        raise errors.invalid_json("nested too deeply") from None


def _resolve(api: _Api, names: list[str]) -> str:
    for name in names:
        found = api.ctx.resolve(name)
        if found is not None:
            return found
    raise errors.model_not_found(names[0], [m["id"] for m in api.ctx.models()])


async def _read(api: _Api, request: Request) -> object:
    # Always the key: nodes forward only chat-completions-shaped requests (count_tokens goes
    # through api.proxy), so no signature ever stands in for it on these routes.
    api.check_api_key(request)
    return _json(await api.read_body(request))


def _send(api: _Api, request: Request, model_id: str, path: str, body: dict[str, Any],
          shaper: Shaper, keep_alive: int | None = None) -> Response:
    body = {**body, "model": model_id}  # the host resolves the id whatever name came in
    return api.dispatch(request, model_id, path, body, json.dumps(body).encode(), False, shaper,
                        keep_alive=keep_alive)


def anthropic_routes(api: _Api) -> list[HttpRoute]:
    """POST /v1/messages (translated) and /v1/messages/count_tokens (passed through)."""

    async def messages(request: Request) -> Response:
        chat = anthropic.to_chat(await _read(api, request))
        model_id = _resolve(api, [chat["model"]])
        shaper = AnthropicShaper(model_id, request_id_of(request.scope))
        return _send(api, request, model_id, "/v1/chat/completions", chat, shaper)

    async def count_tokens(request: Request) -> Response:
        return await api.proxy(request, "count_tokens",
                               lambda mid, rid: PassThroughShaper(mid, rid, COUNT_TOKENS))

    return [HttpRoute("/v1/messages", messages, methods=["POST"]),
            HttpRoute(COUNT_TOKENS, count_tokens, methods=["POST"])]


class OllamaApi:
    """The Ollama endpoints over one app's `_Api`."""

    def __init__(self, api: _Api, wall: Callable[[], float]) -> None:
        self.api, self.wall = api, wall

    @staticmethod
    def mono_ns() -> int:
        return int(trio.current_time() * 1e9)

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")  # what Ollama clients probe for

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": ollama.VERSION})

    async def tags(self, request: Request) -> Response:
        self.api.check_api_key(request)
        return JSONResponse(ollama.tags(self.api.ctx.models()))

    async def ps(self, request: Request) -> Response:
        self.api.check_api_key(request)
        return JSONResponse(ollama.ps(self.api.ctx.models(), rfc3339, self.wall()))

    async def show(self, request: Request) -> Response:
        doc = await _read(self.api, request)
        name = (doc.get("model") or doc.get("name")) if isinstance(doc, dict) else None
        if not isinstance(name, str) or not name:
            raise errors.ApiError(400, "model is required")
        model_id = _resolve(self.api, ollama.name_candidates(name))
        entry = next(e for e in self.api.ctx.models() if e["id"] == model_id)
        return JSONResponse(ollama.show(entry))

    def _loaded(self, model_id: str, chat: bool, keep: int | None) -> Response:
        """Ollama's answer to an empty request ("load it", or with keep_alive 0 "unload it"):
        noted as a request with that keep-alive, so the mesh loads or unloads the model."""
        self.api.state.demand_begin(model_id, keep)
        self.api.state.demand_end(model_id)
        out: dict[str, Any] = {"model": ollama.listed_name(model_id),
                               "created_at": rfc3339(self.wall())}
        out |= {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
        return JSONResponse(out | {"done": True, "done_reason": "unload" if keep == 0
                                   else "load"})

    async def chat(self, request: Request) -> Response:
        doc = await _read(self.api, request)
        body = ollama.chat_request(doc)
        keep = ollama.keep_alive_seconds(doc)
        model_id = _resolve(self.api, ollama.name_candidates(body["model"]))
        if not body["messages"]:
            return self._loaded(model_id, True, keep)
        shaper = OllamaShaper(ollama.listed_name(model_id), "chat", self.wall, self.mono_ns)
        return _send(self.api, request, model_id, "/v1/chat/completions", body, shaper, keep)

    async def generate(self, request: Request) -> Response:
        doc = await _read(self.api, request)
        path, body = ollama.generate_request(doc)
        keep = ollama.keep_alive_seconds(doc)
        model_id = _resolve(self.api, ollama.name_candidates(body["model"]))
        if isinstance(doc, dict) and not doc.get("prompt"):
            return self._loaded(model_id, False, keep)
        kind: Kind = "completions" if path == "/v1/completions" else "generate"
        shaper = OllamaShaper(ollama.listed_name(model_id), kind, self.wall, self.mono_ns)
        return _send(self.api, request, model_id, path, body, shaper, keep)

    async def _embed(self, request: Request, legacy: bool) -> Response:
        body = ollama.embed_request(await _read(self.api, request), legacy)
        model_id = _resolve(self.api, ollama.name_candidates(body["model"]))
        shaper = EmbedShaper(ollama.listed_name(model_id), legacy, self.mono_ns)
        return _send(self.api, request, model_id, "/v1/embeddings", body, shaper)

    async def embed(self, request: Request) -> Response:
        return await self._embed(request, legacy=False)

    async def embeddings(self, request: Request) -> Response:
        return await self._embed(request, legacy=True)

    async def manage(self, request: Request) -> Response:
        """pull/push/create/copy/delete: a pull of a model the mesh has succeeds (nothing to
        fetch); everything else is 501 with the reason."""
        doc = await _read(self.api, request)
        verb = request.url.path.rsplit("/", 1)[-1]
        name = (doc.get("model") or doc.get("name")) if isinstance(doc, dict) else None
        if verb == "pull" and isinstance(name, str) and name:
            if any(self.api.ctx.resolve(n) for n in ollama.name_candidates(name)):
                return JSONResponse({"status": "success"})
        raise errors.ApiError(501, f"/api/{verb} is not supported by mesh-node: the mesh's "
                              "models come from each node's catalog ([[models]], model_dirs "
                              "and the Hugging Face cache); put the model file on a node.")


def ollama_routes(o: OllamaApi) -> list[HttpRoute]:
    manage = [HttpRoute(f"/api/{verb}", o.manage, methods=["DELETE" if verb == "delete"
                                                            else "POST"])
              for verb in ollama.UNSUPPORTED]
    return [HttpRoute("/api/version", o.version, methods=["GET"]),
            HttpRoute("/api/tags", o.tags, methods=["GET"]),
            HttpRoute("/api/ps", o.ps, methods=["GET"]),
            HttpRoute("/api/show", o.show, methods=["POST"]),
            HttpRoute("/api/chat", o.chat, methods=["POST"]),
            HttpRoute("/api/generate", o.generate, methods=["POST"]),
            HttpRoute("/api/embed", o.embed, methods=["POST"]),
            HttpRoute("/api/embeddings", o.embeddings, methods=["POST"]),
            *manage]
