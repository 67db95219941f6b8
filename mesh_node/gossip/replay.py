"""Anti-replay for sealed gossip, as IPsec (RFC 4303 §3.4.3) and DTLS (RFC 6347 §4.1.2.6) do it.

Each datagram and push-pull frame carries, inside the seal, the sender's boot epoch, a counter
and the wall second it was sent (wire.Envelope). A receiver keeps per (channel, sender) the newest
epoch and a 64-message sliding window above the highest counter seen, and drops:
- anything sent more than FRESH_S ago (or that far ahead: clock skew on a LAN is seconds), so a
  capture is worthless after FRESH_S, even to a receiver that restarted and forgot its windows;
- anything from an older epoch than one already seen (a sender's earlier life);
- a counter seen before, or older than the window.
What a captured message can still do: be replayed once to a receiver that restarted within
FRESH_S of the capture and has not yet heard from the sender's current epoch; it then carries
news at most FRESH_S old, which the merge rules (incarnations, versions) already order.
Pure: `now` is the caller's wall clock; memory is bounded by MAX_SENDERS (least recently seen
forgotten first; a forgotten sender is still bounded by FRESH_S).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from mesh_node.gossip.wire import Envelope
from mesh_node.timing import DEFAULT_TIMINGS

FRESH_S = DEFAULT_TIMINGS.gossip_freshness
WINDOW = 64  # RFC 4303's minimum window
MAX_SENDERS = 4096


@dataclass
class _Window:
    epoch: int
    top: int = 0
    bits: int = 0  # bit i set: counter top - i seen


class ReplayGuard:
    """Per (channel, sender) replay windows; `check` returns None or the drop reason."""

    def __init__(self, fresh_s: float = FRESH_S, max_senders: int = MAX_SENDERS) -> None:
        self._fresh = fresh_s
        self._max = max_senders
        self._w: OrderedDict[tuple[str, str], _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._w)

    def check(self, channel: str, sender: str, env: Envelope, now: float) -> str | None:
        if abs(now - env.sent_at) > self._fresh:
            return "stale"
        key = (channel, sender)
        w = self._w.get(key)
        if w is None or env.epoch > w.epoch:
            w = _Window(env.epoch)
        elif env.epoch < w.epoch:
            return "old epoch"
        if env.counter > w.top:
            shift = env.counter - w.top
            w.bits = ((w.bits << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            w.top = env.counter
        else:
            back = w.top - env.counter
            if back >= WINDOW:
                return "behind window"
            if w.bits >> back & 1:
                return "replay"
            w.bits |= 1 << back
        self._w[key] = w
        self._w.move_to_end(key)
        while len(self._w) > self._max:
            self._w.popitem(last=False)
        return None
