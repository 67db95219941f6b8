"""The trio shell of gossip: UDP datagrams and TCP push-pull around the pure `Swim` core.

It sleeps until the core's next deadline or a datagram, calls the core, and carries out the
effects. Bad datagrams are counted and dropped, never raised; so are replays (gossip/replay.py
reads the envelope sealed in every datagram and frame). Push-pull frames are a 4-byte big-endian
length then a sealed message; every TCP exchange runs under a timeout, the length prefix under a
short one, and one source address holds at most one inbound exchange, so a stranger's idle
connections cannot take the slots a joining node needs.

LAN evidence (issue 16): on Linux the UDP socket sets IP_RECVERR, so an ICMP port-unreachable
for one of our datagrams names the member it was sent to; the fallback TCP probe reports a
refused connect (one that times out backs a suspicion: gossip/probe.py `tcp_probe_failed`); the
router reports what it saw (`report_unreachable`). The core believes any of these only together
with a missed ack (gossip/probe.py).
"""

from __future__ import annotations

import errno
import os
import random
import socket
import struct
import sys
import time
from collections import Counter

import structlog
import trio

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
from mesh_node.gossip.replay import ReplayGuard
from mesh_node.gossip.swim import Swim
from mesh_node.gossip.wire import (
    MAX_DATAGRAM,
    MAX_FRAME,
    NONCE_LEN,
    Envelope,
    Message,
    PushPull,
    WireError,
    open_env,
    seal,
)
from mesh_node.security import MeshKeys
from mesh_node.timing import DEFAULT_TIMINGS, Timings

log = structlog.get_logger("mesh_node.gossip")
INBOUND_SYNC_MAX = 8  # push-pulls served at once: memory stays under 8 x MAX_FRAME (x2 copy)
INBOUND_PER_ADDR = 1  # one exchange per source address at a time (memberlist serves one too)
SUBSCRIBER_BUFFER = 256
# linux/errqueue.h: struct sock_extended_err, then the offender's sockaddr_in
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_BIND_ATTEMPTS = 16  # port 0: UDP ports the kernel picks until one is free on TCP too
_EE = struct.Struct("=IBBBBII")
_EE_ORIGIN_ICMP, _ICMP_UNREACH, _ICMP_PORT_UNREACH = 2, 3, 3
_STATS = ("sent_bytes", "sent_packets", "recv_bytes", "recv_packets", "dropped_auth",
          "dropped_malformed", "dropped_version", "dropped_oversize", "dropped_replay",
          "send_errors", "pushpull_ok", "pushpull_failed", "pushpull_refused",
          "subscriber_overflow", "icmp_unreachable", "tcp_probe_refused")


class GossipService:
    """One node's gossip endpoint: membership, state records, RTTs."""

    def __init__(self, node_id: str, bind_host: str, port: int, advertise: tuple[str, int],
                 keys: MeshKeys, timings: Timings = DEFAULT_TIMINGS,
                 rng: random.Random | None = None) -> None:
        self.node_id = node_id
        self.keys = keys
        self.stats: dict[str, int] = dict.fromkeys(_STATS, 0)
        self._bind = (bind_host, port)
        self._timings = timings
        self.joined = trio.Event()  # set by the first completed push-pull with any peer
        self._core = Swim(node_id, advertise, rng or random.Random(), timings, 0.0)
        self._pending: list[Effect] = []
        self._poke = trio.Event()
        self._inbound_syncs = 0
        self._subs: list[trio.MemorySendChannel[MemberChanged]] = []
        self._guard = ReplayGuard()
        self._epoch = time.time_ns() // 1_000_000  # this boot, in wall ms: orders our lives
        self._counter = 0
        self._inbound_by_addr: Counter[str] = Counter()
        self._syncing: set[Addr] = set()
        self._tcp_probing: set[Addr] = set()
        self._raw_udp: socket.socket | None = None
        self._udp: trio.socket.SocketType | None = None
        self._nursery: trio.Nursery | None = None

    async def _bind_both(self) -> tuple[trio.socket.SocketType, list[trio.SocketListener]]:
        """UDP and TCP on one port. Port 0: the kernel's UDP port may be taken on TCP (by any
        outgoing connection's ephemeral port), so try a few ports before giving up."""
        for attempt in range(_BIND_ATTEMPTS):
            raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            if sys.platform == "linux":  # ICMP errors of an unconnected socket, with their address
                raw.setsockopt(socket.SOL_IP, _IP_RECVERR, 1)
            udp = trio.socket.from_stdlib_socket(raw)
            try:
                await udp.bind(self._bind)
                listeners = await trio.open_tcp_listeners(udp.getsockname()[1],
                                                          host=self._bind[0])
            except OSError as exc:
                udp.close()
                if self._bind[1] != 0 or exc.errno != errno.EADDRINUSE \
                        or attempt == _BIND_ATTEMPTS - 1:
                    raise
                continue
            self._raw_udp = raw
            return udp, listeners
        raise AssertionError("unreachable")

    # --- public surface ---------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[Addr] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind UDP and TCP (push-pull) on one port, then gossip until cancelled."""
        udp, listeners = await self._bind_both()
        port = udp.getsockname()[1]
        self._udp = udp
        with udp:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(trio.serve_listeners, self._serve_tcp, listeners)
                nursery.start_soon(self._recv_loop, udp)
                nursery.start_soon(self._timer_loop)
                task_status.started((self._bind[0], port))

    def set_local_state(self, record: bytes) -> None:
        """Publish this node's state record (records_wire.encode_state)."""
        self._core.set_local_state(record)
        self._poke.set()

    def set_local_load(self, load: bytes) -> None:
        """Publish this node's volatile load (records_wire.encode_load); unversioned."""
        self._core.set_local_load(load)
        self._poke.set()

    def add_seed(self, host: str, port: int) -> None:
        """A discovery hint: push-pull with it (it becomes a member only if it authenticates)."""
        self._pending += self._core.join([(host, port)])
        self._poke.set()

    def members(self) -> list[MemberInfo]:
        """Every member, self included, with its raw state bytes (the same bytes object until
        the record changes, so the mesh view decodes each version once)."""
        return self._core.members()

    def subscribe(self) -> trio.MemoryReceiveChannel[MemberChanged]:
        """Member change notifications; a slow reader loses events, never blocks gossip."""
        send, recv = trio.open_memory_channel[MemberChanged](SUBSCRIBER_BUFFER)
        self._subs.append(send)
        return recv

    # the interface takes a timeout: shutdown hands each room a slice of its deadline
    async def leave(self, timeout: float) -> None:  # noqa: ASYNC109
        """Broadcast a graceful leave and wait (at most `timeout`) for it to go out."""
        self._pending += self._core.leave(trio.current_time())
        self._poke.set()
        for _ in range(max(1, int(timeout / 0.05))):  # poll: the queue drains in the core
            if not self._core.pending_broadcasts():
                break
            await trio.sleep(0.05)

    def report_unreachable(self, node_id: str, refused: bool) -> None:
        """Local evidence from this node's own connection to a member (the router's): refused
        (nothing listens at its API port) or a stream that broke (weaker: probe it now)."""
        self._pending += self._core.evidence_of(node_id, trio.current_time(), strong=refused)
        self._poke.set()

    @property
    def counters(self) -> dict[str, int]:
        """Protocol counters of the core (duplicate_node_id, refuted)."""
        return dict(self._core.counters)

    # --- loops --------------------------------------------------------------------------
    async def _timer_loop(self) -> None:
        while True:
            with trio.move_on_at(self._core.next_deadline()):
                await self._poke.wait()
            self._poke = trio.Event()
            effects, self._pending = self._pending, []
            await self._carry(effects + self._core.on_tick(trio.current_time()))

    async def _recv_loop(self, udp: trio.socket.SocketType) -> None:
        while True:
            try:
                data, src = await udp.recvfrom(65536)
            except OSError:
                await self._drain_icmp()  # ICMP errors surface here (IP_RECVERR on Linux)
                continue
            self.stats["recv_packets"] += 1
            self.stats["recv_bytes"] += len(data)
            try:
                env, msg = open_env(self.keys, data)
            except WireError as e:
                self.stats[f"dropped_{e.reason}"] += 1
                continue
            if isinstance(msg, PushPull):
                self.stats["dropped_malformed"] += 1
                continue
            if self._guard.check("udp", msg.sender, env, time.time()) is not None:
                self.stats["dropped_replay"] += 1
                continue
            await self._carry(self._core.on_message((src[0], src[1]), msg, trio.current_time()))
            self._poke.set()  # the deadline may have moved

    async def _drain_icmp(self) -> None:
        """Each queued port-unreachable from the host we sent to is evidence about it."""
        raw = self._raw_udp
        if raw is None or sys.platform != "linux":
            return
        for _ in range(64):  # bounded: the queue is drained again on the next error
            try:
                _, anc, _, dst = raw.recvmsg(1, 256, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except OSError:
                return
            for level, kind, data in anc:
                if level != socket.SOL_IP or kind != _IP_RECVERR or len(data) < _EE.size + 8:
                    continue
                _, origin, icmp_type, code, _, _, _ = _EE.unpack_from(data)
                offender = socket.inet_ntoa(data[_EE.size + 4:_EE.size + 8])
                # only the host itself saying its port is closed (not a router, not a relay)
                if (origin, icmp_type, code) == (_EE_ORIGIN_ICMP, _ICMP_UNREACH,
                                                 _ICMP_PORT_UNREACH) and offender == dst[0]:
                    self.stats["icmp_unreachable"] += 1
                    await self._carry(self._core.evidence_at((dst[0], dst[1]),
                                                             trio.current_time()))
                    self._poke.set()

    async def _tcp_probe(self, addr: Addr, timeout: float) -> None:  # noqa: ASYNC109
        """memberlist's fallback TCP ping, reduced to its connect: a refusal is evidence; a
        connect that times out or fails otherwise backs the suspicion a missed ack starts."""
        failed = False
        try:
            with trio.move_on_after(timeout) as scope:
                stream = await trio.open_tcp_stream(*addr)
                await stream.aclose()
            failed = scope.cancelled_caught
        except OSError as exc:
            if _refused(exc):
                self.stats["tcp_probe_refused"] += 1
                await self._carry(self._core.evidence_at(addr, trio.current_time()))
                self._poke.set()
            else:
                failed = True  # EHOSTUNREACH, ENETUNREACH, ...: nothing answered either
        finally:
            self._tcp_probing.discard(addr)
        if failed:
            await self._carry(self._core.tcp_probe_failed(addr, trio.current_time()))
            self._poke.set()

    def envelope(self) -> Envelope:
        """The next envelope of this boot (counter from 1, never reused within the epoch)."""
        self._counter += 1
        return Envelope(self._epoch, self._counter, int(time.time()))

    def seal_message(self, msg: Message, limit: int | None) -> bytes:
        return seal(self.keys, msg, os.urandom(NONCE_LEN), limit, self.envelope())

    async def _carry(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Send):
                await self._send(e)
            elif isinstance(e, Sync):
                if e.addr not in self._syncing and self._nursery is not None:
                    self._syncing.add(e.addr)
                    self._nursery.start_soon(self._push_pull, e.addr, e.join)
            elif isinstance(e, TcpProbe):
                if e.addr not in self._tcp_probing and self._nursery is not None:
                    self._tcp_probing.add(e.addr)
                    self._nursery.start_soon(self._tcp_probe, e.addr,
                                             e.timeout or self._timings.tcp_probe_timeout)
            elif isinstance(e, MemberChanged):
                self._notify(e)
            elif isinstance(e, Log):
                log.info(e.event, **e.fields)

    async def _send(self, e: Send) -> None:
        assert self._udp is not None
        try:
            data = self.seal_message(e.msg, MAX_DATAGRAM)
        except (WireError, ValueError, OverflowError):  # never let one message stop the loop
            self.stats["send_errors"] += 1
            return
        try:
            await self._udp.sendto(data, e.addr)
        except OSError:
            self.stats["send_errors"] += 1
            await self._drain_icmp()  # a pending ICMP error can surface on send too
            return
        self.stats["sent_packets"] += 1
        self.stats["sent_bytes"] += len(data)

    def _notify(self, change: MemberChanged) -> None:
        for s in list(self._subs):
            try:
                s.send_nowait(change)
            except trio.WouldBlock:
                self.stats["subscriber_overflow"] += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subs.remove(s)

    # --- push-pull (TCP) ----------------------------------------------------------------
    async def _push_pull(self, addr: Addr, join: bool) -> None:
        try:
            with trio.fail_after(self._timings.push_pull_timeout):
                stream = await trio.open_tcp_stream(*addr)
                async with stream:
                    await _send_frame(stream, self._seal_state(join))
                    reply = self._open_state(await _recv_frame_timed(stream, self._timings))
            self.stats["pushpull_ok"] += 1
            if reply is not None:
                self.joined.set()
                await self._carry(self._core.on_message(addr, reply, trio.current_time()))
                self._poke.set()
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, WireError):
            self.stats["pushpull_failed"] += 1
        finally:
            self._syncing.discard(addr)

    async def _serve_tcp(self, stream: trio.SocketStream) -> None:
        """One inbound push-pull. A connection first waits for its 4-byte length prefix, at
        most push_pull_header_timeout, holding nothing but its descriptor (at most
        INBOUND_PER_ADDR per source address); only a connection that announced a frame takes
        one of the INBOUND_SYNC_MAX slots that bound buffered memory. So idle connections from
        many addresses cannot keep a joining node out."""
        try:
            peer = str(stream.socket.getpeername()[0])
        except OSError:
            peer = "?"
        if self._inbound_by_addr[peer] >= INBOUND_PER_ADDR:
            self.stats["pushpull_refused"] += 1
            await stream.aclose()
            return
        self._inbound_by_addr[peer] += 1
        try:
            async with stream:
                try:
                    with trio.fail_after(self._timings.push_pull_header_timeout):
                        size = _frame_size(await _recv_exactly(stream, 4))
                except WireError as e:  # a length over MAX_FRAME: refused unread
                    self.stats[f"dropped_{e.reason}"] += 1
                    return
                except (OSError, trio.TooSlowError, trio.BrokenResourceError):
                    self.stats["pushpull_failed"] += 1
                    return
                if self._inbound_syncs >= INBOUND_SYNC_MAX:  # bounded memory under a flood
                    self.stats["pushpull_refused"] += 1
                    return
                self._inbound_syncs += 1
                try:
                    await self._serve_sync(stream, size)
                finally:
                    self._inbound_syncs -= 1
        finally:
            self._inbound_by_addr[peer] -= 1
            if not self._inbound_by_addr[peer]:
                del self._inbound_by_addr[peer]

    async def _serve_sync(self, stream: trio.SocketStream, size: int) -> None:
        try:
            with trio.fail_after(self._timings.push_pull_timeout):
                req = self._open_state(await _recv_exactly(stream, size))
                if req is None:
                    return
                await _send_frame(stream, self._seal_state(False))
            self.joined.set()  # a peer pushed its table to us: we have met the mesh
            # a push-pull names its members itself: the TCP source port means nothing
            await self._carry(self._core.on_message(("", 0), req, trio.current_time()))
            self._poke.set()
        except (OSError, trio.TooSlowError, trio.BrokenResourceError):
            self.stats["pushpull_failed"] += 1

    def _seal_state(self, join: bool) -> bytes:
        return self.seal_message(self._core.full_state(join), MAX_FRAME)

    def _open_state(self, data: bytes) -> PushPull | None:
        try:
            env, msg = open_env(self.keys, data, MAX_FRAME)
        except WireError as e:
            self.stats[f"dropped_{e.reason}"] += 1
            return None
        if not isinstance(msg, PushPull):
            self.stats["dropped_malformed"] += 1
            return None
        if self._guard.check("tcp", msg.sender, env, time.time()) is not None:
            self.stats["dropped_replay"] += 1  # a captured frame, replayed
            return None
        return msg


def _refused(exc: BaseException | None) -> bool:
    """A refused connect: trio's happy-eyeballs wraps each attempt's error in an
    ExceptionGroup as the `__cause__` of one OSError."""
    if exc is None:
        return False
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_refused(e) for e in exc.exceptions)
    return _refused(exc.__cause__)


async def _send_frame(stream: trio.SocketStream, data: bytes) -> None:
    await stream.send_all(len(data).to_bytes(4, "big") + data)


def _frame_size(head: bytes) -> int:
    size = int.from_bytes(head, "big")
    if size > MAX_FRAME:
        raise WireError("oversize", f"frame {size}")
    return size


async def _recv_frame(stream: trio.SocketStream) -> bytes:
    """One length-prefixed frame (the fuzzers drive this without a trio run)."""
    return await _recv_exactly(stream, _frame_size(await _recv_exactly(stream, 4)))


async def _recv_frame_timed(stream: trio.SocketStream, t: Timings) -> bytes:
    """A frame whose length prefix must come within push_pull_header_timeout: a real peer sends
    it at once, so a stranger cannot idle on an inbound slot."""
    with trio.fail_after(t.push_pull_header_timeout):
        head = await _recv_exactly(stream, 4)
    return await _recv_exactly(stream, _frame_size(head))


async def _recv_exactly(stream: trio.SocketStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(min(n - len(buf), 1 << 20))
        if not chunk:
            raise trio.BrokenResourceError("peer closed mid-frame")
        buf += chunk
    return bytes(buf)
