"""Fuzz the node-to-node seams: X-Mesh-Auth checks and sealed answer frames only ever refuse."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh_node.api.meshauth import AUTH, ForwardVerifier, Refused, forward_headers
from mesh_node.api.seal import FrameOpener, FrameSealer, SealError
from tests.support.hostile_fuzz import fuzz_settings

KEY, NONCE = b"k" * 32, b"n" * 12
_GOOD = forward_headers(KEY, "a", "b", "r1", "POST", "/v1/x", b"{}", 1000.0)[AUTH]


@fuzz_settings(400)
@given(auth=st.text(max_size=200) | st.just(_GOOD) | st.builds(
           lambda ts, rest: f"{ts}:{rest}", st.integers(-10**15, 10**15), st.text(max_size=120)),
       origin=st.text(max_size=80), rid=st.text(max_size=80), body=st.binary(max_size=200),
       now=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_fuzz_forward_auth_never_raises(auth: str, origin: str, rid: str, body: bytes,
                                        now: float) -> None:
    got = ForwardVerifier(KEY, "b", 0.0).check(auth, origin, rid, "POST", "/v1/x", body, now)
    assert got is None or (isinstance(got, Refused) and got.status in (401, 503))
    if got is None:  # only the genuine header, for its own request, at a fresh time
        assert (auth, origin, rid, body) == (_GOOD, "a", "r1", b"{}") and abs(now - 1000) <= 30


def _wire(chunks: list[bytes]) -> bytes:
    s = FrameSealer(KEY, NONCE)
    return b"".join(s.frame(c, i == len(chunks) - 1) for i, c in enumerate(chunks))


@fuzz_settings(400)
@given(chunks=st.lists(st.binary(max_size=64), min_size=1, max_size=5),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 10_000), extra=st.binary(max_size=40), cuts=st.integers(1, 50))
def test_fuzz_sealed_frames_open_or_fail_cleanly(chunks: list[bytes],
                                                 edits: list[tuple[int, int]], cut: int,
                                                 extra: bytes, cuts: int) -> None:
    wire = bytearray(_wire(chunks))
    for pos, val in edits:
        if wire:
            wire[pos % len(wire)] = val
    data = bytes(wire[: cut % (len(wire) + 1)] if cut % 3 else wire) + (extra if cut % 5 == 0
                                                                       else b"")
    opener, got = FrameOpener(KEY, NONCE), []
    try:
        for i in range(0, len(data), cuts):
            got += opener.feed(data[i:i + cuts])
        opener.finish()
    except SealError:
        return
    assert got == chunks  # whatever opened completely is exactly what was sealed
