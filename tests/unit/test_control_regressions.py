"""Regressions of the control-loop review (issue 11): each failed on the code before the fix.

- a gossiped record with `inf` in an integer field crashed the election task (OverflowError);
- an incarnation of 2^64-1 made the node refute with 2^64, which msgpack cannot encode;
- a suspect about a member this node had reclaimed brought the dead host back;
- a second change of a big (digest-only) record 0.5 s after the first reached peers after
  11-39 s: the throttled fetch was never retried;
- volatile load rode in the versioned record, so every request count change made peers pull
  the whole record over TCP.
(The join steal and the llama.cpp build mismatch have theirs in test_election_service.py and
test_planner.py.)
"""

from __future__ import annotations

import os
import random

import msgpack
import pytest

from mesh_node.gossip.effects import MemberInfo
from mesh_node.gossip.fakelan import FakeLan, sim_addr
from mesh_node.gossip.members import Update
from mesh_node.gossip.swim import Swim
from mesh_node.gossip.wire import (
    INLINE_STATE_MAX,
    MAX_COUNTER,
    NONCE_LEN,
    Gossip,
    WireError,
    decode,
    encode,
    open_,
    seal,
)
from mesh_node.node.view import MeshView
from mesh_node.records import NodeState
from mesh_node.records_wire import RecordError, decode_state, encode_state
from mesh_node.security import derive_keys

KEYS = derive_keys(None, "default")  # make run's default: no secret, anyone can seal


def _record(**over: object) -> bytes:
    base = NodeState("peer", "peer", "10.0.0.2", 9337, 9338, 1 << 30, 1 << 30).to_wire()
    base.update(over)
    return msgpack.packb(base, use_bin_type=True)


@pytest.mark.parametrize("field,value", [
    ("mo", float("inf")), ("mf", float("nan")), ("ap", 70000), ("mo", -1), ("mo", 2**64 - 1),
    ("sv", [{"m": "x", "r": "host", "w": [["a", float("inf")]]}]), ("sv", [{"m": "x", "r": "boss"}]),
    ("n", "x" * 10_000), ("cat", [{"i": "m"}] * 2), ("hr", 0.5), ("far", ["a"] * 1000),
])
def test_hostile_state_record_is_dropped_and_counted_never_raised(field: str, value: object
                                                                  ) -> None:
    raw = _record(**{field: value})
    with pytest.raises(RecordError):
        decode_state(raw)
    view = MeshView(lambda: [MemberInfo("peer", "alive", 0, "10.0.0.2", 9338, raw, 1)])
    (member,) = view.members()
    assert member.state is None  # dropped: never planned on, never routed to
    assert view.dropped["state"] == 1
    assert view.live() == []


def test_state_record_naming_another_node_is_dropped() -> None:
    view = MeshView(lambda: [MemberInfo("peer", "alive", 0, "10.0.0.2", 9338,
                                        _record(id="victim"), 1)])
    assert view.members()[0].state is None and view.dropped["state"] == 1


def test_valid_record_round_trips_through_the_seam() -> None:
    st = NodeState("peer", "peer", "10.0.0.2", 9337, 9338, 1 << 30, 1 << 29, far=("x",))
    assert decode_state(encode_state(st)) == st


def test_incarnation_past_the_wire_bound_is_malformed() -> None:
    body = encode(Gossip("x", (Update("me", "suspect", MAX_COUNTER, "10.0.0.1", 1),)))
    assert decode(body).updates[0].incarnation == MAX_COUNTER
    huge = msgpack.packb([4, "x", [["me", 1, 2**64 - 1, "10.0.0.1", 1, 0, 0, None, "x", 0, b""]]])
    with pytest.raises(WireError, match="malformed"):
        decode(huge)


def test_suspicion_at_the_bound_is_not_refuted_past_it_and_encoding_never_fails() -> None:
    core = Swim("me", ("10.0.0.1", 1), random.Random(0))
    at_bound = Update("me", "suspect", MAX_COUNTER, "10.0.0.1", 1, origin="x")
    core.on_message(("10.0.0.2", 1), Gossip("x", (at_bound,)), 1.0)
    assert core.inc == MAX_COUNTER  # refuted once, at the bound
    core.on_message(("10.0.0.2", 1), Gossip("x", (at_bound,)), 2.0)
    assert core.inc == MAX_COUNTER and core.counters["incarnation_exhausted"] == 1
    seal(KEYS, core.full_state(), os.urandom(NONCE_LEN), None)  # still encodes
    for effect in core.on_tick(3.0):
        assert effect is not None


def test_suspect_or_dead_news_about_an_unknown_member_is_ignored() -> None:
    core = Swim("me", ("10.0.0.1", 1), random.Random(0))
    for status in ("suspect", "dead"):
        ghost = Update("ghost", status, 3, "10.0.0.9", 1, 3, 7, b"old record", "x")
        core.on_message(("10.0.0.2", 1), Gossip("x", (ghost,)), 1.0)
    assert "ghost" not in core.table and core.counters["ignored_unknown"] == 2
    sealed = seal(KEYS, Gossip("x", (Update("ghost", "suspect", 3, "10.0.0.9", 1),)),
                  os.urandom(NONCE_LEN))
    assert open_(KEYS, sealed).updates[0].node == "ghost"  # any LAN host can send it


def test_reclaimed_dead_member_is_not_brought_back_by_a_lagging_suspicion() -> None:
    lan = FakeLan(seed=2)
    lan.bootstrap(4)
    lan.crash(sim_addr(3))
    lan.run_until(120.0, lambda: all("n3" not in c.table for c in lan.alive_cores()))
    assert all("n3" not in c.table for c in lan.alive_cores())
    lagging = Update("n3", "suspect", 0, *sim_addr(3), 0, 1, b"\x03" * 200, "n9")
    for c in lan.alive_cores():
        c.on_message(sim_addr(9), Gossip("n9", (lagging,)), lan.now)
    assert all("n3" not in c.table for c in lan.alive_cores())


def test_second_change_of_a_big_record_reaches_every_peer_within_seconds() -> None:
    lan = FakeLan(seed=5)
    cores = lan.bootstrap(5)
    lan.run_until(20.0)
    big = cores[0]
    first = os.urandom(INLINE_STATE_MAX + 300)  # a digest: fetched over TCP
    second = os.urandom(INLINE_STATE_MAX + 300)
    big.set_local_state(first)
    lan.run_until(lan.now + 0.5)
    big.set_local_state(second)
    t0 = lan.now
    assert lan.run_until(t0 + 10.0, lambda: all(
        c.members()[0].state == second for c in lan.alive_cores()))
    took = lan.now - t0
    print(f"\nsecond change of a {len(second)}-byte record in every view after {took:.2f} s")
    assert took < 5.0  # was 11-39 s: the throttled fetch was never retried


def test_load_travels_unversioned_and_never_triggers_a_state_fetch() -> None:
    lan = FakeLan(seed=6)
    cores = lan.bootstrap(4, state_size=INLINE_STATE_MAX + 200)  # records are digests
    lan.run_until(20.0)
    syncs = lan.stats.syncs
    version = cores[0].version
    for i in range(20):  # a busy node: its load changes every 0.5 s
        cores[0].set_local_load(msgpack.packb({"if": i}))
        lan._reschedule(cores[0].addr)
        lan.run_until(lan.now + 0.5)
    assert cores[0].version == version  # the state record did not move
    assert all(c.members()[0].load == msgpack.packb({"if": 19}) for c in lan.alive_cores())
    assert lan.stats.syncs - syncs <= 2  # only the periodic push-pull rounds, no fetches
