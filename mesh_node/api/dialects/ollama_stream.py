"""Ollama answers made from chat-completions answers: whole bodies, and NDJSON streams whose
last object is Ollama's `done: true` summary (reason, token counts, durations in ns).

Durations come from the host's `timings` (llama-server reports prompt and decode times);
`total_duration` is measured at the entry node; `load_duration` is 0 (models stay loaded).
The wall clock (`created_at`) and the monotonic clock come in as parameters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from mesh_node.api.dialects import sse

Kind = Literal["chat", "generate", "completions"]  # completions: /api/generate with raw
_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop"}


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def error_doc(message: str) -> dict[str, Any]:
    return {"error": message}


def upstream_error(status: int, body: bytes) -> dict[str, Any]:
    message = body.decode("utf-8", "replace").strip() or f"upstream status {status}"
    try:
        doc = json.loads(body)
    except ValueError:
        return error_doc(message)
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return error_doc(str(err["message"]))
    return error_doc(err if isinstance(err, str) else message)


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        fn = call.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            args = {"arguments": fn.get("arguments")}
        out.append({"function": {"name": fn.get("name", ""), "arguments": args}})
    return out


class OllamaShaper:
    """Shapes one /api/chat or /api/generate answer for model `name`."""

    media_type = "application/x-ndjson"

    def __init__(self, name: str, kind: Kind, wall: Callable[[], float],
                 mono_ns: Callable[[], int]) -> None:
        self.name, self.kind, self.wall, self.mono_ns = name, kind, wall, mono_ns
        self.start_ns = mono_ns()

    def head(self) -> dict[str, Any]:
        return {"model": self.name, "created_at": rfc3339(self.wall())}

    def piece(self, text: str, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """An answer object holding `text` (and tool calls), in this kind's field."""
        if self.kind != "chat":
            return self.head() | {"response": text}
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        return self.head() | {"message": msg | ({"tool_calls": calls} if calls else {})}

    def summary(self, finish: str | None, usage: object, timings: object) -> dict[str, Any]:
        """The `done: true` fields: reason, counts and durations."""
        u = usage if isinstance(usage, dict) else {}
        t = timings if isinstance(timings, dict) else {}
        return {"done": True, "done_reason": _REASONS.get(finish or "stop", "stop"),
                "total_duration": self.mono_ns() - self.start_ns, "load_duration": 0,
                "prompt_eval_count": int(u.get("prompt_tokens") or 0),
                "prompt_eval_duration": int(float(t.get("prompt_ms") or 0) * 1e6),
                "eval_count": int(u.get("completion_tokens") or 0),
                "eval_duration": int(float(t.get("predicted_ms") or 0) * 1e6)}

    def body(self, status: int, content_type: str, body: bytes) -> tuple[str, bytes]:
        if status >= 400:
            return "application/json", json.dumps(upstream_error(status, body)).encode()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return "application/json", json.dumps(
                error_doc("the host's answer is not a JSON object")).encode()
        choice = (doc.get("choices") or [{}])[0]
        msg = choice.get("message") or {}
        text = str(msg.get("content") or choice.get("text") or "")
        out = self.piece(text, _tool_calls(msg.get("tool_calls") or []))
        out |= self.summary(choice.get("finish_reason"), doc.get("usage"), doc.get("timings"))
        return "application/json", json.dumps(out).encode()

    def stream(self) -> OllamaStream:
        return OllamaStream(self)


class OllamaStream:
    """SSE chunks in, NDJSON objects out: one per text delta, then the summary."""

    def __init__(self, shaper: OllamaShaper) -> None:
        self.shaper = shaper
        self.split = sse.EventSplitter()
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage: object = None
        self.timings: object = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        out: list[dict[str, Any]] = []
        for ev in self.split.feed(data):
            if sse.is_done(ev):
                out += self._finish()
            elif (doc := sse.json_data(ev)) is not None:
                out += self._chunk(doc)
        return b"".join(json.dumps(o).encode() + b"\n" for o in out)

    def _chunk(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        if "error" in doc:
            self.done = True
            err = doc["error"]
            return [error_doc(str(err.get("message") if isinstance(err, dict) else err))]
        self.usage = doc.get("usage") or self.usage
        self.timings = doc.get("timings") or self.timings
        out = []
        for choice in doc.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") or choice.get("text")
            if text:
                out.append(self.shaper.piece(str(text)) | {"done": False})
            for call in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(int(call.get("index", 0)),
                                             {"function": {"name": "", "arguments": ""}})
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            self.finish = choice.get("finish_reason") or self.finish
        return out

    def _finish(self) -> list[dict[str, Any]]:
        if self.done:
            return []
        self.done = True
        out = []
        if self.calls:  # whole tool calls, once their arguments are complete
            calls = _tool_calls([self.calls[k] for k in sorted(self.calls)])
            out.append(self.shaper.piece("", calls) | {"done": False})
        return out + [self.shaper.piece("") | self.shaper.summary(self.finish, self.usage,
                                                                  self.timings)]

    def end(self) -> bytes:
        rest = self.split.rest()
        head = self.feed(rest + b"\n\n") if rest.strip() else b""
        return head + b"".join(json.dumps(o).encode() + b"\n" for o in self._finish())

    def fail(self, message: str) -> bytes:
        self.done = True
        return json.dumps(error_doc(message)).encode() + b"\n"


class EmbedShaper:
    """/api/embed (`embeddings`, a list) or the older /api/embeddings (`embedding`, one)."""

    media_type = "application/json"

    def __init__(self, name: str, legacy: bool, mono_ns: Callable[[], int]) -> None:
        self.name, self.legacy, self.mono_ns = name, legacy, mono_ns
        self.start_ns = mono_ns()

    def body(self, status: int, content_type: str, body: bytes) -> tuple[str, bytes]:
        if status >= 400:
            return "application/json", json.dumps(upstream_error(status, body)).encode()
        try:
            doc = json.loads(body)
            vectors = [d["embedding"] for d in doc["data"]]
        except (ValueError, KeyError, TypeError):
            return "application/json", json.dumps(
                error_doc("the host's answer holds no embeddings")).encode()
        if self.legacy:
            out: dict[str, Any] = {"embedding": vectors[0] if vectors else []}
        else:
            out = {"model": self.name, "embeddings": vectors,
                   "total_duration": self.mono_ns() - self.start_ns, "load_duration": 0,
                   "prompt_eval_count": int((doc.get("usage") or {}).get("prompt_tokens") or 0)}
        return "application/json", json.dumps(out).encode()

    def stream(self) -> OllamaStream:  # embeddings never stream; the protocol wants one
        raise NotImplementedError("embeddings do not stream")
