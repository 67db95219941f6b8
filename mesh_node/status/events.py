"""EventHub: membership, placement, serving and request events fanned out to SSE subscribers.

publish() never blocks: each subscriber has a bounded buffer, and a slow subscriber loses its
oldest events (and is told how many) rather than holding up the publisher.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trio

from mesh_node.timing import DEFAULT_TIMINGS

KEEPALIVE_S = DEFAULT_TIMINGS.sse_keepalive


@dataclass(eq=False)
class Subscriber:
    """One listener's bounded queue."""

    send: trio.MemorySendChannel[dict[str, Any]]
    receive: trio.MemoryReceiveChannel[dict[str, Any]]
    dropped: int = 0


class EventHub:
    """Fan-out of events to subscribers; `clock` is wall time, shown to humans, never compared."""

    def __init__(self, buffer: int = 256, clock: Callable[[], float] = time.time) -> None:
        self.buffer = buffer
        self.clock = clock
        self._subs: set[Subscriber] = set()
        self._seq = 0

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        """Queue an event for every subscriber; drop a subscriber's oldest when it is full."""
        self._seq += 1
        event = {"id": self._seq, "kind": kind, "ts": round(self.clock(), 3), "data": dict(data)}
        for sub in list(self._subs):
            try:
                sub.send.send_nowait(event)
            except trio.WouldBlock:
                sub.receive.receive_nowait()
                sub.dropped += 1
                sub.send.send_nowait(event)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @contextmanager
    def subscribe(self) -> Iterator[Subscriber]:
        """A Subscriber registered for the duration of the with-block."""
        send, receive = trio.open_memory_channel[dict[str, Any]](self.buffer)
        sub = Subscriber(send, receive)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            send.close()
            receive.close()

    async def sse(self, keepalive: float = KEEPALIVE_S) -> AsyncIterator[bytes]:
        """SSE frames for a new subscriber: a hello, then events, with keepalive comments."""
        with self.subscribe() as sub:
            yield sse_frame({"id": self._seq, "kind": "hello", "ts": round(self.clock(), 3),
                             "data": {}})
            while True:
                with trio.move_on_after(keepalive) as scope:
                    event = await sub.receive.receive()
                if scope.cancelled_caught:
                    yield b": keepalive\n\n"
                    continue
                if sub.dropped:
                    event = {**event, "dropped": sub.dropped}
                    sub.dropped = 0
                yield sse_frame(event)


def sse_frame(event: Mapping[str, Any]) -> bytes:
    """One SSE message: id + JSON data line."""
    return f"id: {event['id']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
