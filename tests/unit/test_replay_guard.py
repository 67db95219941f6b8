"""Anti-replay of sealed gossip (gossip/replay.py) and acks tied to the probed target."""

from __future__ import annotations

import os
import random

import trio

from mesh_node.gossip.members import Update
from mesh_node.gossip.replay import FRESH_S, WINDOW, ReplayGuard
from mesh_node.gossip.shell import GossipService
from mesh_node.gossip.swim import Swim
from mesh_node.gossip.wire import NONCE_LEN, Ack, Envelope, Gossip, open_env, seal
from mesh_node.security import derive_keys

NOW = 1_800_000_000.0


def env(counter: int, epoch: int = 5, at: float = NOW) -> Envelope:
    return Envelope(epoch, counter, int(at))


def test_window_accepts_reordering_and_drops_every_replay() -> None:
    g = ReplayGuard()
    order = list(range(1, 200))
    random.Random(1).shuffle(order[:WINDOW // 2])  # mild reordering inside the window
    for c in order:
        assert g.check("udp", "a", env(c), NOW) is None
    for c in order[-WINDOW:]:
        assert g.check("udp", "a", env(c), NOW) == "replay"
    assert g.check("udp", "a", env(1), NOW) == "behind window"
    assert g.check("tcp", "a", env(1), NOW) is None  # channels have windows of their own


def test_old_epoch_and_stale_captures_are_dropped() -> None:
    g = ReplayGuard()
    assert g.check("udp", "a", env(1, epoch=5), NOW) is None
    assert g.check("udp", "a", env(1, epoch=9), NOW) is None  # the sender restarted
    assert g.check("udp", "a", env(500, epoch=5), NOW) == "old epoch"  # its earlier life
    fresh = ReplayGuard()  # a receiver that restarted and forgot every window
    assert fresh.check("udp", "a", env(7, at=NOW - FRESH_S - 1), NOW) == "stale"
    assert fresh.check("udp", "a", env(7, at=NOW + FRESH_S + 1), NOW) == "stale"


def test_memory_is_bounded_by_senders() -> None:
    g = ReplayGuard(max_senders=100)
    for i in range(10_000):
        g.check("udp", f"s{i}", env(1), NOW)
    assert len(g) == 100


def test_ack_from_someone_not_asked_does_not_answer_a_probe() -> None:
    core = Swim("me", ("10.0.0.1", 1), random.Random(0))
    core.on_message(("10.0.0.2", 1), Gossip("b", (Update("b", "alive", 0, "10.0.0.2", 1),)), 0.0)
    out = core.on_tick(0.0)
    probe = core._probe
    assert probe is not None and probe.target == "b" and out
    core.on_message(("10.0.0.9", 1), Ack(probe.seq, "mallory"), 0.1)
    assert core._probe is probe and core.counters["ack_misattributed"] == 1
    core.on_message(("10.0.0.2", 1), Ack(probe.seq, "b"), 0.2)
    assert core._probe is None  # the target's own ack does


def test_sequence_numbers_do_not_restart_at_zero() -> None:
    a, b = (Swim("me", ("10.0.0.1", 1), random.Random(s)) for s in (1, 2))
    assert a._seq != b._seq and a._seq > 0


async def test_shell_drops_a_replayed_datagram_and_a_restarted_sender_gets_through() -> None:
    keys = derive_keys("s", "m")
    svc = GossipService("me", "127.0.0.1", 0, ("127.0.0.1", 0), keys)
    async with trio.open_nursery() as n:
        host, port = await n.start(svc.run)
        sender = GossipService("peer", "127.0.0.1", 0, ("127.0.0.1", 0), keys)
        data = sender.seal_message(Gossip("peer", (Update("peer", "alive", 0, "127.0.0.1", 9),)),
                                   1200)
        assert open_env(keys, data)[0].counter == 1
        with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as s:
            for _ in range(3):
                await s.sendto(data, (host, port))
            again = GossipService("peer", "127.0.0.1", 0, ("127.0.0.1", 0), keys)
            again._epoch = sender._epoch + 1  # its next life
            await s.sendto(again.seal_message(Gossip("peer"), 1200), (host, port))
            old = seal(keys, Gossip("peer"), os.urandom(NONCE_LEN))  # no envelope: sent in 1970
            await s.sendto(old, (host, port))
            with trio.fail_after(5):
                while svc.stats["recv_packets"] < 5:  # noqa: ASYNC110 (a counter, no event)
                    await trio.sleep(0.01)
        assert svc.stats["dropped_replay"] == 3  # two copies and the stale one
        assert "peer" in {m.node for m in svc.members()}
        n.cancel_scope.cancel()
