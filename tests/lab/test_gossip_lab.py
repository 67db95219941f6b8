"""Real `mesh-node run` processes in namespaces: discovery + authenticated SWIM membership.

Two labs of 4 hosts, each started once per module (a node takes ~10 s to start on 2 shared
cores): an mDNS mesh (form, join, crash, leave) and a static-peers mesh with mDNS off (form,
reject a wrong secret). The tests of a lab build on one another in file order, but each one
starts whatever nodes it needs, so any of them also runs alone. Shipped default timings.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lab_configs import LAB_WRONG_SECRET, lab_node_env, lab_node_toml, lab_peer
from netlab import Lab, NodeProc

from tests.support.gossiplab_observe import (
    count_events,
    counter,
    first_event_at,
    member_states,
    own_id,
    sees_alive_with_record,
)

pytestmark = pytest.mark.lab

GLAB_START_TIMEOUT = 60.0  # process start to API up: imports + zeroconf on 2 loaded cores
GLAB_CONVERGE_TIMEOUT = 30.0  # once up: mDNS answers in ~1 s, push-pull joins at once
GLAB_DEAD_TIMEOUT = 25.0  # below dead_reclaim (30 s), after which a dead member is dropped
GLAB_WRONG_SECRET_WATCH = 8.0


class GlabMesh:
    """The mesh-node processes of one lab, started on demand (host k runs node "hk")."""

    def __init__(self, lab: Lab, *, mdns: bool, ring_peers: bool) -> None:
        self.lab, self.mdns, self.ring_peers = lab, mdns, ring_peers
        self.nodes: dict[int, NodeProc] = {}
        self.ids: dict[int, str] = {}
        self.env = lab_node_env(lab.workdir)

    def _peers(self, k: int) -> list[str]:
        # a ring (h1 -> h2 -> h3 -> h1): full membership must come from gossip, not the list
        if not self.ring_peers:
            return []
        return [lab_peer(self.lab.host(k % 3 + 1).addr)]

    def start(self, k: int, **toml_kw: Any) -> NodeProc:
        """Start node hk (never twice); its id is known once its API answers (`wait_up`)."""
        assert k not in self.nodes, f"h{k} was started already"
        kw: dict[str, Any] = {"mdns": self.mdns, "peers": self._peers(k), **toml_kw}
        toml = lab_node_toml(f"h{k}", self.lab.workdir / f"data-h{k}", **kw)
        self.nodes[k] = self.lab.host(k).start_node(toml, env=self.env)
        return self.nodes[k]

    def ensure(self, *ks: int) -> list[NodeProc]:
        """Nodes hk for each k, starting the ones never started (all at once), API up."""
        for k in ks:
            if k not in self.nodes:
                self.start(k)
        for k in ks:
            self.wait_up(k)
        return [self.nodes[k] for k in ks]

    def wait_up(self, k: int) -> str:
        """Wait for node hk's API; its node id."""
        if k not in self.ids:
            st = self.nodes[k].wait_for(lambda st: "node" in st, GLAB_START_TIMEOUT)
            self.ids[k] = own_id(st)
        return self.ids[k]

    def running(self) -> dict[int, NodeProc]:
        return {k: n for k, n in self.nodes.items() if n.proc.poll() is None}


def glab_wait_all(nodes: dict[int, NodeProc], pred: Callable[[dict[str, Any]], bool],
                  timeout: float) -> float:
    """Wait until `pred` holds in every node's view (one shared deadline); seconds taken."""
    t0 = time.monotonic()
    for n in nodes.values():
        n.wait_for(pred, max(0.5, t0 + timeout - time.monotonic()))
    return time.monotonic() - t0


def glab_converged(mesh: GlabMesh, ks: list[int]) -> float:
    """Every running node sees exactly the ids of `ks` alive (with records); seconds taken."""
    ids = [mesh.wait_up(k) for k in ks]
    return glab_wait_all(mesh.running(), lambda st: sees_alive_with_record(st, ids),
                         GLAB_CONVERGE_TIMEOUT)


@pytest.fixture(scope="module")
def glab_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Lab]]:
    """Labs for this module; closed (processes killed, namespaces deleted) at module end."""
    labs: list[Lab] = []

    def make(n: int) -> Lab:
        labs.append(Lab(n, workdir=tmp_path_factory.mktemp("glab")))
        return labs[-1]

    yield make
    for lab in labs:
        lab.close()


@pytest.fixture(scope="module")
def glab_mdns(glab_lab: Callable[..., Lab]) -> GlabMesh:
    return GlabMesh(glab_lab(4), mdns=True, ring_peers=False)


@pytest.fixture(scope="module")
def glab_static(glab_lab: Callable[..., Lab]) -> GlabMesh:
    return GlabMesh(glab_lab(4), mdns=False, ring_peers=True)


# --- mDNS mesh: form, join, crash, leave --------------------------------------------------------
def test_three_nodes_started_together_list_three_alive_members(glab_mdns: GlabMesh) -> None:
    glab_mdns.ensure(1, 2, 3)
    took = glab_converged(glab_mdns, [1, 2, 3])
    ids = {glab_mdns.ids[k] for k in (1, 2, 3)}
    for n in glab_mdns.nodes.values():
        st = n.status()
        assert set(member_states(st)) == ids, st["members"]  # no stranger, nobody twice
        # found by mDNS, not by luck: every node's own browser resolves both others' adverts
        # (a node may be joined by the others' push-pull a moment before its browser resolves)
        n.wait_for(lambda st: counter(st, "mdns_adverts_seen") >= 2, 10.0)
    print(f"\ngossip lab: 3 nodes agree on 3 alive members {took:.2f}s after all APIs were up")


def test_a_fourth_node_joins_every_view(glab_mdns: GlabMesh) -> None:
    glab_mdns.ensure(1, 2, 3)
    glab_converged(glab_mdns, [1, 2, 3])
    glab_mdns.start(4)
    new = glab_mdns.wait_up(4)
    glab_converged(glab_mdns, [1, 2, 3, 4])
    # from its first log line (config loaded, before gossip binds and mDNS announces): the
    # others may find it before its API is up, so node_ready is no reference
    starting = first_event_at(glab_mdns.nodes[4].log_text(), "node_starting")
    joined = [first_event_at(glab_mdns.nodes[k].log_text(), "member_joined", new) for k in (1, 2, 3)]
    assert starting is not None and all(t is not None for t in joined), joined
    join_s = max(t for t in joined if t is not None) - starting
    print(f"\ngossip lab: h4 in every view {join_s:.2f}s after its node_starting")
    assert join_s < 10.0
    for n in glab_mdns.nodes.values():
        assert set(member_states(n.status())) == set(glab_mdns.ids.values())


def test_kill_9_is_seen_as_dead_by_the_others(glab_mdns: GlabMesh) -> None:
    glab_mdns.ensure(1, 2, 3)
    glab_converged(glab_mdns, list(glab_mdns.running()))
    victim = glab_mdns.ids[3]
    t_kill = time.time()
    glab_mdns.lab.kill(3)
    assert glab_mdns.nodes[3].proc.wait(timeout=10) == -signal.SIGKILL
    survivors = glab_mdns.running()
    glab_wait_all(survivors, lambda st: member_states(st).get(victim) == "dead", GLAB_DEAD_TIMEOUT)
    logs = {k: n.log_text() for k, n in survivors.items()}
    dead_at = {k: first_event_at(text, "member_dead", victim, t_kill) for k, text in logs.items()}
    assert all(t is not None for t in dead_at.values()), dead_at
    detect = {k: round(t - t_kill, 2) for k, t in dead_at.items() if t is not None}
    print(f"\ngossip lab: kill -9 of h3 seen dead after {detect} s (per observer)")
    assert max(detect.values()) < 15.0
    for k, text in logs.items():  # nobody else was declared dead on the way
        others = set(glab_mdns.ids.values()) - {victim}
        assert all(first_event_at(text, "member_dead", i, t_kill) is None for i in others), k


def test_sigterm_is_seen_as_left_and_exits_0(glab_mdns: GlabMesh) -> None:
    glab_mdns.ensure(1, 2, 4)
    glab_converged(glab_mdns, [k for k in glab_mdns.running()])
    leaver, node = glab_mdns.ids[4], glab_mdns.nodes[4]
    t_term = time.time()
    assert node.stop(signal.SIGTERM, timeout=15.0) == 0, node.log_tail()
    exited = time.time() - t_term
    survivors = glab_mdns.running()
    assert survivors, "no node left to observe the leave"
    took = glab_wait_all(survivors, lambda st: member_states(st).get(leaver) == "left", 10.0)
    for k, n in survivors.items():
        text = n.log_text()
        assert first_event_at(text, "member_left", leaver, t_term) is not None, k
        assert first_event_at(text, "member_dead", leaver, t_term) is None, k  # graceful
    assert first_event_at(node.log_text(), "member_leaving") is not None
    print(f"\ngossip lab: SIGTERM -> exit 0 in {exited:.2f}s; `left` in every view "
          f"{took:.2f}s later")


# --- static peers, mDNS off: form, keep a wrong secret out ---------------------------------------
def test_static_peers_form_a_mesh_with_mdns_off(glab_static: GlabMesh) -> None:
    glab_static.ensure(1, 2, 3)
    took = glab_converged(glab_static, [1, 2, 3])
    ids = {glab_static.ids[k] for k in (1, 2, 3)}
    for n in glab_static.nodes.values():
        st = n.status()
        assert set(member_states(st)) == ids, st["members"]
        assert "mdns_adverts_seen" not in st["counters"]  # mDNS really is off
        assert first_event_at(n.log_text(), "mdns_started") is None
    print(f"\ngossip lab: static ring of 3 (mDNS off) converged {took:.2f}s after APIs up")


def test_a_wrong_secret_never_becomes_a_member(glab_static: GlabMesh) -> None:
    glab_static.ensure(1, 2, 3)
    glab_converged(glab_static, [1, 2, 3])
    good = {k: glab_static.nodes[k] for k in (1, 2, 3)}
    before = {k: counter(n.status(), "gossip_dropped_auth") for k, n in good.items()}
    peers = [lab_peer(glab_static.lab.host(k).addr) for k in (1, 2, 3)]
    # it knows every address and also browses mDNS: only the secret keeps it out
    intruder = glab_static.start(4, secret=LAB_WRONG_SECRET, peers=peers, mdns=True)
    bad = glab_static.wait_up(4)
    deadline = time.monotonic() + GLAB_WRONG_SECRET_WATCH
    samples = 0
    while time.monotonic() < deadline:
        for k, n in good.items():
            assert bad not in member_states(n.status()), f"h{k} accepted the wrong secret"
        assert set(member_states(intruder.status())) == {bad}, "the intruder learned members"
        samples += 1
        time.sleep(0.5)
    after = {k: counter(n.status(), "gossip_dropped_auth") for k, n in good.items()}
    print(f"\ngossip lab: wrong secret kept out over {GLAB_WRONG_SECRET_WATCH:.0f}s "
          f"({samples} samples); dropped_auth {before} -> {after}")
    assert samples >= 4
    assert all(after[k] > before[k] for k in good), (before, after)
    for n in good.values():
        assert count_events(n.log_text(), ["member_joined"])["member_joined"] == 2

