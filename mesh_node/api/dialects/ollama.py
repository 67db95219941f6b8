"""The Ollama API (https://github.com/ollama/ollama/blob/main/docs/api.md): requests to
chat completions, model names, and the model listings (/api/tags, /api/ps, /api/show).

Ollama names resolve like OpenAI ones, after its own habits: `name:latest` is `name`, and
`name:tag` is also tried as `name-tag` (so `gemma-3-270m:q4_k_m` finds `gemma-3-270m-q4_k_m`).
`keep_alive` is honoured (`keep_alive_seconds`): a request's keep-alive replaces the model's
idle window in the mesh's demand (0: unload once answered; negative: keep loaded), and /api/ps
shows when each loaded model idles out.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

from mesh_node.api import errors
from mesh_node.records import KEEP_FOREVER

VERSION = "0.12.0"  # the Ollama API version whose shapes these follow
EPOCH = "1970-01-01T00:00:00Z"  # modification times are not gossiped
NEVER = "2318-01-01T00:00:00Z"  # /api/ps expires_at of a model placed until the mesh changes
# Ollama options that chat completions (llama-server, mlx_lm.server) take under another name
_OPTIONS = {"num_predict": "max_tokens", "temperature": "temperature", "top_p": "top_p",
            "top_k": "top_k", "min_p": "min_p", "seed": "seed", "stop": "stop",
            "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
            "frequency_penalty": "frequency_penalty", "typical_p": "typical_p"}
# Verbs that manage models on one Ollama server; the mesh's models come from each node's
# catalog ([[models]], model_dirs), never from a registry.
UNSUPPORTED = ("pull", "push", "create", "copy", "delete")


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(doc: object) -> int | None:
    """A request's `keep_alive` in whole seconds (Ollama: a number of seconds or a Go duration
    such as "5m" or "1h30m"; negative keeps the model loaded: KEEP_FOREVER); None when absent.
    ApiError 400 when it is neither."""
    if not isinstance(doc, dict) or doc.get("keep_alive") is None:
        return None
    v = doc["keep_alive"]
    seconds: float | None = None
    if isinstance(v, int | float) and not isinstance(v, bool):
        seconds = float(v)
    elif isinstance(v, str) and v.strip():
        text = v.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = sign * float(body)
        except ValueError:
            parts = _GO_DURATION.findall(body)
            if parts and "".join(n + u for n, u in parts) == body:
                seconds = sign * sum(float(n) * _UNIT_S[u] for n, u in parts)
    if seconds is None or not math.isfinite(seconds):
        raise _bad(f"keep_alive: expected a number of seconds or a duration like \"5m\", "
                   f"got {json.dumps(v)}")
    if seconds < 0:
        return KEEP_FOREVER
    return min(int(math.ceil(seconds)), 1 << 40)


def name_candidates(name: str) -> list[str]:
    """Names to try, in order, for an Ollama model name."""
    out = [name]
    base, sep, tag = name.rpartition(":")
    if sep and base:
        out.append(base if tag == "latest" else f"{base}-{tag}")
    return out


def listed_name(model_id: str) -> str:
    return f"{model_id}:latest"


def _bad(message: str) -> errors.ApiError:
    return errors.ApiError(400, message)


def check_model(doc: object) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise _bad("the body must be a JSON object")
    if not isinstance(doc.get("model"), str) or not doc["model"]:
        raise _bad("model is required")
    if "stream" in doc and not isinstance(doc["stream"], bool):
        raise _bad("stream must be a boolean")
    return doc


def _common(doc: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    opts = doc.get("options") or {}
    if not isinstance(opts, dict):
        raise _bad("options must be an object")
    for key, name in _OPTIONS.items():
        if key in opts and not (key == "num_predict" and isinstance(opts[key], int)
                                and opts[key] < 0):  # -1/-2: no limit
            chat[name] = opts[key]
    fmt = doc.get("format")
    if fmt == "json":
        chat["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        chat["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "format", "schema": fmt}}
    chat["stream"] = bool(doc.get("stream", True))  # Ollama streams unless told not to
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    return chat


def _images(content: str, images: object) -> str | list[dict[str, Any]]:
    if not isinstance(images, list) or not images:
        return content
    return [{"type": "text", "text": content}] + [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{img}"}}
        for img in images]


def _message(m: dict[str, Any], i: int, call_ids: dict[str, str]) -> dict[str, Any]:
    role, content = m.get("role"), m.get("content", "")
    if role not in ("system", "user", "assistant", "tool") or not isinstance(content, str):
        raise _bad(f"messages[{i}]: a role (system, user, assistant or tool) and a string "
                   "content are required")
    out: dict[str, Any] = {"role": role, "content": _images(content, m.get("images"))}
    calls = m.get("tool_calls")
    if role == "assistant" and isinstance(calls, list) and calls:
        out["tool_calls"] = []
        for k, call in enumerate(calls):
            fn = (call or {}).get("function") or {}
            call_id = f"call_{i}_{k}"
            call_ids[str(fn.get("name", ""))] = call_id
            out["tool_calls"].append({"id": call_id, "type": "function", "function": {
                "name": fn.get("name", ""), "arguments": json.dumps(fn.get("arguments") or {})}})
    if role == "tool":
        name = str(m.get("tool_name") or m.get("name") or "")
        out["tool_call_id"] = call_ids.get(name) or next(reversed(call_ids.values()), "call_0")
    return out


def chat_request(doc: object) -> dict[str, Any]:
    """/api/chat -> chat completions; ApiError 400 when malformed."""
    d = check_model(doc)
    msgs = d.get("messages", [])
    if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
        raise _bad("messages must be a list of message objects")
    ids: dict[str, str] = {}
    chat = {"model": d["model"], "messages": [_message(m, i, ids) for i, m in enumerate(msgs)]}
    if isinstance(d.get("tools"), list) and d["tools"]:
        chat["tools"] = d["tools"]  # Ollama's tools are OpenAI's function tools already
    return _common(d, chat)


def generate_request(doc: object) -> tuple[str, dict[str, Any]]:
    """/api/generate -> (upstream path, body): chat completions, or completions when raw."""
    d = check_model(doc)
    prompt = d.get("prompt", "")
    if not isinstance(prompt, str):
        raise _bad("prompt must be a string")
    if d.get("raw"):
        return "/v1/completions", _common(d, {"model": d["model"], "prompt": prompt})
    msgs: list[dict[str, Any]] = []
    if isinstance(d.get("system"), str) and d["system"]:
        msgs.append({"role": "system", "content": d["system"]})
    msgs.append({"role": "user", "content": _images(prompt, d.get("images"))})
    return "/v1/chat/completions", _common(d, {"model": d["model"], "messages": msgs})


def embed_request(doc: object, legacy: bool) -> dict[str, Any]:
    """/api/embed ({input}) or the older /api/embeddings ({prompt}) -> embeddings."""
    d = check_model(doc)
    field = "prompt" if legacy else "input"
    value = d.get(field)
    if not (isinstance(value, str) or (isinstance(value, list)
                                      and all(isinstance(x, str) for x in value))):
        raise _bad(f"{field} must be a string" + ("" if legacy else " or a list of strings"))
    return {"model": d["model"], "input": value}


def _details(e: dict[str, Any]) -> dict[str, Any]:
    mid, key = str(e["id"]), str(e.get("key") or e["id"])
    quant = mid.removeprefix(key + "-").upper() if mid.startswith(key + "-") else ""
    return {"parent_model": "", "format": e.get("format") or e.get("backend", ""),
            "family": key, "families": [key], "parameter_size": "",
            "quantization_level": quant}


def _model(e: dict[str, Any]) -> dict[str, Any]:
    name = listed_name(str(e["id"]))
    return {"name": name, "model": name, "modified_at": EPOCH,
            "size": int(e.get("size_bytes") or 0),
            "digest": hashlib.sha256(str(e["id"]).encode()).hexdigest(),
            "details": _details(e)}


def tags(models: list[dict[str, Any]]) -> dict[str, Any]:
    """/api/tags: every model the mesh knows, with its `status` (loaded, loading, available,
    unservable: an addition of ours; Ollama's clients ignore unknown keys)."""
    return {"models": [_model(e) | {"status": e.get("status", "")} for e in models]}


def ps(models: list[dict[str, Any]], rfc3339: Callable[[float], str] | None = None,
       now: float = 0.0) -> dict[str, Any]:
    """/api/ps: models with a ready host, and where (`hosts`, an addition of ours); each
    expires when its idle window (or keep-alive) runs out after the last request (`NEVER` for
    pinned, preloaded or kept-forever models). `rfc3339` formats a wall-clock second."""
    def expires(e: dict[str, Any]) -> str:
        left = e.get("expires_in")
        return NEVER if left is None or rfc3339 is None else rfc3339(now + float(left))

    return {"models": [_model(e) | {"expires_at": expires(e), "size_vram": 0,
                                    "hosts": list(e.get("hosts") or [])}
                       for e in models if e.get("ready")]}


def show(e: dict[str, Any]) -> dict[str, Any]:
    """/api/show for one model."""
    caps = ["completion"] + (["tools"] if e.get("backend") == "llama" else [])
    return {"modelfile": f"# served by mesh-node\nFROM {e['id']}\n", "parameters": "",
            "template": "", "details": _details(e), "capabilities": caps,
            "model_info": {"general.architecture": _details(e)["family"],
                           "mesh.backend": e.get("backend"), "mesh.mode": e.get("mode"),
                           "mesh.hosts": list(e.get("hosts") or [])},
            "modified_at": EPOCH}
