"""Which dialect a request speaks, and an ApiError in that dialect's error shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from mesh_node.api.dialects import anthropic, ollama_stream
from mesh_node.api.errors import ApiError

Dialect = Literal["openai", "anthropic", "ollama"]
ANTHROPIC_PREFIX = "/v1/messages"
OLLAMA_PATHS = frozenset({"/api/version", "/api/tags", "/api/ps", "/api/show", "/api/chat",
                          "/api/generate", "/api/embed", "/api/embeddings", "/api/pull",
                          "/api/push", "/api/create", "/api/copy", "/api/delete"})


def dialect_of(path: str, headers: Mapping[str, str], default: Dialect = "openai") -> Dialect:
    """Anthropic for /v1/messages* or any request of the Anthropic SDK (it sends
    `anthropic-version`, e.g. on /v1/models); Ollama for its paths; else `default`."""
    if path.startswith(ANTHROPIC_PREFIX) or "anthropic-version" in headers:
        return "anthropic"
    if path in OLLAMA_PATHS:
        return "ollama"
    return default


def error_body(dialect: Dialect, err: ApiError) -> dict[str, Any]:
    if dialect == "anthropic":
        return anthropic.error_doc(err.status, err.message)
    if dialect == "ollama":
        return ollama_stream.error_doc(err.message)
    return err.body()
