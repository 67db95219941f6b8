"""Bounds on what mDNS adverts (anyone on the LAN) can make a node hold or do. Pure.

An advert with the right mesh digest is only a hint (the digest is public), and each hint makes
gossip dial the advertised address for a push-pull. `DialGate` caps those dials: at most
`MAX_DIALS` hints are handed on per `DIAL_WINDOW_S`, the longest one push-pull can last, so no
more than `MAX_DIALS` mDNS-learned dials are ever in flight. Hints over the cap wait in a queue
(one entry per node id, the latest advert wins) of at most `MAX_DEFERRED`; beyond that they are
dropped. Every refusal is counted.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Literal

from mesh_node.discovery.core import MAX_PEERS, Peer

MAX_RESOLVING = 8  # mDNS resolves at once (each holds a worker thread for up to 3 s)
MAX_QUEUED = 256  # instances waiting for a resolve; more are dropped (mDNS re-announces)
MAX_DIALS = 8  # mDNS hints handed to gossip per window
DIAL_WINDOW_S = 5.0  # gossip's push-pull timeout (gossip/shell.py PUSH_PULL_TIMEOUT)
MAX_DEFERRED = MAX_PEERS


class DialGate:
    """Admits at most `max_dials` hints per `window` seconds; defers or drops the rest."""

    def __init__(self, max_dials: int = MAX_DIALS, window: float = DIAL_WINDOW_S,
                 max_deferred: int = MAX_DEFERRED) -> None:
        self._max, self._window, self._max_deferred = max_dials, window, max_deferred
        self._admitted: deque[float] = deque()
        self._deferred: OrderedDict[str, Peer] = OrderedDict()

    @property
    def deferred(self) -> int:
        return len(self._deferred)

    def offer(self, peer: Peer, now: float) -> Literal["dial", "deferred", "dropped"]:
        """"dial" it now; "deferred" until `due` hands it out; "dropped" (queue full)."""
        self._prune(now)
        if not self._deferred and len(self._admitted) < self._max:
            self._admitted.append(now)
            return "dial"
        if peer.node_id not in self._deferred and len(self._deferred) >= self._max_deferred:
            return "dropped"
        self._deferred[peer.node_id] = peer  # a known id keeps its place, newest advert
        return "deferred"

    def withdraw(self, node_id: str) -> None:
        """The peer said goodbye: do not dial it later."""
        self._deferred.pop(node_id, None)

    def due(self, now: float) -> list[Peer]:
        """Deferred hints that may be dialled now, oldest first."""
        self._prune(now)
        out = []
        while self._deferred and len(self._admitted) < self._max:
            out.append(self._deferred.popitem(last=False)[1])
            self._admitted.append(now)
        return out

    def next_due(self) -> float | None:
        """When the next deferred hint may go (None: nothing waits)."""
        if not self._deferred:
            return None
        if len(self._admitted) < self._max:
            return float("-inf")
        return self._admitted[0] + self._window

    def _prune(self, now: float) -> None:
        while self._admitted and self._admitted[0] + self._window <= now:
            self._admitted.popleft()
