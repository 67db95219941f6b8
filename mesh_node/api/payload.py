"""Read and check request bodies: size limit while reading, JSON shape per endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from mesh_node.api import errors

Kind = Literal["chat", "completions", "embeddings", "count_tokens"]

# The field each endpoint requires besides "model", and the JSON types it may take.
_REQUIRED: dict[Kind, tuple[str, tuple[type, ...], str]] = {
    "chat": ("messages", (list,), "array"),
    "completions": ("prompt", (str, list), "string or array"),
    "embeddings": ("input", (str, list), "string or array"),
    "count_tokens": ("messages", (list,), "array"),  # Anthropic's, passed through
}


async def read_limited(chunks: AsyncIterator[bytes], limit: int,
                       declared: int | None = None) -> bytes:
    """Collect the body, raising 413 as soon as it passes `limit` (never reads the rest)."""
    if declared is not None and declared > limit:
        raise errors.body_too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise errors.body_too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def parse(raw: bytes, kind: Kind) -> dict[str, Any]:
    """Parse and check the body of an OpenAI request of `kind`; raises ApiError (400)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.invalid_json(str(exc)) from None
    except RecursionError:  # "[[[[..." nested deeper than the interpreter's stack
        raise errors.invalid_json("nested too deeply") from None
    if not isinstance(doc, dict):
        raise errors.invalid_json("the body must be a JSON object")
    if "model" not in doc:
        raise errors.missing_field("model")
    if not isinstance(doc["model"], str) or not doc["model"]:
        raise errors.wrong_type("model", "non-empty string")
    field, types, label = _REQUIRED[kind]
    if field not in doc:
        raise errors.missing_field(field)
    if not isinstance(doc[field], types):
        raise errors.wrong_type(field, label)
    if kind in ("chat", "count_tokens") and not all(isinstance(m, dict) for m in doc["messages"]):
        raise errors.wrong_type("messages", "array of message objects")
    if "stream" in doc and not isinstance(doc["stream"], bool):
        raise errors.wrong_type("stream", "boolean")
    return doc
