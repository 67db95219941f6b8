"""Fuzz the gossip wire decoder and the push-pull frame reader: hostile bytes give WireError only.

Inputs: random bytes, sealed random msgpack trees (authentic but garbage), near-valid message
shapes with wrong field types, bit flips / truncations / extensions of genuine datagrams,
oversized datagrams, and framed TCP streams cut at random places.
"""

from __future__ import annotations

from typing import Any, cast

import msgpack
import trio
from hypothesis import given
from hypothesis import strategies as st

from mesh_node.gossip.members import STATUSES, Update
from mesh_node.gossip.shell import _recv_frame
from mesh_node.gossip.wire import (
    MAX_COUNTER,
    MAX_DATAGRAM,
    MAX_FRAME,
    NONCE_LEN,
    OVERHEAD,
    Ack,
    Gossip,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    WireError,
    decode,
    encode,
    open_,
    seal,
)
from mesh_node.security import derive_keys
from tests.support.hostile_fuzz import ChunkStream, fuzz_settings, run_now, seal_body

FZW_KEYS = derive_keys("fuzz-secret", "fuzz-mesh")
FZW_OTHER = derive_keys("another-secret", "fuzz-mesh")
FZW_REASONS = {"auth", "malformed", "version", "oversize"}
FZW_WIRE_TESTS = 6  # the wire decoder's long-run budget is split across these tests

_scalar = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | st.text(max_size=20) | st.binary(max_size=20))
_keys = st.text(max_size=8) | st.integers(-(2**63), 2**64 - 1)  # msgpack ints are 64-bit
_tree = st.recursive(_scalar, lambda c: st.lists(c, max_size=6)
                     | st.dictionaries(_keys, c, max_size=4), max_leaves=30)
_ids = st.text(min_size=1, max_size=24)
_counters = st.integers(0, MAX_COUNTER)  # genuine messages stay inside the wire bounds
_updates = st.builds(
    Update, _ids, st.sampled_from(STATUSES), _counters, st.text(max_size=15),
    st.integers(0, 65535), st.integers(0, 2**16), st.integers(0, 2**16),
    st.none() | st.binary(max_size=64), st.text(max_size=10), _counters,
    st.binary(max_size=16))
_upd_tuple = st.lists(_updates, max_size=3).map(tuple)
_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, _counters, _ids, _ids, _upd_tuple),
    st.builds(Ack, _counters, _ids, _upd_tuple),
    st.builds(PingReq, _counters, _ids, _ids, st.text(max_size=15),
              st.integers(0, 65535), _upd_tuple),
    st.builds(Nack, _counters, _ids, _upd_tuple),
    st.builds(Gossip, _ids, _upd_tuple),
    st.builds(PushPull, _ids, st.booleans(), _upd_tuple),
)


def fzw_open(data: bytes, limit: int | None = MAX_DATAGRAM) -> Message | None:
    """open_, turning the one allowed exception into None (anything else fails the test)."""
    try:
        return open_(FZW_KEYS, data, limit)
    except WireError as e:
        assert e.reason in FZW_REASONS
        return None


@fuzz_settings(300, FZW_WIRE_TESTS)
@given(st.binary(max_size=1400))
def test_fuzz_wire_random_bytes_are_rejected(data: bytes) -> None:
    # a random 16-byte AES-GCM tag forges with probability 2**-128: never accepted
    assert fzw_open(data) is None


@fuzz_settings(300, FZW_WIRE_TESTS)
@given(_tree)
def test_fuzz_wire_authentic_garbage_msgpack(obj: Any) -> None:
    body = msgpack.packb(obj, use_bin_type=True)
    msg = fzw_open(seal_body(FZW_KEYS, body), None)
    assert msg is None or isinstance(msg, Ping | Ack | PingReq | Nack | Gossip | PushPull)


_field: st.SearchStrategy[Any] = st.one_of(_scalar, st.just([]), st.lists(_scalar, max_size=9))
_near = st.tuples(st.integers(-1, 7), st.lists(_field, max_size=6),
                  st.lists(st.one_of(st.lists(_scalar, min_size=9, max_size=9), _field),
                           max_size=3))


@fuzz_settings(300, FZW_WIRE_TESTS)
@given(_near)
def test_fuzz_wire_near_valid_shapes(shape: tuple[int, list[Any], list[Any]]) -> None:
    kind, head, ups = shape
    body = msgpack.packb([kind, *head, ups], use_bin_type=True)
    msg = fzw_open(seal_body(FZW_KEYS, body), None)
    if msg is not None:  # accepted only when every field had its exact type: same bytes back
        assert encode(msg) == body


@fuzz_settings(300, FZW_WIRE_TESTS)
@given(_messages, st.data())
def test_fuzz_wire_tampered_genuine_datagrams(msg: Message, data: st.DataObject) -> None:
    sealed = seal(FZW_KEYS, msg, bytes(NONCE_LEN), None)
    assert open_(FZW_KEYS, sealed, None) == msg
    how = data.draw(st.sampled_from(["flip", "cut", "extend", "other_key"]))
    if how == "flip":
        bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
        bad = bytearray(sealed)
        bad[bit // 8] ^= 1 << (bit % 8)
        tampered = bytes(bad)
    elif how == "cut":
        tampered = sealed[:data.draw(st.integers(0, len(sealed) - 1))]
    elif how == "extend":
        tampered = sealed + data.draw(st.binary(min_size=1, max_size=32))
    else:
        tampered = seal(FZW_OTHER, msg, bytes(NONCE_LEN), None)
    assert fzw_open(tampered, None) is None


@fuzz_settings(300, FZW_WIRE_TESTS)
@given(_messages, st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=4),
       st.integers(0, 4096))
def test_fuzz_wire_mutated_plaintext(msg: Message, edits: list[tuple[int, int]],
                                     cut: int) -> None:
    body = bytearray(encode(msg))
    for pos, val in edits:
        body[pos % len(body)] = val
    try:
        out = decode(bytes(body[:max(1, len(body) - cut % len(body))]))
    except WireError as e:
        assert e.reason == "malformed"
    else:
        assert decode(encode(out)) == out


@fuzz_settings(200, FZW_WIRE_TESTS)
@given(st.integers(MAX_DATAGRAM + 1, 70_000), st.binary(min_size=OVERHEAD, max_size=OVERHEAD))
def test_fuzz_wire_oversize_rejected_before_decrypting(size: int, head: bytes) -> None:
    data = head + bytes(size - len(head))
    try:
        open_(FZW_KEYS, data)
    except WireError as e:
        assert e.reason == "oversize"
    else:
        raise AssertionError("an oversized datagram was accepted")


# --- the push-pull frame reader (TCP): 4-byte length, then a sealed PushPull -------------------
FZW_FRAME_TESTS = 2


def fzw_read_frame(chunks: list[bytes]) -> PushPull | None:
    """What _serve_tcp does with a stream: read one frame and open it; None when dropped."""
    stream = cast(trio.SocketStream, ChunkStream(chunks))
    try:
        data: bytes = run_now(_recv_frame(stream))
    except WireError as e:
        assert e.reason == "oversize"
        return None
    except trio.BrokenResourceError:  # peer closed mid-frame: the shell counts it as failed
        return None
    msg = fzw_open(data, MAX_FRAME)
    assert msg is None or isinstance(msg, Message)
    return msg if isinstance(msg, PushPull) else None


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@fuzz_settings(300, FZW_FRAME_TESTS)
@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=5))
def test_fuzz_frame_random_streams(data: bytes, cuts: list[int]) -> None:
    assert fzw_read_frame(_split(data, cuts)) is None


@fuzz_settings(300, FZW_FRAME_TESTS)
@given(_messages, st.lists(st.integers(0, 4096), max_size=5),
       st.sampled_from(["intact", "short", "length", "trailing"]))
def test_fuzz_frame_genuine_frames_cut_anywhere(msg: Message, cuts: list[int], how: str) -> None:
    pp = PushPull(msg.sender, True, msg.updates)
    sealed = seal(FZW_KEYS, pp, bytes(NONCE_LEN), MAX_FRAME)
    framed = len(sealed).to_bytes(4, "big") + sealed
    if how == "short":
        framed = framed[:-1 - cuts[0] % len(sealed)] if cuts else framed[:-1]
    elif how == "length":
        framed = (len(sealed) + 1 + (cuts[0] if cuts else 0)).to_bytes(4, "big") + sealed
    elif how == "trailing":
        framed += b"\x00" * (1 + len(cuts))
    got = fzw_read_frame(_split(framed, cuts))
    assert got == (pp if how in ("intact", "trailing") else None)


def test_fuzz_frame_huge_length_is_refused_without_reading() -> None:
    stream = ChunkStream([(MAX_FRAME + 1).to_bytes(4, "big"), b"x" * 100])
    try:
        run_now(_recv_frame(cast(trio.SocketStream, stream)))
    except WireError as e:
        assert e.reason == "oversize"
    else:
        raise AssertionError("a frame over MAX_FRAME was read")
    assert stream.received == 4
