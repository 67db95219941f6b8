"""Server-sent events, cut at event boundaries without waiting for more than one event."""

from __future__ import annotations

import json
from typing import Any

_ENDS = (b"\n\n", b"\r\n\r\n")


class EventSplitter:
    """Feeds bytes in, gets whole events out (each with its blank-line terminator)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        events: list[bytes] = []
        start = 0
        while True:
            cut = [(i, len(e)) for e in _ENDS if (i := buf.find(e, start)) >= 0]
            if not cut:
                break
            i, n = min(cut)
            events.append(buf[start:i + n])
            start = i + n
        self._buf = buf[start:]
        return events

    def rest(self) -> bytes:
        """What is left after the stream ended (an unterminated last event, if any)."""
        rest, self._buf = self._buf, b""
        return rest


def data_of(event: bytes) -> bytes | None:
    """The event's data (data lines joined by newlines); None for a comment-only event."""
    lines = [line[5:].removeprefix(b" ") for line in event.splitlines()
             if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def json_data(event: bytes) -> dict[str, Any] | None:
    """The event's data as a JSON object; None for comments, [DONE] and anything else."""
    data = data_of(event)
    if not data or data == b"[DONE]":
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def is_done(event: bytes) -> bool:
    return data_of(event) == b"[DONE]"


def event(name: str | None, doc: object) -> bytes:
    """One SSE event of JSON `doc`, with an `event:` line when `name` is given."""
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(doc, separators=(',', ':'))}\n\n".encode()
