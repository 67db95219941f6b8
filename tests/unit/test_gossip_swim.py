"""Core policies: duplicate ids, refutation, reclaim and rejoin, big records, graceful leave."""

from __future__ import annotations

import random

from mesh_node.gossip.fakelan import FakeLan, sim_addr
from mesh_node.gossip.members import Update
from mesh_node.gossip.swim import Swim
from mesh_node.gossip.wire import INLINE_STATE_MAX, Gossip


def test_gossip_swim_duplicate_node_id_reported_never_two_members() -> None:
    lan = FakeLan(seed=2)
    lan.bootstrap(5)
    lan.run_until(2.0)
    impostor = Swim("n3", ("10.9.9.9", 7946), random.Random(1), lan.t, lan.now)
    lan.nodes[impostor.addr] = impostor
    lan._handle(impostor.addr, impostor.join([sim_addr(0)]))
    lan.run_until(20.0)
    seen = lan.nodes[sim_addr(0)]
    assert seen.counters["duplicate_node_id"] >= 1
    assert seen.table["n3"].addr == sim_addr(3)  # the first address stays
    assert any(e.event == "duplicate_node_id" for _, _, e in lan.logs)
    assert all(sum(1 for m in c.members() if m.node == "n3") == 1 for c in lan.alive_cores())


def test_gossip_swim_refutes_suspicion_and_only_self_raises_incarnation() -> None:
    core = Swim("me", ("10.0.0.1", 1), random.Random(0))
    core.on_message(("10.0.0.2", 1), Gossip("x", (Update("me", "suspect", 0, "10.0.0.1", 1,
                                                         origin="x"),)), 1.0)
    assert core.inc == 1 and core.table["me"].status == "alive"
    stale = Update("me", "dead", 0, "10.0.0.1", 1, origin="x")  # a replayed old death
    core.on_message(("10.0.0.2", 1), Gossip("x", (stale,)), 2.0)
    assert core.inc == 1 and core.counters["refuted"] == 1


def test_gossip_swim_dead_reclaimed_then_rejoin_revives() -> None:
    lan = FakeLan(seed=4)
    lan.bootstrap(6)
    lan.crash(sim_addr(2))
    lan.run_until(90.0, lambda: all("n2" not in c.table for c in lan.alive_cores()))
    assert all("n2" not in c.table for c in lan.alive_cores())  # reclaimed after dead_reclaim
    del lan.nodes[sim_addr(2)]
    lan.crashed.discard(sim_addr(2))
    back = lan.add_node(2, seeds=[sim_addr(0)], state=b"again")
    assert lan.run_until(120.0, lambda: all(
        c.table.get("n2") is not None and c.table["n2"].status == "alive"
        for c in lan.alive_cores()))
    assert back.table["n0"].status == "alive"


def test_gossip_swim_big_record_travels_as_digest_and_is_pulled() -> None:
    lan = FakeLan(seed=6, measure_bytes=True)
    cores = lan.bootstrap(8)
    lan.run_until(3.0)
    big = bytes(range(256)) * (INLINE_STATE_MAX // 256 + 4)
    cores[0].set_local_state(big)
    syncs = lan.stats.syncs
    assert lan.run_until(10.0, lambda: all(c._full.get("n0") == big for c in cores))
    assert lan.stats.syncs > syncs  # fetched over push-pull, not in datagrams


def test_gossip_swim_leave_seen_as_left() -> None:
    lan = FakeLan(seed=8)
    cores = lan.bootstrap(6)
    lan.run_until(2.0)
    lan._handle(cores[4].addr, cores[4].leave(lan.now))
    assert lan.run_until(5.0, lambda: all(c.table["n4"].status == "left" for c in cores[:4]))
