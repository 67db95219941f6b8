"""Member records and their merge: a join-semilattice, like memberlist's state merge.

A record carries three independent orders:
- liveness, ordered by (incarnation, status rank): alive < suspect < dead < left at one
  incarnation, so a suspicion beats the alive it doubts and only a higher incarnation (which
  only the node itself issues, to refute) revives it;
- the node's state record, ordered by (state incarnation, version), with "bytes present" above
  "digest only" at one key (a digest announces a version that is fetched over TCP);
- the node's volatile load, ordered by its own load counter (never fetched, never versioned).
Ties between different payloads (only possible with duplicate node ids) break on the payload
itself, so `merge` is commutative, associative and idempotent (see tests/unit/test_gossip_merge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

Status = Literal["alive", "suspect", "dead", "left"]
STATUSES: tuple[Status, ...] = ("alive", "suspect", "dead", "left")
RANK: dict[str, int] = {s: i for i, s in enumerate(STATUSES)}
LIVE: frozenset[str] = frozenset({"alive", "suspect"})


@dataclass(frozen=True)
class Update:
    """One member as gossip carries it: liveness plus the newest known state record."""

    node: str
    status: Status
    incarnation: int
    address: str
    port: int
    state_inc: int = 0
    state_version: int = 0  # 0: no state record published yet
    state: bytes | None = None  # None with a version > 0: digest only, fetch it over TCP
    origin: str = ""  # who declared suspect/dead (counts independent suspicion confirmations)
    # volatile load (requests in flight...), ordered by the node's own load counter only: it
    # rides every update unversioned, so it never makes a peer fetch the state record
    load_seq: int = 0
    load: bytes = b""

    @property
    def addr(self) -> tuple[str, int]:
        return (self.address, self.port)

    def digest(self) -> Update:
        """The same update without the state bytes (for records too big for a datagram)."""
        return replace(self, state=None)


def live_key(u: Update) -> tuple[int, int, str, int, str]:
    """Liveness order; address and origin only break ties between conflicting claims."""
    return (u.incarnation, RANK[u.status], u.address, u.port, u.origin)


def state_key(u: Update) -> tuple[int, int, bool, bytes]:
    """State-record order: (incarnation, version), then bytes present, then the bytes."""
    return (u.state_inc, u.state_version, u.state is not None, u.state or b"")


def load_key(u: Update) -> tuple[int, bytes]:
    """Load order: the node's own load counter, then the bytes (ties only with duplicate ids)."""
    return (u.load_seq, u.load)


def merge(a: Update, b: Update) -> Update:
    """Least upper bound of two records about the same node."""
    if a.node != b.node:
        raise ValueError("merge of records about different nodes")
    live = a if live_key(a) >= live_key(b) else b
    st = a if state_key(a) >= state_key(b) else b
    ld = a if load_key(a) >= load_key(b) else b
    return replace(live, state_inc=st.state_inc, state_version=st.state_version, state=st.state,
                   load_seq=ld.load_seq, load=ld.load)


def merge_tables(a: Mapping[str, Update], b: Mapping[str, Update]) -> dict[str, Update]:
    """Pointwise merge of two member tables (union of nodes)."""
    out = dict(a)
    for node, rec in b.items():
        out[node] = merge(out[node], rec) if node in out else rec
    return out
