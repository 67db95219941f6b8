"""The TXT record of a `_mesh-node._tcp.local.` advert: encode it, and decode it tolerantly.

DNS-SD (RFC 6763 section 6.1) caps each TXT string, `key=value`, at 255 bytes. Keys are short
and stable; unknown keys are ignored so newer nodes can add some. Decoding never raises: a bad
advert comes back as `Malformed(reason)` for the caller to drop and count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mesh_node.records import BackendCapability

SERVICE_TYPE = "_mesh-node._tcp.local."
TXT_PAIR_MAX = 255  # RFC 6763 section 6.1: one length byte per string
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{16}$")
_CAP_RE = re.compile(r"^[a-z0-9_.-]{1,32}:[a-z0-9_.-]{1,32}$")
_UINT_RE = re.compile(r"^[0-9]{1,20}$")  # ASCII only: int() would also take other digits
# All four are used with fullmatch: "$" alone also matches before a trailing "\n".

TxtProps = Mapping[bytes | str, bytes | str | None]


@dataclass(frozen=True)
class Advert:
    """What one node says about itself over mDNS (a hint; gossip authenticates)."""

    node_id: str
    name: str
    mesh_digest: str
    protocol: int
    gossip_port: int
    api_port: int
    capabilities: tuple[str, ...] = ()  # "llama:split", "mlx:solo"
    memory_offered: int = 0


@dataclass(frozen=True)
class Malformed:
    """An advert that could not be decoded, and why."""

    reason: str


def capability_tokens(caps: Iterable[BackendCapability]) -> tuple[str, ...]:
    """`llama:split` / `mlx:solo` for each available backend, sorted."""
    return tuple(sorted(f"{c.name}:{'split' if c.splittable else 'solo'}"
                        for c in caps if c.available))


def _pair_len(key: str, value: str) -> int:
    return len(key.encode()) + 1 + len(value.encode())


def _fit_name(name: str) -> str:
    """Truncate on a UTF-8 character boundary so `n=<name>` fits one TXT string."""
    raw = name.encode()[: TXT_PAIR_MAX - 2]
    return raw.decode("utf-8", errors="ignore")


def _fit_caps(caps: Sequence[str]) -> str:
    """Join valid tokens with commas, keeping whole tokens only while `cap=...` fits."""
    kept: list[str] = []
    for tok in caps:
        if _CAP_RE.fullmatch(tok) and _pair_len("cap", ",".join([*kept, tok])) <= TXT_PAIR_MAX:
            kept.append(tok)
    return ",".join(kept)


def encode_txt(advert: Advert) -> dict[str, str]:
    """The TXT properties for `advert`; raises ValueError only for an invalid id or digest."""
    if not _NODE_ID_RE.fullmatch(advert.node_id):
        raise ValueError(f"node id not advertisable: {advert.node_id!r}")
    if not _DIGEST_RE.fullmatch(advert.mesh_digest):
        raise ValueError(f"mesh digest must be 16 hex chars: {advert.mesh_digest!r}")
    return {
        "id": advert.node_id,
        "n": _fit_name(advert.name),
        "md": advert.mesh_digest,
        "pv": str(advert.protocol),
        "gp": str(advert.gossip_port),
        "ap": str(advert.api_port),
        "cap": _fit_caps(advert.capabilities),
        "mem": str(max(0, advert.memory_offered)),
    }


def _text(v: bytes | str | None) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _normalise(props: TxtProps) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in props.items():
        key, val = _text(k), _text(v)
        if key is not None and val is not None:
            out[key.lower()] = val
    return out


def _uint(raw: str | None) -> int | None:
    return int(raw) if raw is not None and _UINT_RE.fullmatch(raw) else None


def _port(raw: str | None) -> int | None:
    if raw is None or not _UINT_RE.fullmatch(raw):
        return None
    p = int(raw)
    return p if 0 < p < 65536 else None


def decode_txt(props: TxtProps) -> Advert | Malformed:
    """Decode TXT properties; never raises (bad input gives `Malformed`)."""
    try:
        return _decode(_normalise(props))
    except Exception as exc:  # tolerant by contract: a hostile advert must not crash us
        return Malformed(f"unexpected: {type(exc).__name__}")


def _decode(d: dict[str, str]) -> Advert | Malformed:
    node_id, digest = d.get("id", ""), d.get("md", "")
    if not _NODE_ID_RE.fullmatch(node_id):
        return Malformed("bad node id")
    if not _DIGEST_RE.fullmatch(digest):
        return Malformed("bad mesh digest")
    pv = _uint(d.get("pv"))
    if pv is None:
        return Malformed("bad protocol version")
    gp, ap = _port(d.get("gp")), _port(d.get("ap"))
    if gp is None or ap is None:
        return Malformed("bad port")
    caps = tuple(t for t in d.get("cap", "").split(",") if _CAP_RE.fullmatch(t))
    return Advert(node_id=node_id, name=d.get("n", ""), mesh_digest=digest, protocol=pv,
                  gossip_port=gp, api_port=ap, capabilities=caps,
                  memory_offered=_uint(d.get("mem")) or 0)
