"""The OpenAI dialect: the upstream's own shape, with the mesh-facing model name in every
answer, whole or streamed, whatever the backend echoes (an MLX host echoes its folder path,
a model served through its llama export echoes the export's id)."""

from __future__ import annotations

import json

from mesh_node.api import errors
from mesh_node.api.dialects import sse


def rewrite_model(doc: bytes, name: str, tag: bytes) -> bytes:
    """`doc` (a JSON object) with its top-level "model" set to `name`.

    Fast path: a document that already says `tag` (`"model":"<name>"`) once is left as is;
    an unescaped `"model":` can only be a key, never text inside a string.
    """
    if tag in doc and doc.count(b'"model"') == 1:
        return doc
    try:
        parsed = json.loads(doc)
    except ValueError:
        return doc
    if not isinstance(parsed, dict) or "model" not in parsed or parsed["model"] == name:
        return doc
    parsed["model"] = name
    return json.dumps(parsed, separators=(",", ":")).encode()


def model_tag(name: str) -> bytes:
    return b'"model":' + json.dumps(name).encode()


class OpenAiShaper:
    """Shapes answers for an OpenAI client of model `name`."""

    media_type = "text/event-stream"

    def __init__(self, name: str) -> None:
        self.name = name
        self.tag = model_tag(name)

    def body(self, status: int, content_type: str, body: bytes) -> tuple[str, bytes]:
        if content_type.startswith("application/json"):
            body = rewrite_model(body, self.name, self.tag)
        return content_type, body

    def stream(self) -> OpenAiStream:
        return OpenAiStream(self.name, self.tag)


class OpenAiStream:
    """The upstream's SSE events, each relayed as soon as it is whole, model rewritten."""

    def __init__(self, name: str, tag: bytes) -> None:
        self.name, self.tag = name, tag
        self.split = sse.EventSplitter()

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._event(e) for e in self.split.feed(data))

    def _event(self, event: bytes) -> bytes:
        if b'"model"' not in event or (self.tag in event and event.count(b'"model"') == 1):
            return event  # the common cases: no model field, or already the mesh name
        data = sse.data_of(event)
        if not data or data == b"[DONE]":
            return event
        new = rewrite_model(data, self.name, self.tag)
        return event if new is data else b"data: " + new + b"\n\n"

    def end(self) -> bytes:
        return self.split.rest()

    def fail(self, message: str) -> bytes:
        return sse.event(None, errors.error_body(message, errors.SERVER, None,
                                                 "upstream_failed"))
