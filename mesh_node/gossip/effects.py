"""What the pure gossip core asks its shell to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mesh_node.gossip.members import Status
from mesh_node.gossip.wire import Message

Addr = tuple[str, int]


@dataclass(frozen=True)
class MemberInfo:
    """One member as this node sees it (state is the newest record whose bytes we hold)."""

    node: str
    status: Status
    incarnation: int
    address: str
    port: int
    state: bytes | None
    state_version: int
    rtt_ms: float | None = None
    load: bytes = b""
    backed: bool = False  # suspect, and this node's own TCP probe of it failed too


@dataclass(frozen=True)
class Send:
    """Send one datagram (the shell seals it)."""

    addr: Addr
    msg: Message


@dataclass(frozen=True)
class Sync:
    """Push-pull full state with `addr` over TCP, then feed the reply to `on_message`."""

    addr: Addr
    join: bool = False


@dataclass(frozen=True)
class TcpProbe:
    """Connect to `addr` (a member's gossip TCP port); report a refusal with `evidence_at`,
    a connect that timed out or failed otherwise with `tcp_probe_failed`."""

    addr: Addr
    timeout: float | None = None  # None: Timings.tcp_probe_timeout (the fallback ping)


@dataclass(frozen=True)
class MemberChanged:
    """A member's status or state record changed (removed: reclaimed after dead/left)."""

    member: MemberInfo
    removed: bool = False
    load_only: bool = False  # only the volatile load moved (no re-plan needed)


@dataclass(frozen=True)
class Log:
    """A structlog event with a stable name."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Effect = Send | Sync | TcpProbe | MemberChanged | Log
