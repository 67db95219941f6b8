"""Wire codec: round trips, the 1,200-byte budget, and fuzz (only WireError ever escapes)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_node.gossip.members import Update
from mesh_node.gossip.wire import (
    INLINE_STATE_MAX,
    MAX_DATAGRAM,
    MAX_FRAME,
    Ack,
    Gossip,
    Nack,
    Ping,
    PingReq,
    PushPull,
    WireError,
    decode,
    encode,
    fit,
    open_,
    seal,
)
from mesh_node.security import derive_keys

KEYS = derive_keys("secret", "wire-test")
NONCE = bytes(12)
U = Update("node-a", "suspect", 7, "192.168.1.20", 9338, 7, 3, b"\x81\xa1k\x01", "node-b")


@pytest.mark.parametrize("msg", [
    Ping(1, "a", "b", (U,)), Ack(2, "a"), PingReq(3, "a", "b", "10.0.0.2", 9338, (U, U)),
    Nack(4, "a"), Gossip("a", (U,)), PushPull("a", True, (U,)),
])
def test_wire_round_trip(msg: object) -> None:
    assert open_(KEYS, seal(KEYS, msg, NONCE)) == msg  # type: ignore[arg-type]


def test_wire_no_secret_still_sealed_with_name_key() -> None:
    open_keys = derive_keys(None, "wire-test")
    data = seal(open_keys, Ack(1, "a"), NONCE)
    assert open_(open_keys, data) == Ack(1, "a")
    with pytest.raises(WireError) as e:
        open_(derive_keys(None, "other-mesh"), data)
    assert e.value.reason == "auth"


def test_wire_errors_carry_reasons() -> None:
    data = seal(KEYS, Ack(1, "a"), NONCE)
    cases = {"auth": (derive_keys("other", "wire-test"), data),
             "version": (KEYS, b"\x01" + data[1:]),  # protocol 1: before bounds
             "malformed": (KEYS, data[:10]),
             "oversize": (KEYS, data + bytes(MAX_DATAGRAM))}
    for reason, (keys, blob) in cases.items():
        with pytest.raises(WireError) as e:
            open_(keys, blob)
        assert e.value.reason == reason
    flipped = bytearray(data)
    flipped[20] ^= 1
    with pytest.raises(WireError, match="auth"):
        open_(KEYS, bytes(flipped))


def test_wire_fit_respects_budget_and_demotes_big_records() -> None:
    small = [Update(f"n{i}", "alive", i, "10.0.0.1", 9338, i, 1, os.urandom(200)) for i in range(30)]
    big = Update("big", "alive", 1, "10.0.0.9", 9338, 1, 5, os.urandom(INLINE_STATE_MAX + 1))
    msg = fit(Ping(99, "me", "you"), [big, *small])
    sealed = seal(KEYS, msg, NONCE)
    assert len(sealed) <= MAX_DATAGRAM
    assert msg.updates[0] == big.digest()  # too big to inline: digest, pulled over TCP
    assert 3 <= len(msg.updates) < 31
    many = [Update(f"m{i}", "dead", 1, "10.0.0.1", 1) for i in range(200)]
    assert len(seal(KEYS, fit(Gossip("me"), many, scan=200), NONCE)) <= MAX_DATAGRAM
    whole = PushPull("me", False, tuple(small) + (big,))
    assert open_(KEYS, seal(KEYS, whole, NONCE, MAX_FRAME), MAX_FRAME) == whole


@settings(max_examples=400)
@given(st.binary(max_size=1400))
def test_wire_fuzz_random_bytes(data: bytes) -> None:
    with pytest.raises(WireError):
        open_(KEYS, data)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_wire_fuzz_decode_of_authentic_garbage(body: bytes) -> None:
    """Garbage that passed authentication (a buggy peer) still only raises WireError."""
    try:
        decode(body)
    except WireError as e:
        assert e.reason == "malformed"


@settings(max_examples=200)
@given(st.integers(0, 200))
def test_wire_fuzz_truncated(cut: int) -> None:
    body = encode(PingReq(3, "a", "b", "10.0.0.2", 9338, (U, U)))
    with pytest.raises(WireError):
        decode(body[:cut] if cut < len(body) else body + b"\x00")
