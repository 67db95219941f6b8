"""Lifeguard arithmetic: suspicion timeouts, local health, retransmit limits, broadcast queue.

Rules follow hashicorp/memberlist (suspicion.go, awareness.go, util.go, queue.go):
- min suspicion timeout = suspicion_mult * max(1, log10(max(1, N))) * probe_interval;
  max = suspicion_max_mult * min; k = suspicion_mult - 2 expected confirmations (0 when
  fewer than k + 2 nodes could confirm);
- with n independent confirmations the timeout is
  max(min, max - (max - min) * log(n + 1) / log(k + 1)), so it shrinks from max to min;
- local evidence that nothing listens at the suspect's port (mesh-node, issue 16) counts as one
  more confirmation and caps the timeout at `suspicion_evidence`;
- local health score in [0, awareness_max - 1] multiplies probe interval and timeout by score+1;
- an update is retransmitted retransmit_mult * ceil(log10(N + 1)) times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mesh_node.gossip.members import Update


def suspicion_bounds(mult: int, max_mult: int, n: int, probe_interval: float) -> tuple[float, float]:
    """(min, max) suspicion timeout for a mesh of about n nodes."""
    scale = max(1.0, math.log10(max(1, n)))
    lo = mult * scale * probe_interval
    return lo, max_mult * lo


def expected_confirmations(mult: int, n: int) -> int:
    """k: how many independent suspicions shrink the timeout all the way to min."""
    k = mult - 2
    return 0 if n - 2 < k else k


def suspicion_timeout(confirmations: int, k: int, lo: float, hi: float) -> float:
    """Total timeout after `confirmations` independent confirmations (monotonic, in [lo, hi])."""
    if k < 1:
        return lo
    frac = math.log(min(confirmations, k) + 1) / math.log(k + 1)
    return max(lo, hi - (hi - lo) * frac)


def retransmit_limit(mult: int, n: int) -> int:
    """How many times one update is piggybacked or gossiped."""
    return mult * math.ceil(math.log10(n + 1))


@dataclass
class Suspicion:
    """A running suspicion of one node at one incarnation."""

    start: float
    incarnation: int
    k: int
    lo: float
    hi: float
    confirmers: set[str] = field(default_factory=set)  # the first suspecter is not counted
    n: int = 0
    cap: float | None = None  # set by local evidence: the timeout is at most this
    # our own TCP probe of the suspect failed too (refused or timed out): a second transport,
    # so not just lost datagrams. Read by the standby gate (election/standby.py), never by
    # the timer: SWIM still declares the death.
    backed: bool = False

    def evidence(self, cap: float) -> bool:
        """Local evidence that the suspect is gone: a confirmation, and the timeout capped.
        True when it is new."""
        if self.cap is not None:
            return False
        self.cap = cap
        if self.n < self.k:
            self.n += 1
        return True

    def confirm(self, origin: str) -> bool:
        """Count an independent confirmation; True when it is new (then rebroadcast it)."""
        if self.n >= self.k or origin in self.confirmers:
            return False
        self.confirmers.add(origin)
        self.n += 1
        return True

    def deadline(self) -> float:
        timeout = suspicion_timeout(self.n, self.k, self.lo, self.hi)
        return self.start + (timeout if self.cap is None else min(timeout, self.cap))


@dataclass
class Awareness:
    """Lifeguard local health: failed probes without nacks mean we may be the slow one."""

    max_score: int
    score: int = 0

    def apply(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self.max_score - 1)

    def scale(self, t: float) -> float:
        return t * (self.score + 1)


@dataclass
class _Entry:
    update: Update
    sent: int = 0


class BroadcastQueue:
    """Updates waiting to be piggybacked, least-transmitted first; one entry per node."""

    def __init__(self) -> None:
        self._items: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._items)

    def enqueue(self, u: Update) -> None:
        """Queue `u`, replacing (invalidating) any older update about the same node."""
        self._items[u.node] = _Entry(u)

    def candidates(self) -> list[Update]:
        return [e.update for e in sorted(self._items.values(), key=lambda e: e.sent)]

    def mark_sent(self, sent: tuple[Update, ...], limit: int) -> None:
        """Count one transmission of each sent update; drop those that reached `limit`."""
        for u in sent:
            e = self._items.get(u.node)
            if e is None:
                continue
            e.sent += 1
            if e.sent >= limit:
                del self._items[u.node]
