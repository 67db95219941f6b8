"""SWIM + Lifeguard membership as a pure state machine (rules of hashicorp/memberlist state.go).

The core never touches a socket, clock or global randomness: the shell passes `now`
(monotonic seconds) and an injected `random.Random`, and carries out the returned effects.
- Probe one member per probe interval (round-robin over a shuffled list); no ack within
  probe_timeout -> ping-req through indirect_checks peers, which nack if the target is silent;
  no ack by the end of the interval -> suspect. Interval and timeout scale with local health.
- A suspicion becomes dead after the Lifeguard timeout, which shrinks with independent
  confirmations. Only the node itself raises its incarnation, to refute a suspicion.
- Updates piggyback on every datagram and on gossip rounds, each retransmitted a bounded number
  of times; push-pull (TCP) exchanges whole tables on join and periodically, and fetches state
  records too big for a datagram. A push-pull "dead" is only believed as "suspect".
- Two live processes claiming one node id with different addresses: the first address stays,
  the other is counted and logged as `duplicate_node_id`.
- News that is not `alive` about a member this node does not know (never met, or reclaimed) is
  ignored, as memberlist does: a lagging suspicion must not bring a reclaimed member back.
  Tombstones (dead/left records) are kept for `dead_reclaim`, longer than two push-pull rounds.
- A state record announced by digest is fetched over TCP, and fetched again every
  `state_fetch_retry` until it arrives: a throttled or failed fetch is never lost.
- Counters (incarnation, version, load sequence) never pass the wire bound MAX_COUNTER.
- Local LAN evidence (probe.py: refused connects, ICMP port-unreachable) shortens a suspicion
  that a missed ack started; it never declares a death by itself. A suspicion whose fallback
  TCP probe failed too (or with evidence) is `backed` (MemberInfo.backed): a second transport
  failed, not only datagrams. Only the standby gate reads it; the timer does not.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from mesh_node.gossip.effects import (
    Addr,
    Effect,
    Log,
    MemberChanged,
    MemberInfo,
    Send,
    Sync,
    TcpProbe,
)
from mesh_node.gossip.members import LIVE, Update, load_key, merge, state_key
from mesh_node.gossip.probe import ProbeMixin
from mesh_node.gossip.suspicion import (
    Awareness,
    BroadcastQueue,
    Suspicion,
    expected_confirmations,
    retransmit_limit,
    suspicion_bounds,
)
from mesh_node.gossip.wire import MAX_COUNTER, Gossip, Message, PushPull, fit
from mesh_node.timing import DEFAULT_TIMINGS, Timings

_EVENTS = {"suspect": "member_suspected", "dead": "member_dead", "left": "member_left"}
MAX_MEMBERS = 4096  # far above a LAN; every per-member map of the core is bounded by it


def _live4(u: Update) -> tuple[int, str, str, int]:
    return (u.incarnation, u.status, u.address, u.port)


class Swim(ProbeMixin):
    """One node's membership view and failure detector."""

    def __init__(self, node_id: str, addr: Addr, rng: random.Random,
                 timings: Timings = DEFAULT_TIMINGS, now: float = 0.0) -> None:
        self.id = node_id
        self.addr = addr
        self.t = timings
        self.rng = rng
        self.inc = 0
        self.version = 0
        self.record: bytes | None = None
        self.load_seq = 0
        self.load = b""
        self.leaving = False
        self.counters: defaultdict[str, int] = defaultdict(int)
        self.table: dict[str, Update] = {}
        self._since: dict[str, float] = {}
        self._full: dict[str, bytes] = {}  # newest state bytes held (the table may be newer)
        self._rtt: dict[str, float] = {}
        self._susp: dict[str, Suspicion] = {}
        self._gone: set[str] = set()  # dead/left, reclaimed after dead_reclaim
        self._fetch_at: dict[str, float] = {}
        self._wanted: dict[str, float] = {}  # node -> when to fetch its announced record again
        self._seeds: list[Addr] = []
        self._bq = BroadcastQueue()
        self._aware = Awareness(timings.awareness_max)
        self._next_gossip = now
        self._next_pp = now + rng.uniform(0, timings.push_pull_interval)
        self._next_reclaim = now + 1.0
        self._init_probe(now)
        self.table[node_id] = self._self_record()

    # --- public surface ---------------------------------------------------------------
    def set_local_state(self, record: bytes) -> None:
        """Publish a new state record (bumps its version); gossiped at the next tick, not the
        next gossip round: a record changes rarely and it is news (a backend became ready, so a
        failover's waiting requests can go there: up to gossip_interval sooner)."""
        self.version = min(self.version + 1, MAX_COUNTER)
        self.record = record
        self._refresh_self()
        self._next_gossip = -math.inf

    def set_local_load(self, load: bytes) -> None:
        """Publish new volatile load (unversioned: it never triggers a state fetch)."""
        if load == self.load:
            return
        self.load_seq = min(self.load_seq + 1, MAX_COUNTER)
        self.load = load
        self._refresh_self()

    def join(self, seeds: Iterable[Addr]) -> list[Effect]:
        """Remember seeds (push-pull fallbacks) and push-pull with each now."""
        out: list[Effect] = []
        for a in seeds:
            if a != self.addr and a not in self._seeds:
                self._seeds.append(a)
            if a != self.addr:
                out.append(Sync(a, join=True))
        return out

    def leave(self, now: float) -> list[Effect]:
        """Announce a graceful leave; gossip keeps draining the queue, probes stop."""
        self.leaving = True
        self._probe = None
        self._refresh_self()
        return [Log("member_leaving", {"node": self.id, "incarnation": self.inc}),
                *self._gossip_round(now)]

    def adopt(self, updates: Iterable[Update], now: float) -> None:
        """Take a trusted snapshot silently: bootstraps a converged mesh for sims and benches."""
        for u in updates:
            self._apply(u, now)
        self._bq = BroadcastQueue()
        self._next_pp = now + self.rng.uniform(0, self._pp_interval())
        if self.record is not None:
            self._refresh_self()

    def full_state(self, join: bool = False) -> PushPull:
        """This node's whole table, for a push-pull exchange."""
        return PushPull(self.id, join, tuple(self.table.values()))

    def pending_broadcasts(self) -> int:
        return len(self._bq)

    def members(self) -> list[MemberInfo]:
        return [self._info(n) for n in sorted(self.table)]

    def on_message(self, src: Addr, msg: Message, now: float) -> list[Effect]:
        """Handle one authenticated message from `src`."""
        pp = isinstance(msg, PushPull)
        out: list[Effect] = []
        for u in msg.updates:
            out += self._apply(u, now, pp)
        if not pp and not isinstance(msg, Gossip):
            out += self._on_probe_message(src, msg, now)
        return out

    def on_tick(self, now: float) -> list[Effect]:
        """Run every timer that is due."""
        out = self._probe_tick(now)
        if now >= self._next_gossip:
            out += self._gossip_round(now)
        if now >= self._next_pp and not self.leaving:
            out += self._push_pull_round(now)
        for node, s in list(self._susp.items()):
            if now >= s.deadline():
                del self._susp[node]
                out += self._apply(replace(self.table[node], status="dead", origin=self.id), now)
        if now >= self._next_reclaim:
            self._next_reclaim = now + 1.0
            out += self._reclaim(now)
        out += self._refetch(now)
        return out

    def next_deadline(self) -> float:
        """When `on_tick` next has something to do."""
        ds = [self._probe_deadline()]
        if not self.leaving:  # a leaving node runs no push-pull: its deadline must not spin
            ds.append(self._next_pp)
        if len(self._bq):
            ds.append(self._next_gossip)
        if self._gone:
            ds.append(self._next_reclaim)
        ds += self._wanted.values()
        ds += [s.deadline() for s in self._susp.values()]
        return min(ds)

    # --- helpers used by the probe mixin ----------------------------------------------
    def n_estimate(self) -> int:
        return len(self._live) + 1

    def _send(self, addr: Addr, base: Message) -> Send:
        msg = fit(base, self._bq.candidates())
        if msg.updates:
            self._bq.mark_sent(msg.updates, retransmit_limit(self.t.retransmit_mult,
                                                             self.n_estimate()))
        return Send(addr, msg)

    def _info(self, node: str) -> MemberInfo:
        r = self.table[node]
        rtt = self._rtt.get(node)
        s = self._susp.get(node)
        return MemberInfo(node, r.status, r.incarnation, r.address, r.port, self._full.get(node),
                          r.state_version, None if rtt is None else rtt * 1000.0, r.load,
                          backed=s is not None and s.backed and r.status == "suspect")

    # --- merge policy -----------------------------------------------------------------
    def _self_record(self) -> Update:
        return Update(self.id, "left" if self.leaving else "alive", self.inc, self.addr[0],
                      self.addr[1], self.inc, self.version, self.record, "", self.load_seq,
                      self.load)

    def _refresh_self(self) -> None:
        rec = self._self_record()
        self.table[self.id] = rec
        if self.record is not None:
            self._full[self.id] = self.record
        self._bq.enqueue(rec)

    def _apply(self, u: Update, now: float, pushpull: bool = False) -> list[Effect]:
        if u.node == self.id:
            return self._about_self(u)
        if pushpull and u.status == "dead":
            u = replace(u, status="suspect")  # trust only our own probes for a death
        old = self.table.get(u.node)
        if old is None and u.status != "alive":
            self.counters["ignored_unknown"] += 1  # memberlist: no suspect/dead of strangers
            return []
        if old is None and len(self.table) >= MAX_MEMBERS:
            self.counters["table_full"] += 1  # bounded memory, whatever an insider sends
            return []
        if old is not None and old.status in LIVE and u.addr != old.addr:
            return self._conflict(old, u)
        new = u if old is None else merge(old, u)
        out: list[Effect] = []
        changed = old is None or _live4(new) != _live4(old)
        if changed:
            self.table[u.node] = new
            out += self._status_changed(old, new, now)
        elif u.status == "suspect" and new.status == "suspect" and u.incarnation == new.incarnation:
            s = self._susp.get(u.node)
            if s is not None and s.confirm(u.origin):
                self._bq.enqueue(replace(new, origin=u.origin))
        if old is None or state_key(new) != state_key(old):
            self.table[u.node] = new
            changed = True
            out += self._state_changed(new, now)
        if changed:
            self._bq.enqueue(new)
            out.append(MemberChanged(self._info(u.node)))
        elif old is not None and load_key(new) != load_key(old):
            self.table[u.node] = new
            self._bq.enqueue(new)
            out.append(MemberChanged(self._info(u.node), load_only=True))
        return out

    def _state_changed(self, new: Update, now: float) -> list[Effect]:
        if new.state is not None:
            self._full[new.node] = new.state
            self._wanted.pop(new.node, None)
            return []
        if new.state_version == 0:
            return []
        retry = self.t.state_fetch_retry
        if now - self._fetch_at.get(new.node, -1e9) < retry:
            # throttled, not dropped: fetched when the throttle ends (memberlist re-pulls too)
            self._wanted.setdefault(new.node, self._fetch_at[new.node] + retry)
            return []
        self._fetch_at[new.node] = now
        self._wanted[new.node] = now + retry  # again, if this one fails
        return [Sync(new.addr)]

    def _refetch(self, now: float) -> list[Effect]:
        """Fetch again each announced record that has not arrived by its retry time."""
        out: list[Effect] = []
        for node, due in list(self._wanted.items()):
            rec = self.table.get(node)
            if rec is None or rec.state is not None or rec.status not in LIVE:
                del self._wanted[node]
            elif now >= due:
                self._fetch_at[node] = now
                self._wanted[node] = now + self.t.state_fetch_retry
                self.counters["state_refetch"] += 1
                out.append(Sync(rec.addr))
        return out

    def _status_changed(self, old: Update | None, new: Update, now: float) -> list[Effect]:
        node = new.node
        check: list[Effect] = []
        self._since[node] = now
        self._susp.pop(node, None)
        if new.status in LIVE:
            self._gone.discard(node)
            self._live_add(node)
        else:
            self._gone.add(node)
            self._live_remove(node)
        if new.status == "suspect":
            n = self.n_estimate()
            lo, hi = suspicion_bounds(self.t.suspicion_mult, self.t.suspicion_max_mult, n,
                                      self.t.probe_interval)
            k = expected_confirmations(self.t.suspicion_mult, n)
            self._susp[node] = s = Suspicion(now, new.incarnation, k, lo, hi, {new.origin})
            if self._fresh(node, now):  # we saw that nothing listens there: believed now
                s.evidence(self.t.suspicion_evidence)
            s.backed = self._backing(node, now)
            if new.origin != self.id and not s.backed and not self.leaving:
                # heard from a peer: our own TCP connect backs it (or not) within 0.2 s
                check = [TcpProbe(new.addr, self.t.tcp_check_timeout)]
        fresh = old is None or old.status not in LIVE
        event = _EVENTS.get(new.status, "member_joined" if fresh else "member_alive")
        return [Log(event, {"node": self.id, "peer": node, "incarnation": new.incarnation}),
                *check]

    def _conflict(self, old: Update, u: Update) -> list[Effect]:
        self.counters["duplicate_node_id"] += 1
        return [Log("duplicate_node_id", {"node": self.id, "peer": u.node,
                                          "address": f"{old.address}:{old.port}",
                                          "claimed": f"{u.address}:{u.port}"})]

    def _about_self(self, u: Update) -> list[Effect]:
        if u.status in LIVE and u.addr != self.addr:
            self.counters["duplicate_node_id"] += 1
            return [Log("duplicate_node_id", {"node": self.id, "peer": u.node,
                                              "address": f"{self.addr[0]}:{self.addr[1]}",
                                              "claimed": f"{u.address}:{u.port}"})]
        if u.load_seq > self.load_seq:  # our load counter from an earlier life: jump past it
            self.load_seq = min(u.load_seq + 1, MAX_COUNTER)
            self._refresh_self()
        if self.leaving:
            return []
        if u.status in ("suspect", "dead") and u.incarnation < self.inc:
            # a doubt about an earlier life: our refutation never reached the sender (lost
            # under loss). Announce the current incarnation again (no new one): with gossip to
            # the recently dead, a false death is undone in seconds, not at a push-pull.
            self._refresh_self()
            self.counters["reannounced"] += 1
            return []
        if not self._threat(u):
            return []
        if self.inc >= MAX_COUNTER:  # only a forger reaches the bound: refuse to wrap
            self.counters["incarnation_exhausted"] += 1
            return []
        self.inc = min(max(u.incarnation, u.state_inc, self.inc) + 1, MAX_COUNTER)
        self._aware.apply(1)  # being suspected hints that we are the slow one
        self._refresh_self()
        self.counters["refuted"] += 1
        return [Log("member_refuted", {"node": self.id, "incarnation": self.inc,
                                       "claimed": u.status})]

    def _threat(self, u: Update) -> bool:
        """Does `u` (about us) need a refutation: a doubt, or a record of an earlier life?"""
        if u.status != "alive" and u.incarnation >= self.inc:
            return True
        if u.incarnation > self.inc:
            return True
        theirs, mine = (u.state_inc, u.state_version), (self.inc, self.version)
        return theirs > mine or (theirs == mine and u.state is not None
                                 and u.state != self.record)

    # --- rounds -----------------------------------------------------------------------
    def _gossip_round(self, now: float) -> list[Effect]:
        self._next_gossip = now + self.t.gossip_interval
        if not len(self._bq):
            return []
        out: list[Effect] = []
        for node in self._gossip_targets(now):
            s = self._send(self.table[node].addr, Gossip(self.id))
            if s.msg.updates:
                out.append(s)
        return out

    def _gossip_targets(self, now: float) -> list[str]:
        """memberlist's gossip(): k random members, the recently dead among them
        (GossipToTheDeadTime), so a node wrongly declared dead under loss hears it and refutes
        within seconds instead of at its next push-pull. Members that left are not told."""
        dead = sorted(x for x in self._gone if self.table[x].status == "dead"
                      and now - self._since[x] < self.t.gossip_to_the_dead)
        if not dead:
            return self._sample(self.t.gossip_nodes)
        pool = [*self._live, *dead]
        return self.rng.sample(pool, min(self.t.gossip_nodes, len(pool)))

    def _push_pull_round(self, now: float) -> list[Effect]:
        self._next_pp = now + self._pp_interval()
        # dead members and seeds too: that is how a healed partition finds the other side
        pool = [self.table[x].addr for x in self._live]
        pool += [self.table[x].addr for x in sorted(self._gone) if self.table[x].status == "dead"]
        pool += self._seeds
        return [Sync(self.rng.choice(pool))] if pool else []

    def _pp_interval(self) -> float:
        n = self.n_estimate()
        # memberlist pushPullScale: slower beyond 32 nodes so TCP load stays flat
        scale = 1 if n <= 32 else math.ceil(math.log2(n) - math.log2(32)) + 1
        return self.t.push_pull_interval * scale

    def _reclaim(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for node in [x for x in self._gone if now - self._since[x] >= self.t.dead_reclaim]:
            info = self._info(node)
            for d in (self.table, self._since, self._full, self._rtt, self._fetch_at,
                      self._wanted, self._evidence, self._tcp_failed):
                d.pop(node, None)
            self._gone.discard(node)
            out += [MemberChanged(info, removed=True),
                    Log("member_reclaimed", {"node": self.id, "peer": node})]
        return out
