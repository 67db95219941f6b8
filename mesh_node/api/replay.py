"""The forward replay cache: every accepted signature remembered until it can no longer be fresh.

Pure (no clock of its own: `now` is a parameter). Nonces are kept in one bucket per signed
second; a signature signed at `ts` is accepted only while `now - ts <= window`, so once the
clock passes `ts + window` the whole bucket can go. Memory is therefore bounded by the rate of
accepted forwards times the window (about 2 x window + 1 live buckets), never by a count that
forgets live entries. Above a hard cap the cache refuses new signatures (the caller answers
503 and counts it) rather than forget one that could still be replayed.

The horizon follows the highest `now` seen: if the wall clock steps back, signatures older
than that horizon stay refused as stale, since their buckets may already be gone.
"""

from __future__ import annotations

import heapq
from typing import Literal

Verdict = Literal["fresh", "replay", "stale", "full"]
# About 3,000 forwards/s sustained over a 30 s window (~80 bytes per entry, ~8 MB at the cap);
# a node on this project's 2-core machine forwards ~1,000/s at most (docs/benchmarks.md hop).
REPLAY_CACHE_MAX = 100_000


class ReplayCache:
    """Nonces of accepted signatures, by signed second, for `window` seconds past it."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._buckets: dict[int, set[bytes]] = {}
        self._order: list[int] = []  # heap of bucket seconds, oldest first
        self._size = 0
        self._high = float("-inf")  # highest `now` seen: the expiry horizon

    def __len__(self) -> int:
        return self._size

    @property
    def buckets(self) -> int:
        return len(self._buckets)

    def add(self, nonce: bytes, ts: int, now: float) -> Verdict:
        """Remember `nonce` signed at `ts`: "fresh" the first time, else why not."""
        self._high = max(self._high, now)
        self._expire()
        if ts < self._high - self._window or ts > now + self._window:
            return "stale"
        bucket = self._buckets.get(ts)
        if bucket is not None and nonce in bucket:
            return "replay"
        if self._size >= REPLAY_CACHE_MAX:
            return "full"
        if bucket is None:
            bucket = self._buckets[ts] = set()
            heapq.heappush(self._order, ts)
        bucket.add(nonce)
        self._size += 1
        return "fresh"

    def _expire(self) -> None:
        horizon = self._high - self._window
        while self._order and self._order[0] < horizon:
            self._size -= len(self._buckets.pop(heapq.heappop(self._order)))
