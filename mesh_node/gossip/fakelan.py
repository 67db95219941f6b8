"""A discrete-event fake LAN that drives many pure `Swim` cores without trio or sockets.

One heap of timed events (ticks, datagram deliveries, push-pull exchanges) on a simulated
clock, so 1,000 nodes run minutes of protocol in seconds. Hooks: per-packet drop, delay and
jitter, duplicate, reorder (an extra delay on some packets), partitions and crashes.
Push-pull behaves like TCP: no loss, but blocked by partitions and crashed peers.
A crash is silent (a machine that vanished) unless `refuses`: a process that died on a live
machine, whose kernel refuses TCP connects and answers datagrams with ICMP port-unreachable.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mesh_node.gossip.effects import Addr, Effect, Log, Send, Sync, TcpProbe
from mesh_node.gossip.members import Update
from mesh_node.gossip.swim import Swim
from mesh_node.gossip.wire import MAX_DATAGRAM, OVERHEAD, Message, encode
from mesh_node.timing import DEFAULT_TIMINGS, Timings


@dataclass
class LinkModel:
    """Per-packet behaviour of the fake network."""

    drop: float = 0.0
    delay: float = 0.0005  # one-way LAN latency
    jitter: float = 0.0  # uniform extra delay in [0, jitter]
    duplicate: float = 0.0
    reorder: float = 0.0  # probability that a packet takes reorder_delay longer
    reorder_delay: float = 0.05


@dataclass
class LanStats:
    packets: int = 0
    bytes: int = 0  # sealed datagram bytes (only counted when measure_bytes)
    pushpull_bytes: int = 0
    dropped: int = 0
    syncs: int = 0


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    kind: str = field(compare=False)
    dst: Addr = field(compare=False)
    src: Addr = field(compare=False, default=("", 0))
    msg: Message | None = field(compare=False, default=None)
    join: bool = field(compare=False, default=False)


def sim_addr(i: int) -> Addr:
    return (f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 7946)


class FakeLan:
    """The simulated network and clock; nodes are pure cores addressed by (host, port)."""

    def __init__(self, seed: int = 0, timings: Timings = DEFAULT_TIMINGS,
                 link: LinkModel | None = None, measure_bytes: bool = False) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self.t = timings
        self.link = link or LinkModel()
        self.measure_bytes = measure_bytes
        self.nodes: dict[Addr, Swim] = {}
        self.crashed: set[Addr] = set()
        self.refusing: set[Addr] = set()  # crashed processes on live machines
        self.blocked: Callable[[Addr, Addr], bool] = lambda a, b: False
        self.stats = LanStats()
        self.logs: list[tuple[float, str, Log]] = []  # (time, node id, event)
        self._heap: list[_Event] = []
        self._tick_at: dict[Addr, float] = {}
        self._seq = 0

    # --- building -----------------------------------------------------------------------
    def add_node(self, i: int, seeds: Iterable[Addr] = (), state: bytes | None = None) -> Swim:
        """Start node `i` (id f"n{i}") now; it push-pulls with `seeds`."""
        addr = sim_addr(i)
        core = Swim(f"n{i}", addr, random.Random(self.rng.random()), self.t, self.now)
        if state is not None:
            core.set_local_state(state)
        self.nodes[addr] = core
        self._handle(addr, core.join(list(seeds)))
        self._reschedule(addr)
        return core

    def bootstrap(self, n: int, state_size: int = 200) -> list[Swim]:
        """n nodes that already know each other as alive (a converged mesh)."""
        cores = [self.add_node(i, state=bytes([i % 256]) * state_size) for i in range(n)]
        snapshot = [c.table[c.id] for c in cores]
        for c in cores:
            c.adopt(snapshot, self.now)
            self._reschedule(c.addr)
        return cores

    def crash(self, addr: Addr, refuses: bool = False) -> None:
        """Stop the node; `refuses`: its host still answers (kill -9, not power loss)."""
        self.crashed.add(addr)
        if refuses:
            self.refusing.add(addr)

    def alive_cores(self) -> list[Swim]:
        return [c for a, c in self.nodes.items() if a not in self.crashed]

    # --- running ------------------------------------------------------------------------
    def run_until(self, t_end: float, until: Callable[[], bool] | None = None,
                  check_every: float = 0.1) -> bool:
        """Process events up to `t_end`; stop early (True) once `until()` holds."""
        next_check = self.now
        while self._heap and self._heap[0].at <= t_end:
            ev = heapq.heappop(self._heap)
            self.now = ev.at
            self._process(ev)
            if until is not None and self.now >= next_check:
                next_check = self.now + check_every
                if until():
                    return True
        self.now = max(self.now, t_end)
        return until() if until is not None else False

    def _process(self, ev: _Event) -> None:
        if ev.dst in self.crashed or ev.dst not in self.nodes:
            return
        core = self.nodes[ev.dst]
        if ev.kind == "tick":
            if self._tick_at.get(ev.dst) != ev.at:
                return  # superseded by an earlier reschedule
            self._tick_at[ev.dst] = float("inf")
            self._handle(ev.dst, core.on_tick(self.now))
        elif ev.kind == "msg" and ev.msg is not None:
            self._handle(ev.dst, core.on_message(ev.src, ev.msg, self.now))
        elif ev.kind == "sync":
            self._sync(ev.src, ev.dst, ev.join)
        elif ev.kind == "refused":  # the kernel's answer for a port nobody listens on
            self._handle(ev.dst, core.evidence_at(ev.src, self.now))
        elif ev.kind == "tcp_failed":
            self._handle(ev.dst, core.tcp_probe_failed(ev.src, self.now))
        self._reschedule(ev.dst)

    def _sync(self, initiator: Addr, target: Addr, join: bool) -> None:
        """The TCP exchange, run at the initiator's end: both sides merge the other's table.
        A crashed or unknown end refuses the connection, whichever end it is."""
        ends = (initiator, target)
        if any(a not in self.nodes or a in self.crashed for a in ends) or \
                self.blocked(initiator, target):
            return
        self.stats.syncs += 1
        req = self.nodes[initiator].full_state(join)
        rep = self.nodes[target].full_state()
        if self.measure_bytes:
            self.stats.pushpull_bytes += len(encode(req)) + len(encode(rep)) + 2 * OVERHEAD
        rtt = 4 * self.link.delay  # connect + exchange
        self._push(_Event(self.now + rtt / 2, 0, "msg", target, initiator, req))
        self._push(_Event(self.now + rtt, 0, "msg", initiator, target, rep))

    def _handle(self, src: Addr, effects: list[Effect]) -> None:
        core = self.nodes[src]
        for e in effects:
            if isinstance(e, Send):
                self._send(src, e)
            elif isinstance(e, Sync):  # processed at the initiator: dst=src, src=the target
                self._push(_Event(self.now, 0, "sync", src, e.addr, join=e.join))
            elif isinstance(e, TcpProbe):
                self._tcp_probe(src, e.addr, e.timeout or core.t.tcp_probe_timeout)
            elif isinstance(e, Log):
                self.logs.append((self.now, core.id, e))

    def _tcp_probe(self, src: Addr, dst: Addr, timeout: float) -> None:
        """The fallback TCP connect: refused by a refusing crashed host one round trip later;
        timed out (tcp_probe_timeout) at a silent crashed or partitioned one; TCP is lossless
        here, so a live reachable member always accepts."""
        if dst in self.refusing and not self.blocked(src, dst):
            self._refuse(src, dst)
        elif dst in self.crashed or self.blocked(src, dst):
            self._push(_Event(self.now + timeout, 0, "tcp_failed", src, dst))

    def _refuse(self, src: Addr, dst: Addr) -> None:
        """A refusal (RST or ICMP) from a refusing crashed host, one round trip later."""
        if dst in self.refusing and not self.blocked(src, dst):
            self._push(_Event(self.now + 2 * self.link.delay, 0, "refused", src, dst))

    def _send(self, src: Addr, e: Send) -> None:
        self.stats.packets += 1
        if self.measure_bytes:
            size = len(encode(e.msg)) + OVERHEAD
            assert size <= MAX_DATAGRAM, size
            self.stats.bytes += size
        link = self.link
        copies = 2 if self.rng.random() < link.duplicate else 1
        for _ in range(copies):
            if self.rng.random() < link.drop or self.blocked(src, e.addr):
                self.stats.dropped += 1
                continue
            if e.addr in self.refusing:  # ICMP port-unreachable comes back (it may be lost too)
                if self.rng.random() >= link.drop:
                    self._refuse(src, e.addr)
                continue
            d = link.delay + self.rng.uniform(0, link.jitter)
            if self.rng.random() < link.reorder:
                d += link.reorder_delay
            self._push(_Event(self.now + d, 0, "msg", e.addr, src, e.msg))

    def _push(self, ev: _Event) -> None:
        self._seq += 1
        ev.seq = self._seq
        heapq.heappush(self._heap, ev)

    def _reschedule(self, addr: Addr) -> None:
        if addr in self.crashed:
            return
        at = max(self.nodes[addr].next_deadline(), self.now + 1e-6)  # always make progress
        if at < self._tick_at.get(addr, float("inf")) and at != float("inf"):
            self._tick_at[addr] = at
            self._push(_Event(at, 0, "tick", addr))


def views_agree(cores: Iterable[Swim], node: str, status: str) -> bool:
    """Does every core see `node` with `status` (a reclaimed dead node counts as dead)?"""
    for c in cores:
        rec: Update | None = c.table.get(node)
        if rec is None:
            if status not in ("dead", "left"):
                return False
        elif rec.status != status:
            return False
    return True
