"""Anthropic Messages (`POST /v1/messages`) to and from OpenAI chat completions.

Every backend gets the translated request, llama-server included (it also speaks Messages
natively): one path through the mesh (routing, retries, failover, node-to-node auth are the
chat-completions ones), the same answer whichever host a failover lands on, and the entry node
alone knows the dialect. Shapes: https://docs.anthropic.com/en/api/messages.

Known gap: chat completions do not say whether a stop sequence or the end of turn stopped
the text, so `stop_reason` is "end_turn" and `stop_sequence` null in both cases.
"""

from __future__ import annotations

import json
from typing import Any

from mesh_node.api import errors

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}
# Anthropic's error types by status (docs: "HTTP errors")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error",
               529: "overloaded_error"}
_PASSED = ("temperature", "top_p", "top_k")


def error_doc(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error body for `status`."""
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _bad(message: str, param: str | None = None) -> errors.ApiError:
    return errors.ApiError(400, message, param=param)


def _text_of(content: object, where: str) -> str:
    """A string, or the text of a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    raise _bad(f"{where}: expected a string or a list of content blocks", where)


def _image_part(block: dict[str, Any]) -> dict[str, Any]:
    src = block.get("source") or {}
    if src.get("type") == "url":
        url = str(src.get("url", ""))
    else:
        url = f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
    return {"type": "image_url", "image_url": {"url": url}}


def _user(content: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """A user turn: its tool results first (as OpenAI tool messages), then its text/images."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "tool_result":
            out.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")),
                        "content": _text_of(block.get("content", ""), where)})
        elif kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image_part(block))
    if parts and all(p["type"] == "text" for p in parts):
        out.append({"role": "user", "content": "\n".join(p["text"] for p in parts)})
    elif parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(content: list[dict[str, Any]]) -> dict[str, Any]:
    text = "".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    calls = [{"id": str(b.get("id", "")), "type": "function",
              "function": {"name": str(b.get("name", "")),
                           "arguments": json.dumps(b.get("input") or {})}}
             for b in content if b.get("type") == "tool_use"]
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    return msg | {"tool_calls": calls} if calls else msg


def _messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "system" in doc:
        out.append({"role": "system", "content": _text_of(doc["system"], "system")})
    for i, m in enumerate(doc["messages"]):
        where = f"messages.{i}.content"
        role, content = m.get("role"), m.get("content")
        if role not in ("user", "assistant"):
            raise _bad(f"messages.{i}.role: expected 'user' or 'assistant'", f"messages.{i}.role")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif isinstance(content, list) and all(isinstance(b, dict) for b in content):
            out += _user(content, where) if role == "user" else [_assistant(content)]
        else:
            raise _bad(f"{where}: expected a string or a list of content blocks", where)
    return out


def _tools(doc: dict[str, Any], chat: dict[str, Any]) -> None:
    tools = doc.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("name")
                                              for t in tools):
        raise _bad("tools: expected a list of tools, each with a name", "tools")
    chat["tools"] = [{"type": "function", "function": {
        "name": t["name"], "description": t.get("description", ""),
        "parameters": t.get("input_schema") or {"type": "object", "properties": {}}}}
        for t in tools]
    choice = doc.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in ("auto", "any", "none"):
            chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
        if choice.get("disable_parallel_tool_use"):
            chat["parallel_tool_calls"] = False


def to_chat(doc: object) -> dict[str, Any]:
    """The chat-completions request for a Messages request; ApiError 400 when malformed."""
    if not isinstance(doc, dict):
        raise errors.invalid_json("the body must be a JSON object")
    if not isinstance(doc.get("model"), str) or not doc["model"]:
        raise _bad("model: field required (a non-empty string)", "model")
    tokens = doc.get("max_tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise _bad("max_tokens: field required (an integer >= 1)", "max_tokens")
    if not isinstance(doc.get("messages"), list) or not all(
            isinstance(m, dict) for m in doc["messages"]):
        raise _bad("messages: field required (a list of message objects)", "messages")
    if "stream" in doc and not isinstance(doc["stream"], bool):
        raise _bad("stream: expected a boolean", "stream")
    chat: dict[str, Any] = {"model": doc["model"], "messages": _messages(doc),
                            "max_tokens": tokens, "stream": bool(doc.get("stream"))}
    chat |= {k: doc[k] for k in _PASSED if k in doc}
    stops = doc.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(x, str) for x in stops):
            raise _bad("stop_sequences: expected a list of strings", "stop_sequences")
        chat["stop"] = stops
    _tools(doc, chat)
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    return chat


def message_id(chat_id: object, fallback: str) -> str:
    base = str(chat_id) if chat_id else fallback
    return "msg_" + base.removeprefix("chatcmpl-")


def tool_input(arguments: object) -> dict[str, Any]:
    """A tool call's arguments (JSON text) as the object Anthropic's `input` is."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(str(arguments or "{}"))
    except ValueError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def usage_of(chat_usage: object) -> dict[str, int]:
    u = chat_usage if isinstance(chat_usage, dict) else {}
    return {"input_tokens": int(u.get("prompt_tokens") or 0),
            "output_tokens": int(u.get("completion_tokens") or 0)}


def message(chat: dict[str, Any], model: str, fallback_id: str) -> dict[str, Any]:
    """A Messages answer for a chat completion."""
    choice = (chat.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if msg.get("content") or not msg.get("tool_calls"):
        content.append({"type": "text", "text": msg.get("content") or ""})
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": "toolu_" + str(call.get("id", "")),
                        "name": fn.get("name", ""), "input": tool_input(fn.get("arguments"))})
    return {"id": message_id(chat.get("id"), fallback_id), "type": "message",
            "role": "assistant", "model": model, "content": content,
            "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None, "usage": usage_of(chat.get("usage"))}


def upstream_error(status: int, body: bytes) -> dict[str, Any]:
    """An upstream error answer (OpenAI-shaped or not) in Anthropic's shape."""
    message = body.decode("utf-8", "replace").strip() or f"upstream status {status}"
    try:
        doc = json.loads(body)
    except ValueError:
        return error_doc(status, message)
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and err.get("message"):
        message = str(err["message"])
    elif isinstance(err, str):
        message = err
    return error_doc(status, message)
