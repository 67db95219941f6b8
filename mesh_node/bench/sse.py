"""Tally one OpenAI streaming response (SSE `data:` lines) into token counts and times. Pure.

Token count: the server's `usage.completion_tokens` when it sends one (we ask for it with
`stream_options.include_usage`; llama-server and mlx_lm.server both honour it), else the
number of content deltas, which is one per token for llama-server and mlx_lm.server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CONTENT_KEYS = ("content", "reasoning_content", "reasoning")  # thinking models stream these too


@dataclass
class StreamTally:
    first_token_at: float | None = None
    deltas: int = 0
    usage_tokens: int | None = None
    error: str | None = None
    done: bool = False  # `data: [DONE]` seen

    @property
    def tokens(self) -> int:
        """Completion tokens: usage when the server reported it, else content deltas."""
        return self.usage_tokens if self.usage_tokens is not None else self.deltas

    def feed(self, line: str, now: float) -> None:
        """Account for one line of the event stream received at monotonic time `now`."""
        if not line.startswith("data:"):
            return  # blank separators, comments, `event:` lines
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            self.error = f"bad JSON in stream: {data[:80]!r}"
            return
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            self.error = _error_text(chunk["error"])
            return
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.usage_tokens = usage["completion_tokens"]
        if _has_content(chunk):
            self.deltas += 1
            if self.first_token_at is None:
                self.first_token_at = now


def _has_content(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    delta = choices[0].get("delta")
    if isinstance(delta, dict):
        return any(isinstance(delta.get(k), str) and delta[k] != "" for k in CONTENT_KEYS)
    text = choices[0].get("text")  # /v1/completions chunks
    return isinstance(text, str) and text != ""


def _error_text(err: object) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)
