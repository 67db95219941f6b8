"""Benchmark statistics: samples of requests and batches in, per-level averages out. Pure.

Definitions (the issue's, after mesh-llm's MLX benchmark):
- TTFT: request sent -> first content delta received.
- decode tok/s: (tokens - 1) / (total - TTFT): the tokens after the first over the time after it.
- overall tok/s: tokens / total time of the request.
- batch overall tok/s: all tokens of a batch / the batch's wall time (first send -> last done).
Averages are over successful requests (or batches); failed requests are counted, not averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any


@dataclass(frozen=True)
class RequestSample:
    total: float  # seconds, send -> end of stream
    ttft: float | None  # seconds, send -> first content delta; None when none came
    tokens: int  # completion tokens (server usage when sent, else content deltas)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.tokens > 0 and self.ttft is not None


@dataclass(frozen=True)
class BatchSample:
    concurrency: int
    wall: float  # seconds, first request sent -> last request finished
    requests: tuple[RequestSample, ...]


@dataclass(frozen=True)
class LevelStats:
    concurrency: int
    batches: int
    requests: int  # successful requests
    errors: int
    avg_ttft: float | None
    avg_total: float | None
    avg_batch_wall: float | None
    avg_decode_tps: float | None
    avg_overall_tps: float | None
    avg_batch_tps: float | None
    avg_tokens: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def decode_tps(r: RequestSample) -> float | None:
    """Tokens after the first over the time after the first; None when undefined."""
    if not r.ok or r.ttft is None or r.tokens < 2 or r.total <= r.ttft:
        return None
    return (r.tokens - 1) / (r.total - r.ttft)


def overall_tps(r: RequestSample) -> float | None:
    """Tokens over the request's total time; None for a failed or instant request."""
    if not r.ok or r.total <= 0:
        return None
    return r.tokens / r.total


def batch_tps(b: BatchSample) -> float | None:
    """All successful tokens of the batch over its wall time."""
    tokens = sum(r.tokens for r in b.requests if r.ok)
    if b.wall <= 0 or tokens == 0:
        return None
    return tokens / b.wall


def _avg(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def summarize(concurrency: int, batches: Sequence[BatchSample]) -> LevelStats:
    """Averages of one concurrency level over its measured batches."""
    reqs = [r for b in batches for r in b.requests]
    ok = [r for r in reqs if r.ok]
    return LevelStats(
        concurrency=concurrency, batches=len(batches), requests=len(ok),
        errors=len(reqs) - len(ok),
        avg_ttft=_avg([r.ttft for r in ok]),
        avg_total=_avg([r.total for r in ok]),
        avg_batch_wall=_avg([b.wall for b in batches]),
        avg_decode_tps=_avg([decode_tps(r) for r in ok]),
        avg_overall_tps=_avg([overall_tps(r) for r in ok]),
        avg_batch_tps=_avg([batch_tps(b) for b in batches]),
        avg_tokens=_avg([float(r.tokens) for r in ok]),
    )


@dataclass(frozen=True)
class TargetResult:
    name: str
    kind: str
    model: str
    startup_s: float | None  # local backends only
    levels: tuple[LevelStats, ...] = ()
    error: str | None = None  # the target could not be started or reached at all

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "model": self.model,
                "startup_s": self.startup_s, "error": self.error,
                "levels": [lv.to_json() for lv in self.levels]}
