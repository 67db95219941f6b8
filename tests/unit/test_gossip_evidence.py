"""LAN evidence in the SWIM core (issue 16): a refused connect / ICMP port-unreachable shortens a
suspicion that a missed ack started; it never kills a member that acks, and a claim that does
not come from this node's own sockets is no evidence at all."""

from __future__ import annotations

import random
import statistics

import pytest

from mesh_node.gossip.effects import MemberChanged, TcpProbe
from mesh_node.gossip.fakelan import FakeLan, LinkModel, sim_addr, views_agree
from mesh_node.gossip.members import Update
from mesh_node.gossip.suspicion import Suspicion
from mesh_node.gossip.swim import Swim
from mesh_node.gossip.wire import Ack, Gossip
from mesh_node.timing import DEFAULT_TIMINGS

T = DEFAULT_TIMINGS


def _detect(n: int, seed: int, refuses: bool) -> float:
    """Seconds from the crash of n1 to `dead` in every other view."""
    lan = FakeLan(seed=seed)
    lan.bootstrap(n)
    lan.run_until(5.0)
    lan.crash(sim_addr(1), refuses=refuses)
    t0 = lan.now
    assert lan.run_until(t0 + 60, lambda: views_agree(lan.alive_cores(), "n1", "dead"))
    assert not [e for _, _, e in lan.logs if e.event == "member_dead" and e.fields["peer"] != "n1"]
    return lan.now - t0


@pytest.mark.parametrize("n", [3, 5])
def test_evidence_refused_crash_is_dead_sooner_than_a_silent_one(n: int) -> None:
    refused = [_detect(n, seed, True) for seed in range(12)]
    silent = [_detect(n, seed, False) for seed in range(12)]
    # refused: first probe (<= N-1 intervals, any of N-1 probers) + probe_timeout + the cap
    assert max(refused) <= (n - 1) * T.probe_interval + T.probe_timeout \
        + T.suspicion_evidence + 0.5, refused
    # silent: nothing changed: Lifeguard's minimum (4 s below 10 nodes) still applies
    assert min(silent) >= 4.0, silent
    assert statistics.median(refused) + 2.5 < statistics.median(silent), (refused, silent)


def test_evidence_fallback_tcp_probe_goes_out_when_the_ack_is_late() -> None:
    core = Swim("me", ("10.0.0.1", 1), random.Random(0))
    core.adopt([Update("x", "alive", 0, "10.0.0.2", 1)], 0.0)
    out = core.on_tick(0.0)  # the probe of x
    assert not [e for e in out if isinstance(e, TcpProbe)]
    out = core.on_tick(T.probe_timeout)
    assert TcpProbe(("10.0.0.2", 1)) in out  # memberlist's fallback ping


def test_evidence_about_a_member_that_acks_is_harmless() -> None:
    """A forged refusal (a stranger's RST or ICMP) about a live member: probed out of turn, it
    acks, nothing is suspected."""
    core = Swim("me", ("10.0.0.1", 1), random.Random(0))
    core.adopt([Update("x", "alive", 0, "10.0.0.2", 1), Update("y", "alive", 0, "10.0.0.3", 1)],
               0.0)
    core.on_tick(0.0)
    first = core._probe
    assert first is not None
    core.on_message(first.addr, Ack(first.seq, first.target), 0.01)  # first probe answered
    other = "y" if first.target == "x" else "x"
    core.evidence_of(other, 0.2)
    assert core._urgent == other
    core.on_tick(T.probe_interval)
    p = core._probe
    assert p is not None and p.target == other  # out of turn: the next probe
    core.on_message(p.addr, Ack(p.seq, other), T.probe_interval + 0.001)
    for t in range(2, 30):
        core.on_tick(float(t))
        q = core._probe
        if q is not None:
            core.on_message(q.addr, Ack(q.seq, q.target), t + 0.001)
    assert core.table[other].status == "alive" and not core._susp


def test_evidence_without_a_missed_ack_starts_no_suspicion() -> None:
    core = Swim("me", ("10.0.0.1", 1), random.Random(0))
    core.adopt([Update("x", "alive", 0, "10.0.0.2", 1)], 0.0)
    core.on_tick(0.0)
    p = core._probe
    assert p is not None
    core.evidence_at(p.addr, 0.1)  # before the ack deadline: noted, not acted on
    core.on_message(p.addr, Ack(p.seq, "x"), 0.2)
    core.on_tick(T.probe_timeout + 0.01)
    assert core.table["x"].status == "alive"


def test_evidence_from_others_is_not_local_evidence() -> None:
    """Another member's suspicion (authenticated gossip) is a Lifeguard confirmation, never the
    evidence cap: at N = 3 the timeout stays at the 4 s minimum."""
    core = Swim("me", ("10.0.0.1", 1), random.Random(0))
    core.adopt([Update("x", "alive", 0, "10.0.0.2", 1), Update("y", "alive", 0, "10.0.0.3", 1)],
               0.0)
    core.on_message(("10.0.0.3", 1), Gossip("y", (Update("x", "suspect", 0, "10.0.0.2", 1,
                                                         origin="y"),)), 1.0)
    s = core._susp["x"]
    assert s.cap is None and s.deadline() == pytest.approx(1.0 + 4.0)
    core.evidence_of("x", 1.5)  # our own refused connect: capped at suspicion_evidence
    assert s.cap == T.suspicion_evidence and s.deadline() == pytest.approx(1.0 + 1.0)


def test_evidence_never_kills_a_member_that_refutes() -> None:
    """Even with evidence (forged) about a suspect that is alive, the suspect hears the
    suspicion and refutes inside the capped window: SWIM's timer stays the authority."""
    lan = FakeLan(seed=5)
    cores = lan.bootstrap(3)
    lan.run_until(3.0)
    victim = cores[1]
    a = cores[0]
    lan._handle(a.addr, a._apply(Update("n1", "suspect", victim.inc, *victim.addr, origin="n0"),
                                 lan.now))
    lan._handle(a.addr, a.evidence_of("n1", lan.now))
    lan._reschedule(a.addr)
    lan.run_until(lan.now + 10)
    assert not [e for _, _, e in lan.logs if e.event == "member_dead"]
    assert victim.inc >= 1 and a.table["n1"].status == "alive"


def test_evidence_suspicion_cap_keeps_lifeguard_order() -> None:
    s = Suspicion(10.0, 0, 2, 4.0, 24.0, {"a"})
    assert s.deadline() == pytest.approx(34.0)
    assert s.evidence(1.0) and not s.evidence(1.0)
    assert s.deadline() == pytest.approx(11.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_evidence_no_false_deaths_at_20_percent_loss(seed: int) -> None:
    """No process crashed, so no evidence exists: 600 simulated seconds of 5 nodes at 20 % loss
    (the lab soak's mesh). At N = 3 the sim shows rare false deaths with and without this
    change alike (one relay for the indirect probe): evidence never makes them more."""
    lan = FakeLan(seed=seed, link=LinkModel(drop=0.2, jitter=0.002))
    lan.bootstrap(5)
    lan.run_until(600.0)
    deaths = [e for _, _, e in lan.logs if e.event == "member_dead"]
    suspicions = [e for _, _, e in lan.logs if e.event == "member_suspected"]
    assert len(suspicions) > 100, "the soak must stress the detector"
    assert not deaths, deaths
    assert all(c.counters["evidence"] == 0 for c in lan.alive_cores())


def _unacked_probe(core: Swim) -> None:
    core.adopt([Update("x", "alive", 0, "10.0.0.2", 1)], 0.0)
    core.on_tick(0.0)  # ping x; no ack comes
    core.on_tick(T.probe_timeout)  # ping-req (no relays here) + the fallback TCP probe


def test_a_failed_tcp_probe_backs_the_suspicion_it_came_with() -> None:
    """Timed out before the interval ends, or after: the suspicion is backed either way, and the
    change is news (MemberChanged); the timer is the plain one (no evidence cap)."""
    for tcp_at in (0.9 * T.probe_interval, 1.1 * T.probe_interval):
        core = Swim("me", ("10.0.0.1", 1), random.Random(0))
        _unacked_probe(core)
        if tcp_at < T.probe_interval:
            assert not core.tcp_probe_failed(("10.0.0.2", 1), tcp_at)  # nothing to back yet
        core.on_tick(T.probe_interval)
        assert core.table["x"].status == "suspect"
        if tcp_at > T.probe_interval:
            assert not core._info("x").backed
            out = core.tcp_probe_failed(("10.0.0.2", 1), tcp_at)
            assert [e for e in out if isinstance(e, MemberChanged) and e.member.backed]
        assert core._info("x").backed
        assert core._susp["x"].cap is None


def test_a_suspicion_without_a_failed_tcp_probe_is_not_backed() -> None:
    """Lost datagrams alone (the TCP connect succeeded, or the news came from a peer)."""
    core = Swim("me", ("10.0.0.1", 1), random.Random(0))
    _unacked_probe(core)
    core.on_tick(T.probe_interval)
    assert core.table["x"].status == "suspect" and not core._info("x").backed
    heard = Swim("me", ("10.0.0.1", 1), random.Random(0))
    heard.adopt([Update("x", "alive", 0, "10.0.0.2", 1), Update("y", "alive", 0, "10.0.0.3", 1)],
                0.0)
    out = heard.on_message(("10.0.0.3", 1), Gossip("y", (Update("x", "suspect", 0, "10.0.0.2",
                                                                1, origin="y"),)), 0.1)
    assert heard.table["x"].status == "suspect" and not heard._info("x").backed
    # heard from a peer: checked with our own short TCP connect, which backs it if it fails
    assert TcpProbe(("10.0.0.2", 1), T.tcp_check_timeout) in out
    heard.tcp_probe_failed(("10.0.0.2", 1), 0.1 + T.tcp_check_timeout)
    assert heard._info("x").backed


def test_a_silent_crash_is_backed_on_the_fake_lan_and_loss_alone_is_not() -> None:
    lan = FakeLan(seed=4, link=LinkModel(drop=0.2))
    lan.bootstrap(4)
    lan.run_until(60.0)
    assert not [e for _, _, e in lan.logs if e.event == "suspicion_backed"]  # loss alone
    lan.crash(sim_addr(1))
    lan.run_until(70.0)
    assert [e for _, _, e in lan.logs if e.event == "suspicion_backed"
            and e.fields["peer"] == "n1"]
