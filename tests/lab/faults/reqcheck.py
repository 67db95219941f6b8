"""Client-request figures of a fault history (pure): throughput, latency percentiles, errors,
and the longest service gap after a fault. Split from checker.py to keep modules small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .checker import Check, Record, of_kind


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def request_figures(hist: Sequence[Record]) -> dict[str, float]:
    """Count, errors, throughput and latency percentiles (ms) of the client requests."""
    reqs = of_kind(hist, "request")
    ok = [r for r in reqs if r["status"] == 200 and not r.get("error")]
    lat = [1000.0 * (r["end"] - r["start"]) for r in ok]
    ttft = [1000.0 * r["ttft"] for r in ok if r.get("ttft") is not None]
    span = (max(r["end"] for r in reqs) - min(r["start"] for r in reqs)) if reqs else 0.0
    return {"requests": len(reqs), "errors": len(reqs) - len(ok),
            "req_per_s": round(len(ok) / span, 3) if span > 0 else 0.0,
            "tok_per_s": round(sum(r.get("tokens", 0) for r in ok) / span, 2) if span > 0 else 0.0,
            "p50_ms": round(percentile(lat, 50), 1), "p95_ms": round(percentile(lat, 95), 1),
            "p99_ms": round(percentile(lat, 99), 1), "max_ms": round(max(lat, default=math.nan), 1),
            "ttft_p50_ms": round(percentile(ttft, 50), 1),
            "ttft_p95_ms": round(percentile(ttft, 95), 1)}


def check_requests(hist: Sequence[Record], max_errors: int = 0, min_ok: int = 1,
                   name: str = "requests") -> Check:
    """At least `min_ok` requests succeeded and at most `max_errors` failed."""
    figs = request_figures(hist)
    ok_n = figs["requests"] - figs["errors"]
    errors = [f"{r['status']} {r.get('error', '')[:60]}" for r in of_kind(hist, "request")
              if r["status"] != 200 or r.get("error")]
    ok = ok_n >= min_ok and figs["errors"] <= max_errors
    return Check(name, ok, "; ".join(sorted(set(errors))[:4]), figs)


def service_gap(hist: Sequence[Record], after: float) -> float:
    """Longest time after `after` between the ends of two successful requests (s)."""
    ends = sorted(float(r["end"]) for r in of_kind(hist, "request")
                  if r["status"] == 200 and not r.get("error") and r["end"] >= after)
    points = [after, *ends]
    return max((b - a for a, b in zip(points, points[1:], strict=False)), default=math.nan)
