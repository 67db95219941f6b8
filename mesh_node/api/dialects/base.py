"""The seam between the forwarder and a dialect: shapers for whole bodies and for streams."""

from __future__ import annotations

from typing import Protocol


class StreamShaper(Protocol):
    """Turns the upstream's SSE bytes into the client's stream, chunk by chunk."""

    def feed(self, data: bytes) -> bytes:
        """Bytes to send for this upstream chunk (b"" while an event is still incomplete)."""
        ...

    def end(self) -> bytes:
        """Bytes to send once the upstream stream ended cleanly."""
        ...

    def fail(self, message: str) -> bytes:
        """Bytes that tell the client the upstream broke mid-stream."""
        ...


class Shaper(Protocol):
    """One request's answer shaping; `media_type` is that of its stream."""

    media_type: str

    def body(self, status: int, content_type: str, body: bytes) -> tuple[str, bytes]:
        """(content type, body) for a whole upstream answer of `status`."""
        ...

    def stream(self) -> StreamShaper:
        ...
