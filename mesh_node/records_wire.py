"""The one seam where gossiped records become typed values: strict msgspec decoding with bounds.

Why msgspec: it decodes msgpack straight into typed Structs and checks every `Meta` bound at
decode time (integers in range, floats finite, strings and arrays bounded, enums checked) in C,
so a hostile record costs one failed decode, not a walk of hand-written checks; a wrong value
raises `msgspec.ValidationError` with the path of the field, which becomes the drop reason.
Unknown keys are ignored (newer nodes may add fields); missing optional keys take defaults.
Nothing here raises past `decode_state` / `decode_load` but `RecordError`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from mesh_node.records import (
    KEEP_DEFAULT,
    BackendCapability,
    Load,
    ModelDemand,
    ModelSummary,
    NodeState,
    Serving,
)

# Bounds: far above any real node, small enough that no record can balloon memory.
_U16 = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_BYTES = Annotated[int, msgspec.Meta(ge=0, le=1 << 50)]  # 1 PiB of memory or file size
_ID = Annotated[str, msgspec.Meta(max_length=128)]
_NAME = Annotated[str, msgspec.Meta(max_length=256)]
_ADDR = Annotated[str, msgspec.Meta(max_length=64)]
_TEXT = Annotated[str, msgspec.Meta(max_length=512)]
_DIGEST = Annotated[str, msgspec.Meta(pattern="^([0-9a-f]{64})?$")]  # sha256 hex, or "" (unknown)
_WEIGHT = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]  # also rejects nan and inf
_SECONDS = Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]
MAX_DEMAND = 256  # models with demand in one node's load record (it lists recent ones only)
MAX_STATE_BYTES = 256 * 1024  # a record with 512 catalog entries is ~100 kB


class RecordError(Exception):
    """A record that cannot be accepted; `reason` is short, for counters and logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Cap(msgspec.Struct):
    n: _ID
    v: _TEXT = ""
    f: Annotated[list[_ID], msgspec.Meta(max_length=8)] = []
    s: bool = False
    a: bool = False
    r: _TEXT = ""


class _Model(msgspec.Struct):
    i: _NAME
    k: _NAME
    b: _ID
    f: _ID
    s: _BYTES
    m: _BYTES
    a: Annotated[list[_NAME], msgspec.Meta(max_length=16)] = []
    d: _DIGEST = ""
    cp: bool = False


class _Serving(msgspec.Struct):
    m: _NAME
    r: Literal["host", "worker"] = "host"
    b: _ID = ""
    ok: bool = False
    p: _U16 = 0
    st: _TEXT = ""
    w: Annotated[list[tuple[_ID, _WEIGHT]], msgspec.Meta(max_length=64)] = []
    ra: Annotated[int, msgspec.Meta(ge=0, le=1 << 40)] = 0


class _State(msgspec.Struct):
    id: _ID
    n: _NAME = ""
    a: _ADDR = ""
    ap: _U16 = 0
    gp: _U16 = 0
    mo: _BYTES = 0
    mf: _BYTES = 0
    c: Annotated[list[_Cap], msgspec.Meta(max_length=8)] = []
    cat: Annotated[list[_Model], msgspec.Meta(max_length=512)] = []
    sv: Annotated[list[_Serving], msgspec.Meta(max_length=64)] = []
    v: _TEXT = ""
    rp: _U16 = 50052
    pin: Annotated[list[tuple[_NAME, _NAME]], msgspec.Meta(max_length=64)] = []
    rep: Annotated[list[tuple[_NAME, Annotated[int, msgspec.Meta(ge=1, le=64)]]],
                   msgspec.Meta(max_length=64)] = []
    hr: Annotated[float, msgspec.Meta(ge=1.0, le=4.0)] = 1.1
    far: Annotated[list[_ID], msgspec.Meta(max_length=256)] = []
    pl: Annotated[list[_NAME], msgspec.Meta(max_length=64)] = []
    idl: Annotated[list[tuple[_NAME, _SECONDS]], msgspec.Meta(max_length=64)] = []
    iu: _SECONDS = 900
    mr: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8
    sf: _BYTES = 0
    sh: bool = True


_COUNT = Annotated[int, msgspec.Meta(ge=0, le=1 << 20)]
_DEMAND = tuple[_NAME, _COUNT, Annotated[float, msgspec.Meta(ge=0.0, le=float(1 << 20))],
                Annotated[int, msgspec.Meta(ge=0, le=1 << 40)],
                Annotated[int, msgspec.Meta(ge=KEEP_DEFAULT, le=1 << 40)]]


class _Load(msgspec.Struct):
    if_: _COUNT = msgspec.field(default=0, name="if")
    d: Annotated[list[_DEMAND], msgspec.Meta(max_length=MAX_DEMAND)] = []


_STATE = msgspec.msgpack.Decoder(_State)
_LOAD = msgspec.msgpack.Decoder(_Load)
_ENC = msgspec.msgpack.Encoder()


def encode_state(state: NodeState) -> bytes:
    return _ENC.encode(state.to_wire())


def encode_load(load: Load) -> bytes:
    return _ENC.encode(load.to_wire())


def decode_state(raw: bytes) -> NodeState:
    """Typed, bounded NodeState from gossiped bytes; RecordError (with the reason) otherwise."""
    if len(raw) > MAX_STATE_BYTES:
        raise RecordError(f"state record of {len(raw)} bytes > {MAX_STATE_BYTES}")
    try:
        w = _STATE.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise RecordError(str(e)[:200]) from None
    except Exception as e:  # noqa: BLE001 - the decoder's contract, kept even for its bugs
        raise RecordError(type(e).__name__) from None
    return NodeState(
        node_id=w.id, name=w.n, address=w.a, api_port=w.ap, gossip_port=w.gp,
        memory_offered=w.mo, memory_free=w.mf,
        capabilities=tuple(BackendCapability(c.n, c.v, tuple(c.f), c.s, c.a, c.r) for c in w.c),
        catalog=tuple(ModelSummary(m.i, m.k, m.b, m.f, m.s, m.m, tuple(m.a), m.d,
                                          m.cp) for m in w.cat),
        serving=tuple(Serving(s.m, s.r, s.b, s.ok, s.p, s.st, tuple(s.w), s.ra) for s in w.sv),
        version=w.v, rpc_port=w.rp, pins=tuple(w.pin), replicas=tuple(w.rep),
        headroom=w.hr, far=tuple(w.far), preload=tuple(w.pl), idle=tuple(w.idl),
        idle_unload=w.iu, max_replicas=w.mr, store_free=w.sf, shares=w.sh,
    )


def decode_load(raw: bytes) -> Load:
    """Typed, bounded Load; RecordError otherwise (an empty payload is no load)."""
    if not raw:
        return Load()
    try:
        w = _LOAD.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise RecordError(str(e)[:200]) from None
    except Exception as e:  # noqa: BLE001
        raise RecordError(type(e).__name__) from None
    demand = {d[0]: ModelDemand(*d) for d in w.d}  # one entry per model: the last one wins
    return Load(w.if_, tuple(demand[k] for k in sorted(demand)))
