"""Node-to-node signatures (origin, target, freshness) and the time-bounded replay cache."""

from __future__ import annotations

import pytest

from mesh_node.api.meshauth import AUTH, ForwardVerifier, Refused, forward_headers
from mesh_node.api.replay import REPLAY_CACHE_MAX, ReplayCache

KEY = b"k" * 32


def _auth(now: float, body: bytes = b"{}", rid: str = "r1", path: str = "/v1/x",
          origin: str = "origin", target: str = "node-b") -> str:
    return forward_headers(KEY, origin, target, rid, "POST", path, body, now)[AUTH]


def _check(v: ForwardVerifier, auth: str, now: float, *, rid: str = "r1", path: str = "/v1/x",
           body: bytes = b"{}", origin: str = "origin") -> str | None:
    refused = v.check(auth, origin, rid, "POST", path, body, now)
    return None if refused is None else refused.reason


def test_meshauth_accepts_fresh_valid_once() -> None:
    v = ForwardVerifier(KEY, "node-b", 0.0)
    auth = _auth(1000.0)
    assert _check(v, auth, 1005.0) is None
    assert _check(v, auth, 1006.0) == "replayed request"


def test_meshauth_two_identical_forwards_are_distinct() -> None:
    """Same body, path and client request id in the same second: both accepted (nonce)."""
    v = ForwardVerifier(KEY, "node-b", 0.0)
    a, b = _auth(1000.0), _auth(1000.0)
    assert a != b
    assert _check(v, a, 1000.0) is None and _check(v, b, 1000.0) is None


def test_meshauth_signed_for_b_is_refused_by_c() -> None:
    auth = _auth(1000.0, target="node-b")
    assert _check(ForwardVerifier(KEY, "node-c", 0.0), auth, 1000.0) == "bad signature"
    assert _check(ForwardVerifier(KEY, "node-b", 0.0), auth, 1000.0) is None


def test_meshauth_origin_is_covered() -> None:
    auth = _auth(1000.0, origin="node-a")
    assert _check(ForwardVerifier(KEY, "node-b", 0.0), auth, 1000.0, origin="node-x") == \
        "bad signature"


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda a: a[:-4] + "0000", "bad signature"),
    (lambda a: "", "missing or malformed X-Mesh-Auth"),
    (lambda a: "xx:" + a.split(":", 1)[1], "missing or malformed X-Mesh-Auth"),
    (lambda a: a + "\n", "missing or malformed X-Mesh-Auth"),
    (lambda a: a.split(":", 1)[1], "missing or malformed X-Mesh-Auth"),  # the old format
    (lambda a: "9" * 13 + ":" + a.split(":", 1)[1], "missing or malformed X-Mesh-Auth"),
])
def test_meshauth_rejects_tampering(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    assert _check(ForwardVerifier(KEY, "node-b", 0.0), mutate(_auth(1000.0)), 1000.0) == reason


def test_meshauth_rejects_other_body_path_id_key_and_stale() -> None:
    auth = _auth(1000.0)
    v = ForwardVerifier(KEY, "node-b", 0.0)
    assert _check(v, auth, 1000, body=b"{ }") == "bad signature"
    assert _check(v, auth, 1000, path="/v1/y") == "bad signature"
    assert _check(v, auth, 1000, rid="r2") == "bad signature"
    assert _check(ForwardVerifier(b"z" * 32, "node-b", 0.0), auth, 1000) == "bad signature"
    assert _check(v, auth, 1031) == "stale timestamp"
    assert _check(v, auth, 969) == "stale timestamp"


def test_meshauth_cache_full_refuses_with_503_and_never_forgets() -> None:
    v = ForwardVerifier(KEY, "node-b", 0.0)
    first = _auth(1000.0)
    assert _check(v, first, 1000.0) is None
    for i in range(REPLAY_CACHE_MAX - 1):  # fill the shipped cap (as many fresh forwards would)
        assert v.cache.add(i.to_bytes(12, "big"), 1000, 1000.0) == "fresh"
    assert v.check(_auth(1000.0), "origin", "r1", "POST", "/v1/x", b"{}", 1000.0) == \
        Refused("replay cache full", 503)
    assert _check(v, first, 1029.0) == "replayed request"  # still remembered at the cap
    assert _check(v, first, 1031.0) == "stale timestamp"
    assert _check(v, _auth(1031.0), 1031.0) is None  # the 1000 bucket expired: room again
    assert len(v.cache) == 1


def test_replay_cache_sustains_a_high_rate_without_dropping_live_entries() -> None:
    """2,000 forwards/s for 120 s (the old 4,096-entry cache forgot live ones above ~136/s):
    every nonce stays a replay until its signature is stale, and memory stays at rate x window."""
    window, rate = 30.0, 2000
    cache = ReplayCache(window)
    peak = 0
    for second in range(120):
        now = 1_000_000.0 + second
        for i in range(rate):
            assert cache.add(f"{second}:{i}".encode(), int(now), now) == "fresh"
        peak = max(peak, len(cache))
        # a nonce from `window` seconds ago is still remembered
        if second >= window:
            old = int(now - window)
            assert cache.add(f"{old - 1_000_000}:7".encode(), old, now) == "replay"
    assert peak <= rate * (window + 1)
    assert cache.buckets <= window + 1


def test_replay_cache_edges_of_the_window() -> None:
    cache = ReplayCache(30.0)
    assert cache.add(b"a", 1000, 1000.0) == "fresh"
    assert cache.add(b"a", 1000, 1030.0) == "replay"  # exactly window old: still fresh-able
    assert cache.add(b"a", 1000, 1030.5) == "stale"
    assert len(cache) == 0 and cache.buckets == 0
    assert cache.add(b"f", 1060, 1030.5) == "fresh"  # window ahead (clock skew)
    assert cache.add(b"g", 1061, 1030.5) == "stale"


def test_replay_cache_wall_clock_step_back_keeps_refusing_forgotten_seconds() -> None:
    cache = ReplayCache(30.0)
    assert cache.add(b"a", 1000, 1000.0) == "fresh"
    assert cache.add(b"b", 1100, 1100.0) == "fresh"  # the 1000 bucket is gone
    # the clock steps back 95 s: a replay of the forgotten "a" is not accepted again
    assert cache.add(b"a", 1000, 1005.0) == "stale"


def test_meshauth_refuses_signatures_from_before_this_node_started() -> None:
    """A forward captured before a restart, replayed within its 30 s to the restarted node
    (whose replay cache is empty): refused with 503, which the origin retries."""
    captured = _auth(1000.0)
    restarted = ForwardVerifier(KEY, "node-b", 1010.0)
    assert restarted.check(captured, "origin", "r1", "POST", "/v1/x", b"{}", 1012.0) == \
        Refused("signed before this node started", 503)
    assert _check(restarted, _auth(1009.0), 1012.0) is None  # within the 1 s of truncation
