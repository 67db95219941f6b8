"""The probe half of the SWIM core: direct pings, ping-req relays, nacks, local health.

memberlist state.go probeNode / handleIndirectPing: a relay nacks the requester when the target
stays silent, so a requester that hears neither ack nor nack learns that its own links (not the
target) may be failing, and raises its local health score (Lifeguard).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mesh_node.gossip.effects import Addr, Effect, Log, MemberChanged, MemberInfo, Send, TcpProbe
from mesh_node.gossip.members import LIVE, Update
from mesh_node.gossip.suspicion import Awareness, Suspicion
from mesh_node.gossip.wire import MAX_COUNTER, Ack, Message, Nack, Ping, PingReq
from mesh_node.timing import Timings

# The relay nacks at 80% of probe_timeout so the nack lands before the requester's probe
# interval ends (ping-req goes out at probe_timeout, the interval ends at 2x probe_timeout).
NACK_FRACTION = 0.8
RTT_SMOOTHING = 0.3  # EWMA weight of a new sample


@dataclass
class _Probe:
    target: str
    addr: Addr
    seq: int
    sent: float
    ack_by: float
    end: float
    indirect: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    relays: frozenset[str] = frozenset()  # ids asked to ping-req; only they may ack for target


@dataclass(frozen=True)
class _Relay:
    requester: Addr
    seq: int
    nack_at: float


class ProbeMixin:
    """Probe scheduling and the live-member index; mixed into `Swim`."""

    id: str
    t: Timings
    rng: random.Random
    leaving: bool
    table: dict[str, Update]
    _aware: Awareness
    _rtt: dict[str, float]
    _susp: dict[str, Suspicion]
    counters: defaultdict[str, int]

    if TYPE_CHECKING:
        def _send(self, addr: Addr, base: Message) -> Send: ...
        def _info(self, node: str) -> MemberInfo: ...
        def _apply(self, u: Update, now: float, pushpull: bool = False) -> list[Effect]: ...

    def counters_bump(self, name: str) -> None:
        self.counters[name] += 1

    def _init_probe(self, now: float) -> None:
        self._live: list[str] = []
        self._live_idx: dict[str, int] = {}
        self._order: list[str] = []
        self._order_i = 0
        self._probe: _Probe | None = None
        self._next_probe = now
        self._relays: dict[int, _Relay] = {}
        # a random start: a restarted node's sequence numbers do not repeat its last life's, so
        # an ack captured then cannot answer a probe now (acks are also tied to the target)
        self._seq = self.rng.randrange(1, 1 << 31)
        self._evidence: dict[str, float] = {}  # node -> when local evidence last came
        self._tcp_failed: dict[str, float] = {}  # node -> when our TCP probe of it last failed
        self._urgent: str | None = None  # probed next, out of turn (evidence about it came)

    # --- live index: O(1) add/remove, O(k) sampling -------------------------------------
    def _live_add(self, node: str) -> None:
        if node not in self._live_idx:
            self._live_idx[node] = len(self._live)
            self._live.append(node)

    def _live_remove(self, node: str) -> None:
        i = self._live_idx.pop(node, None)
        if i is None:
            return
        last = self._live.pop()
        if last != node:
            self._live[i] = last
            self._live_idx[last] = i

    def _sample(self, k: int, exclude: str = "") -> list[str]:
        pool = min(k + 1, len(self._live))
        return [x for x in self.rng.sample(self._live, pool) if x != exclude][:k]

    def _next_seq(self) -> int:
        self._seq = self._seq % MAX_COUNTER + 1  # wraps inside the wire bound
        return self._seq

    # --- timers -------------------------------------------------------------------------
    def _probe_deadline(self) -> float:
        ds = [r.nack_at for r in self._relays.values()]
        p = self._probe
        if p is not None:
            ds.append(p.end if p.indirect else p.ack_by)
        elif not self.leaving:
            ds.append(self._next_probe)
        return min(ds) if ds else float("inf")

    def _probe_tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for seq, r in list(self._relays.items()):
            if now >= r.nack_at:
                del self._relays[seq]
                out.append(self._send(r.requester, Nack(r.seq, self.id)))
        p = self._probe
        if p is not None and not p.indirect and now >= p.ack_by and self._fresh(p.target, now):
            return out + self._probe_failed(p, now)  # no ack and nothing listens: no relays
        if p is not None and not p.indirect and now >= p.ack_by:
            p.indirect = True
            out.append(TcpProbe(p.addr))  # memberlist's fallback TCP ping
            peers = self._sample(self.t.indirect_checks, exclude=p.target)
            p.expected_nacks = len(peers)
            p.relays = frozenset(peers)
            for x in peers:
                req = PingReq(p.seq, self.id, p.target, p.addr[0], p.addr[1])
                out.append(self._send(self.table[x].addr, req))
        if p is not None and now >= p.end:
            out += self._probe_failed(p, now)
        if self._probe is None and now >= self._next_probe and not self.leaving:
            out += self._start_probe(now)
        return out

    def _start_probe(self, now: float) -> list[Effect]:
        target = self._next_target()
        if target is None:
            self._next_probe = now + self.t.probe_interval
            return []
        addr = self.table[target].addr
        p = _Probe(target, addr, self._next_seq(), now,
                   now + self._aware.scale(self.t.probe_timeout),
                   now + self._aware.scale(self.t.probe_interval))
        self._probe = p
        self._next_probe = p.end
        return [self._send(addr, Ping(p.seq, self.id, target))]

    def _next_target(self) -> str | None:
        urgent, self._urgent = self._urgent, None
        if urgent is not None and urgent in self._live_idx:
            return urgent
        for _ in range(2):  # finish this round, else reshuffle once
            while self._order_i < len(self._order):
                node = self._order[self._order_i]
                self._order_i += 1
                if node in self._live_idx:
                    return node
            self._order = list(self._live)
            self.rng.shuffle(self._order)
            self._order_i = 0
        return None

    def _probe_failed(self, p: _Probe, now: float) -> list[Effect]:
        self._probe = None
        if not self._fresh(p.target, now):
            # Lifeguard: missing nacks mean our own network may be the problem (not when the
            # target's host said that nothing listens: that answer came through our network)
            missed = p.expected_nacks - p.nacks if p.expected_nacks else 1
            self._aware.apply(max(missed, 0))
        rec = self.table.get(p.target)
        if rec is None or rec.status not in ("alive", "suspect") or rec.addr != p.addr:
            return []
        out: list[Effect] = [Log("probe_failed", {"node": self.id, "peer": p.target,
                                                  "nacks": p.nacks})]
        return out + self._apply(replace(rec, status="suspect", origin=self.id), now)

    # --- evidence -----------------------------------------------------------------------
    def _fresh(self, node: str, now: float) -> bool:
        at = self._evidence.get(node)
        return at is not None and now - at <= self.t.evidence_window

    def evidence_at(self, addr: Addr, now: float, strong: bool = True) -> list[Effect]:
        """Local evidence about whoever is a live member at `addr` (the gossip port)."""
        node = next((n for n, r in self.table.items() if r.addr == addr and n != self.id
                     and r.status in LIVE), None)
        return [] if node is None else self.evidence_of(node, now, strong)

    def evidence_of(self, node: str, now: float, strong: bool = True) -> list[Effect]:
        """Local evidence that `node` may be gone. Strong (nothing listens: a refused connect,
        ICMP port-unreachable) counts with a missed ack; weak (a broken stream) only makes
        the node the next one probed."""
        rec = self.table.get(node)
        if rec is None or node == self.id or rec.status not in LIVE or self.leaving:
            return []
        out: list[Effect] = []
        if strong:
            self.counters_bump("evidence")
            self._evidence[node] = now
            s = self._susp.get(node)
            if s is not None and s.evidence(self.t.suspicion_evidence):
                out.append(Log("suspicion_evidence", {"node": self.id, "peer": node}))
            out += self._back(node)
        p = self._probe
        if p is not None and p.target == node:
            if strong and now >= p.ack_by:
                out += self._probe_failed(p, now)
        elif rec.status == "alive":
            self._urgent = node
            if p is None:
                self._next_probe = min(self._next_probe, now)
        return out

    def _backing(self, node: str, now: float) -> bool:
        """Has a second transport failed too: nothing listens (evidence), or our own TCP probe
        of `node` failed within the evidence window?"""
        at = self._tcp_failed.get(node)
        return self._fresh(node, now) or (at is not None and now - at <= self.t.evidence_window)

    def _back(self, node: str) -> list[Effect]:
        """Mark a running suspicion of `node` backed; the change is news for the election."""
        s = self._susp.get(node)
        if s is None or s.backed:
            return []
        s.backed = True
        return [Log("suspicion_backed", {"node": self.id, "peer": node}),
                MemberChanged(self._info(node))]

    def tcp_probe_failed(self, addr: Addr, now: float) -> list[Effect]:
        """Our fallback TCP probe of the live member at `addr` timed out or failed (not
        refused: that is `evidence_at`). Never a suspicion by itself: it only backs one that
        a missed ack starts, so a standby may start without waiting (election/standby.py)."""
        node = next((n for n, r in self.table.items() if r.addr == addr and n != self.id
                     and r.status in LIVE), None)
        if node is None or self.leaving:
            return []
        self.counters_bump("tcp_probe_failed")
        self._tcp_failed[node] = now
        return self._back(node)

    # --- messages -----------------------------------------------------------------------
    def _on_probe_message(self, src: Addr, msg: Message, now: float) -> list[Effect]:
        if isinstance(msg, Ping):
            if msg.target != self.id:  # a restarted node on a reused address must not ack
                return [Log("ping_misdirected", {"node": self.id, "peer": msg.target})]
            return [self._send(src, Ack(msg.seq, self.id))]
        if isinstance(msg, PingReq):
            seq = self._next_seq()
            self._relays[seq] = _Relay(src, msg.seq, now + NACK_FRACTION * self.t.probe_timeout)
            return [self._send((msg.address, msg.port), Ping(seq, self.id, msg.target))]
        if isinstance(msg, Ack):
            return self._on_ack(src, msg, now)
        if isinstance(msg, Nack) and self._probe is not None and msg.seq == self._probe.seq:
            self._probe.nacks += 1
        return []

    def _on_ack(self, src: Addr, msg: Ack, now: float) -> list[Effect]:
        relay = self._relays.pop(msg.seq, None)
        if relay is not None:
            return [self._send(relay.requester, Ack(relay.seq, self.id))]
        p = self._probe
        if p is None or msg.seq != p.seq:
            return []
        if msg.sender != p.target and msg.sender not in p.relays:
            self.counters_bump("ack_misattributed")  # an ack must come from whom we asked
            return []
        self._probe = None
        self._aware.apply(-1)
        if src == p.addr:  # direct ack: a true round trip (the election skips far workers)
            old = self._rtt.get(p.target)
            rtt = now - p.sent
            self._rtt[p.target] = rtt if old is None else old + RTT_SMOOTHING * (rtt - old)
        return []
