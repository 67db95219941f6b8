"""Anthropic answers: whole bodies and the streaming events message_start ... message_stop,
made from chat-completions answers and chunks.

Stream, per upstream chunk: the first opens `message_start`; text deltas go into a text block
and tool-call deltas into tool_use blocks (`content_block_start/_delta/_stop`); the finish
reason and usage (the host sends usage last, after the finish reason, when asked with
`stream_options.include_usage`) close it with `message_delta` and `message_stop` at [DONE].
"""

from __future__ import annotations

import json
from typing import Any

from mesh_node.api.dialects import anthropic as a
from mesh_node.api.dialects import sse
from mesh_node.api.dialects.openai import model_tag, rewrite_model


class AnthropicStream:
    """The event state machine of one streamed Messages answer."""

    def __init__(self, model: str, fallback_id: str) -> None:
        self.model, self.fallback_id = model, fallback_id
        self.split = sse.EventSplitter()
        self.started = self.finished = False
        self.block = -1  # index of the last block opened
        self.open: str | None = None  # "text" / "tool_use" while a block is open
        self.tools: dict[int, int] = {}  # upstream tool-call index -> block index
        self.stop_reason = "end_turn"
        self.usage = {"input_tokens": 0, "output_tokens": 0}

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for ev in self.split.feed(data):
            if sse.is_done(ev):
                out += self._finish()
            elif (doc := sse.json_data(ev)) is not None:
                out += self._chunk(doc)
        return b"".join(out)

    def end(self) -> bytes:
        rest = self.split.rest()
        return self.feed(rest + b"\n\n" if rest.strip() else b"") + b"".join(self._finish())

    def fail(self, message: str) -> bytes:
        self.finished = True
        return sse.event("error", a.error_doc(502, message))

    def _start(self, doc: dict[str, Any]) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        msg: dict[str, Any] = {"id": a.message_id(doc.get("id"), self.fallback_id), "type": "message",
               "role": "assistant", "model": self.model, "content": [], "stop_reason": None,
               "stop_sequence": None, "usage": dict(self.usage)}
        return [sse.event("message_start", {"type": "message_start", "message": msg})]

    def _chunk(self, doc: dict[str, Any]) -> list[bytes]:
        if "error" in doc:  # the host reported a failure inside the stream
            err = doc["error"]
            text = err.get("message") if isinstance(err, dict) else str(err)
            self.finished = True
            return [sse.event("error", a.error_doc(502, str(text)))]
        out = self._start(doc)
        if doc.get("usage"):
            self.usage = a.usage_of(doc["usage"])
        for choice in doc.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._text(str(delta["content"]))
            for call in delta.get("tool_calls") or []:
                out += self._tool(call)
            if choice.get("finish_reason"):
                self.stop_reason = a.STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def _open(self, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.block += 1
        self.open = block["type"]
        return out + [sse.event("content_block_start", {
            "type": "content_block_start", "index": self.block, "content_block": block})]

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [sse.event("content_block_stop", {"type": "content_block_stop",
                                                 "index": self.block})]

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return sse.event("content_block_delta", {"type": "content_block_delta",
                                                 "index": index, "delta": delta})

    def _text(self, text: str) -> list[bytes]:
        out = [] if self.open == "text" else self._open({"type": "text", "text": ""})
        return out + [self._delta(self.block, {"type": "text_delta", "text": text})]

    def _tool(self, call: dict[str, Any]) -> list[bytes]:
        index = int(call.get("index", 0))
        fn = call.get("function") or {}
        out: list[bytes] = []
        if index not in self.tools:
            out += self._open({"type": "tool_use", "id": "toolu_" + str(call.get("id", index)),
                               "name": fn.get("name", ""), "input": {}})
            self.tools[index] = self.block
        if fn.get("arguments"):
            out.append(self._delta(self.tools[index], {"type": "input_json_delta",
                                                       "partial_json": str(fn["arguments"])}))
        return out

    def _finish(self) -> list[bytes]:
        if self.finished:
            return []
        out = self._start({})
        if self.block < 0:  # nothing was said: one empty text block, as the API gives
            out += self._open({"type": "text", "text": ""})
        out += self._close()
        self.finished = True
        delta = {"type": "message_delta",
                 "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                 "usage": dict(self.usage)}
        return out + [sse.event("message_delta", delta),
                      sse.event("message_stop", {"type": "message_stop"})]


class AnthropicShaper:
    """Shapes one Messages answer for model `name`; `request_id` names the message when the
    host gives no id."""

    media_type = "text/event-stream"

    def __init__(self, name: str, request_id: str) -> None:
        self.name, self.request_id = name, request_id

    def body(self, status: int, content_type: str, body: bytes) -> tuple[str, bytes]:
        doc: dict[str, Any]
        if status >= 400:
            doc = a.upstream_error(status, body)
        else:
            try:
                chat = json.loads(body)
            except ValueError:
                chat = None
            doc = (a.message(chat, self.name, self.request_id) if isinstance(chat, dict)
                   else a.error_doc(502, "the host's answer is not a JSON object"))
        return "application/json", json.dumps(doc).encode()

    def stream(self) -> AnthropicStream:
        return AnthropicStream(self.name, self.request_id)


class PassThroughShaper(AnthropicShaper):
    """Requests the host answers natively in Anthropic's shape (count_tokens): the body as
    the host gave it (mesh model name put in), errors in Anthropic's shape."""

    def __init__(self, name: str, request_id: str, path: str) -> None:
        super().__init__(name, request_id)
        self.path = path

    def body(self, status: int, content_type: str, body: bytes) -> tuple[str, bytes]:
        if status == 404:
            doc = a.error_doc(404, f"The host of '{self.name}' has no {self.path}: only "
                              "llama.cpp hosts count tokens, MLX hosts do not.")
            return "application/json", json.dumps(doc).encode()
        if status >= 400:
            return "application/json", json.dumps(a.upstream_error(status, body)).encode()
        return content_type, rewrite_model(body, self.name, model_tag(self.name))
