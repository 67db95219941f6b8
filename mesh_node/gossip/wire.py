"""Gossip wire format: msgpack messages sealed with AES-256-GCM.

Sealed layout: version (1 byte) | nonce (12 bytes) | AES-GCM(envelope | msgpack body) with the
version and the mesh digest as associated data, so another protocol version or another mesh never
decodes. The envelope (inside the seal, so nobody can forge or strip it) is the sender's boot epoch
(wall-clock ms at start: it orders a sender's lives), a per-epoch message counter and the wall
second it was sent: the anti-replay window of gossip/replay.py reads it, as IPsec/DTLS do.
A datagram never exceeds MAX_DATAGRAM (1,200 bytes: fits the IPv6 minimum MTU of 1,280 with
headers, RFC 8200 §5); `fit` packs piggybacked updates until that budget is reached. Push-pull
frames over TCP use the same sealing with no size limit but MAX_FRAME.
Every decoding failure raises WireError with a reason used for drop counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mesh_node.gossip.members import RANK, STATUSES, Update
from mesh_node.security import MeshKeys

PROTOCOL_VERSION = 2  # 2: bounded fields, volatile load beside each update
NONCE_LEN = 12
TAG_LEN = 16
ENVELOPE_LEN = 20  # epoch u64 | counter u64 | sent_at u32, big-endian
OVERHEAD = 1 + NONCE_LEN + TAG_LEN + ENVELOPE_LEN
MAX_DATAGRAM = 1200
PLAIN_BUDGET = MAX_DATAGRAM - OVERHEAD
# push-pull: a frame must be read whole before it can be authenticated, so this bounds what a
# stranger can make a node buffer (x INBOUND_SYNC_MAX in flight). 1,000 members with 4 kB
# state records is ~4 MB; a record carries a catalog summary, typically well under 4 kB.
MAX_FRAME = 8 * 1024 * 1024
INLINE_STATE_MAX = 640  # bigger records travel as digests and are pulled over TCP
# Bounds checked at decode: a counter (incarnation, version, sequence) is a uint32 on the wire,
# as in memberlist; the core never issues one past MAX_COUNTER (so it can always encode it).
MAX_COUNTER = 2**32 - 1
MAX_ID = 128  # node ids are 32 hex chars; names of members never exceed this
MAX_ADDR = 64
MAX_STATE = 256 * 1024  # one state record (records_wire.MAX_STATE_BYTES)
MAX_LOAD = 256
MAX_UPDATES = 8192  # one push-pull table

Reason = Literal["auth", "malformed", "version", "oversize"]


@dataclass(frozen=True)
class Envelope:
    """Freshness data sealed with every datagram and frame."""

    epoch: int = 0  # the sender's boot (wall ms); a restarted sender has a larger one
    counter: int = 0  # per epoch, from 1
    sent_at: int = 0  # wall seconds

    def pack(self) -> bytes:
        return (self.epoch.to_bytes(8, "big") + self.counter.to_bytes(8, "big")
                + self.sent_at.to_bytes(4, "big"))

    @classmethod
    def unpack(cls, b: bytes) -> Envelope:
        return cls(int.from_bytes(b[:8], "big"), int.from_bytes(b[8:16], "big"),
                   int.from_bytes(b[16:20], "big"))


class WireError(Exception):
    """A datagram or frame that cannot be accepted; `reason` names the drop counter."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason


@dataclass(frozen=True)
class Ping:
    seq: int
    sender: str
    target: str  # the node id the sender means to reach (a restarted address is not it)
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True)
class Ack:
    seq: int
    sender: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True)
class PingReq:
    seq: int
    sender: str
    target: str
    address: str
    port: int
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True)
class Nack:
    seq: int
    sender: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True)
class Gossip:
    sender: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True)
class PushPull:
    sender: str
    join: bool
    updates: tuple[Update, ...] = ()  # the sender's whole table, state bytes included


Message = Ping | Ack | PingReq | Nack | Gossip | PushPull
_KINDS: dict[type[Any], int] = {Ping: 0, Ack: 1, PingReq: 2, Nack: 3, Gossip: 4, PushPull: 5}


def _pack_update(u: Update) -> list[Any]:
    return [u.node, RANK[u.status], u.incarnation, u.address, u.port,
            u.state_inc, u.state_version, u.state, u.origin, u.load_seq, u.load]


def _head(msg: Message) -> list[Any]:
    """Every field but the updates, after the kind."""
    if isinstance(msg, Ping):
        return [msg.seq, msg.sender, msg.target]
    if isinstance(msg, PingReq):
        return [msg.seq, msg.sender, msg.target, msg.address, msg.port]
    if isinstance(msg, Ack | Nack):
        return [msg.seq, msg.sender]
    if isinstance(msg, PushPull):
        return [msg.sender, msg.join]
    return [msg.sender]


def encode(msg: Message) -> bytes:
    """The msgpack body of a message (not sealed)."""
    body = [_KINDS[type(msg)], *_head(msg), [_pack_update(u) for u in msg.updates]]
    return msgpack.packb(body, use_bin_type=True)


def fit(base: Message, candidates: Iterable[Update], budget: int = PLAIN_BUDGET,
        scan: int = 64) -> Message:
    """`base` carrying as many of `candidates` (in order) as fit in `budget` body bytes."""
    used = len(encode(replace(base, updates=()))) + 2  # +2: array header may grow to 3 bytes
    chosen: list[Update] = []
    for i, u in enumerate(candidates):
        if i >= scan:
            break
        if u.state is not None and len(u.state) > INLINE_STATE_MAX:
            u = u.digest()
        size = len(msgpack.packb(_pack_update(u), use_bin_type=True))
        if used + size <= budget:
            chosen.append(u)
            used += size
    return replace(base, updates=tuple(chosen))


def seal(keys: MeshKeys, msg: Message, nonce: bytes, limit: int | None = MAX_DATAGRAM,
         env: Envelope = Envelope()) -> bytes:
    """Encrypt and authenticate a message; the caller draws the 12-byte random nonce."""
    if len(nonce) != NONCE_LEN:
        raise ValueError("nonce must be 12 bytes")
    head = bytes([PROTOCOL_VERSION])
    plain = env.pack() + encode(msg)
    sealed = head + nonce + AESGCM(keys.gossip_key).encrypt(nonce, plain, _ad(keys))
    if limit is not None and len(sealed) > limit:
        raise WireError("oversize", f"{len(sealed)} > {limit}")
    return sealed


def open_(keys: MeshKeys, data: bytes, limit: int | None = MAX_DATAGRAM) -> Message:
    """Authenticate and decode; raises WireError and nothing else."""
    return open_env(keys, data, limit)[1]


def open_env(keys: MeshKeys, data: bytes, limit: int | None = MAX_DATAGRAM
             ) -> tuple[Envelope, Message]:
    """Authenticate and decode, with the sealed envelope; raises WireError and nothing else."""
    if limit is not None and len(data) > limit:
        raise WireError("oversize", f"{len(data)} > {limit}")
    if len(data) < OVERHEAD:
        raise WireError("malformed", "short")
    if data[0] != PROTOCOL_VERSION:
        raise WireError("version", str(data[0]))
    try:
        body = AESGCM(keys.gossip_key).decrypt(data[1:1 + NONCE_LEN], data[1 + NONCE_LEN:],
                                               _ad(keys))
    except InvalidTag:
        raise WireError("auth") from None
    if len(body) < ENVELOPE_LEN:
        raise WireError("malformed", "envelope")
    return Envelope.unpack(body[:ENVELOPE_LEN]), decode(body[ENVELOPE_LEN:])


def _ad(keys: MeshKeys) -> bytes:
    return bytes([PROTOCOL_VERSION]) + keys.mesh_digest.encode()


def decode(body: bytes) -> Message:
    """Decode a msgpack body; raises WireError('malformed') on anything unexpected."""
    try:
        obj = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
        return _decode(obj)
    except WireError:
        raise
    except Exception as e:  # msgpack raises a zoo of types on hostile input
        raise WireError("malformed", type(e).__name__) from None


def _decode(obj: Any) -> Message:
    if not isinstance(obj, list) or len(obj) < 3:
        raise WireError("malformed", "not a message")
    kind, *head, raw_updates = obj
    if not isinstance(raw_updates, list) or len(raw_updates) > MAX_UPDATES:
        raise WireError("malformed", "updates")
    ups = tuple(_decode_update(x) for x in raw_updates)
    shapes: dict[Any, tuple[type[Any], ...]] = {
        0: (int, str, str), 1: (int, str), 2: (int, str, str, str, int), 3: (int, str),
        4: (str,), 5: (str, bool),
    }
    shape = shapes.get(kind) if type(kind) is int else None
    if shape is None or len(head) != len(shape):
        raise WireError("malformed", f"kind {kind!r}")
    if not all(type(v) is t for v, t in zip(head, shape, strict=True)):
        raise WireError("malformed", "field types")
    if not all(_bounded(v) for v in head):
        raise WireError("malformed", "field bounds")
    if kind == 2 and not 0 <= head[4] < 65536:
        raise WireError("malformed", "port")
    ctor: list[type[Any]] = [Ping, Ack, PingReq, Nack, Gossip, PushPull]
    msg: Message = ctor[kind](*head, updates=ups)
    return msg


def _bounded(v: Any) -> bool:
    """A head field within its bounds: counters are uint32, strings short."""
    if type(v) is int:
        return 0 <= v <= MAX_COUNTER
    if type(v) is str:
        return len(v) <= MAX_ID
    return True


def _counter(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_COUNTER


def _decode_update(x: Any) -> Update:
    if not isinstance(x, list) or len(x) != 11:
        raise WireError("malformed", "update")
    node, rank, inc, addr, port, sinc, sver, state, origin, lseq, load = x
    ok = (type(node) is str and 0 < len(node) <= MAX_ID and type(rank) is int
          and 0 <= rank < len(STATUSES) and _counter(inc) and type(addr) is str
          and len(addr) <= MAX_ADDR and type(port) is int and 0 <= port < 65536
          and _counter(sinc) and _counter(sver)
          and (state is None or (type(state) is bytes and len(state) <= MAX_STATE))
          and type(origin) is str and len(origin) <= MAX_ID and _counter(lseq)
          and type(load) is bytes and len(load) <= MAX_LOAD)
    if not ok:
        raise WireError("malformed", "update fields")
    return Update(node, STATUSES[rank], inc, addr, port, sinc, sver, state, origin, lseq, load)
