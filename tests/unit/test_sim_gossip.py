"""Simulated meshes on the fake LAN: join, crash detection, loss, partitions, bad links."""

from __future__ import annotations

import time

import pytest

from mesh_node.gossip.fakelan import FakeLan, LinkModel, sim_addr, views_agree
from mesh_node.gossip.swim import Swim


def _knows(lan: FakeLan, new: Swim) -> bool:
    """Every running node lists `new` alive with its state record, and `new` knows everyone."""
    cores = lan.alive_cores()
    return len(new.table) == len(cores) and all(
        c.table.get(new.id) is not None and c.table[new.id].status == "alive"
        and c._full.get(new.id) == new.record for c in cores)


def _false_deaths(lan: FakeLan, crashed: set[str]) -> int:
    return sum(1 for _, _, e in lan.logs
               if e.event == "member_dead" and e.fields["peer"] not in crashed)


def _join_and_crash(n: int, seed: int) -> tuple[float, float]:
    lan = FakeLan(seed=seed)
    lan.bootstrap(n)
    lan.run_until(3.0)
    new = lan.add_node(n, seeds=[sim_addr(0)], state=b"new-record" * 30)
    t0 = lan.now
    assert lan.run_until(t0 + 30, lambda: _knows(lan, new)), f"join did not converge (N={n})"
    join_s = lan.now - t0
    lan.crash(sim_addr(1))
    t0 = lan.now
    assert lan.run_until(t0 + 120, lambda: views_agree(lan.alive_cores(), "n1", "dead"))
    assert _false_deaths(lan, {"n1"}) == 0
    return join_s, lan.now - t0


@pytest.mark.parametrize("n", [10, 100])
def test_sim_join_and_crash_detection(n: int) -> None:
    join_s, detect_s = _join_and_crash(n, seed=n)
    assert join_s < 3.0, join_s
    # probe (<= N s of round-robin, but any of N-1 probers) + Lifeguard suspicion min..max
    assert detect_s < (20.0 if n == 10 else 30.0), detect_s


@pytest.mark.slow
def test_sim_join_and_crash_detection_1000() -> None:
    wall = time.monotonic()
    join_s, detect_s = _join_and_crash(1000, seed=7)
    assert join_s < 5.0, join_s
    assert detect_s < 40.0, detect_s  # suspicion min is 12 s at N = 1,000
    assert time.monotonic() - wall < 120


@pytest.mark.parametrize("loss", [0.10, 0.20])
def test_sim_no_false_deaths_under_loss(loss: float) -> None:
    lan = FakeLan(seed=int(loss * 100), link=LinkModel(drop=loss, jitter=0.002))
    lan.bootstrap(10)
    lan.run_until(600.0)
    assert _false_deaths(lan, set()) == 0
    assert all(views_agree(lan.alive_cores(), f"n{i}", "alive") for i in range(10))
    suspected = sum(1 for _, _, e in lan.logs if e.event == "member_suspected")
    assert suspected > 0  # the loss was real enough to raise (and refute) suspicions


def test_sim_partition_heals_into_one_view() -> None:
    lan = FakeLan(seed=3)
    lan.bootstrap(10)
    lan.run_until(2.0)
    side = {sim_addr(i): i < 5 for i in range(10)}
    lan.blocked = lambda a, b: side[a] != side[b]
    lan.run_until(62.0)  # longer than detection + dead_reclaim: each side drops the other
    assert views_agree([c for a, c in lan.nodes.items() if side[a]], "n9", "dead")
    lan.blocked = lambda a, b: False
    healed = lan.run_until(200.0, lambda: all(
        views_agree(lan.alive_cores(), f"n{i}", "alive") for i in range(10)))
    assert healed, {c.id: sorted(c.table) for c in lan.alive_cores()}


def test_sim_bad_links_do_not_diverge() -> None:
    link = LinkModel(drop=0.05, delay=0.002, jitter=0.02, duplicate=0.2, reorder=0.2,
                     reorder_delay=0.1)
    lan = FakeLan(seed=11, link=link, measure_bytes=True)
    cores = lan.bootstrap(12)
    lan.run_until(5.0)
    for i, c in enumerate(cores[:4]):
        c.set_local_state(b"v2-" + bytes([i]) * 100)
    new = lan.add_node(12, seeds=[sim_addr(5)], state=b"late")
    assert lan.run_until(60.0, lambda: _knows(lan, new) and all(
        d._full.get(c.id) == c.record for c in cores for d in lan.alive_cores()))
    assert _false_deaths(lan, set()) == 0
    assert lan.stats.bytes > 0  # every datagram was encoded and checked against 1,200 bytes
