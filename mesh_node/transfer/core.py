"""The fetcher's pure core: which holder to ask next, where to resume, and progress.

No I/O, clock or randomness: `now` is a parameter. The trio shell (transfer/fetch.py) feeds
it what the network did and carries out what it says.

- `Assembly`: bytes of the file as they arrive, cut into chunks at the manifest's bounds.
  `offset` is the byte to ask for next: verified chunks plus the bytes of the current chunk
  received so far, so a fetch that loses its holder resumes from the byte it reached, from
  whichever holder answers next. A chunk that fails its hash is dropped whole (`reject`).
- `Holders`: the holders in the order given, each with a capped exponential backoff after a
  failure; a holder that served a corrupt chunk is asked only when no other one can be.
- `Progress`: bytes, rate (over a sliding window) and ETA, for status and the CLI.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from mesh_node.transfer.manifest import Manifest


class Assembly:
    """The file's bytes in order: complete chunks go out, the current one is held."""

    def __init__(self, manifest: Manifest, verified: int = 0) -> None:
        if verified % manifest.chunk_bytes and verified != manifest.size:
            raise ValueError("resume only from a chunk boundary")
        self.manifest = manifest
        self.verified = verified  # bytes of chunks whose hash matched (on disk)
        self.pending = 0  # bytes of complete chunks handed out, not verified yet
        self.buf = bytearray()  # the current chunk, received so far

    @property
    def offset(self) -> int:
        """The next byte to ask a holder for."""
        return self.verified + self.pending + len(self.buf)

    @property
    def done(self) -> bool:
        return self.verified == self.manifest.size

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytearray]]:
        """Take received bytes; the chunks they complete, as (index, bytes)."""
        out: list[tuple[int, bytearray]] = []
        view = memoryview(data)
        while len(view):
            start = self.verified + self.pending
            _, end = self.manifest.bounds(self.manifest.chunk_of(start))
            room = end - start - len(self.buf)
            if room <= 0:
                raise ValueError("bytes past the end of the file")
            self.buf += view[:room]
            view = view[room:]
            if len(self.buf) == end - start:
                out.append((self.manifest.chunk_of(start), self.buf))
                self.pending += len(self.buf)
                self.buf = bytearray()
        return out

    def accept(self, index: int) -> None:
        """Chunk `index` (the oldest pending one) matched its hash."""
        start, end = self.manifest.bounds(index)
        assert start == self.verified, "chunks are verified in order"
        self.verified = end
        self.pending -= end - start

    def reject(self, index: int) -> None:
        """Chunk `index` did not match: it and everything after it is fetched again."""
        start, _ = self.manifest.bounds(index)
        assert start == self.verified
        self.pending = 0
        self.buf = bytearray()


@dataclass
class _HolderState:
    failures: int = 0
    corrupt: int = 0
    until: float = 0.0  # not asked again before this (monotonic)


@dataclass
class Holders:
    """Backoff and preference among the holders of one file (ids; the order given is kept)."""

    retry_min: float
    retry_max: float
    state: dict[str, _HolderState] = field(default_factory=dict)

    def pick(self, holders: Sequence[str], now: float) -> str | None:
        """The holder to ask now: not backing off, fewest corrupt chunks, then given order."""
        ready = [h for h in holders if self.state.get(h, _HolderState()).until <= now]
        if not ready:
            return None
        return min(ready, key=lambda h: (self.state.get(h, _HolderState()).corrupt,
                                         holders.index(h)))

    def next_try(self, holders: Sequence[str], now: float) -> float:
        """Seconds until some holder may be asked again (0: one may be asked now)."""
        waits = [self.state.get(h, _HolderState()).until - now for h in holders]
        return max(0.0, min(waits, default=self.retry_min))

    def failed(self, holder: str, now: float, corrupt: bool = False) -> float:
        """Record a failure; the backoff (seconds) before this holder is asked again."""
        st = self.state.setdefault(holder, _HolderState())
        st.failures += 1
        st.corrupt += 1 if corrupt else 0
        delay: float = min(self.retry_max, self.retry_min * 2.0 ** (st.failures - 1))
        st.until = now + delay
        return delay

    def succeeded(self, holder: str) -> None:
        """Bytes arrived: the holder's failure count starts over (corrupt count stays)."""
        st = self.state.get(holder)
        if st is not None:
            st.failures = 0


@dataclass
class Progress:
    """Progress of one fetch, as status and events show it."""

    model: str
    digest: str
    total: int
    started: float
    done: int = 0
    source: str = ""
    # starting | fetching | waiting: reason | renamed | verified (in the catalog) | failed: ...
    state: str = "starting"
    resumed_from: int = 0
    refetched_chunks: int = 0
    window: float = 5.0  # seconds the rate is measured over (Timings.transfer_rate_window)
    _samples: deque[tuple[float, int]] = field(default_factory=deque)

    def update(self, done: int, now: float) -> None:
        self.done = done
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.popleft()

    def rate(self) -> float:
        """Bytes per second over the recent window (0 before two samples)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self) -> float | None:
        r = self.rate()
        return (self.total - self.done) / r if r > 0 else None

    def to_json(self, now: float) -> dict[str, object]:
        eta = self.eta()
        return {"model": self.model, "digest": self.digest, "state": self.state,
                "source": self.source, "bytes": self.done, "total": self.total,
                "rate_bps": round(self.rate()), "eta_s": round(eta, 1) if eta is not None
                else None, "elapsed_s": round(now - self.started, 2),
                "resumed_from": self.resumed_from, "refetched_chunks": self.refetched_chunks}
