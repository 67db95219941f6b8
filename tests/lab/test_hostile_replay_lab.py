"""Hostile LAN, replays and idle connections: two real nodes with a mesh secret (h1, h2), the
rogue on h3, a joining node on h4.

1. The rogue runs a genuine member for a few seconds and records every sealed datagram and
   push-pull frame it sent and received, then crashes. h1 is killed and started again (same
   data dir, same id). Once the capture is older than `gossip_freshness` (30 s) every datagram
   and frame goes to both nodes: nothing changes (the dead member never comes back, placement
   and members stay as they were) and each one is counted in `gossip_dropped_replay`.
   `make test` replays as soon as the capture is stale (the dead record still held by h2);
   MESH_NODE_LAB_FULL=1 also waits until h2 has dropped it (`dead_reclaim`, 60 s), when
   nothing but freshness stands between the replay and a revival. Both variants assert the same.
2. 1,000 idle TCP connections from the rogue to h1's gossip port (re-opened whenever h1 closes
   them) while a new node whose only peer is h1 (mDNS off) joins: it is a member in h1's and
   h2's views within JOIN_BOUND_S.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lab_configs import LAB_MESH, LAB_SECRET, lab_node_env, lab_node_toml, lab_peer
from netlab import Lab, wait_until
from test_hostile_lab import HLAB_ROGUE_SCRIPT, HLAB_START_TIMEOUT, HlabMesh, hlab_delta

from mesh_node.timing import DEFAULT_TIMINGS
from tests.support.gossiplab_observe import (
    first_event_at,
    member_states,
    own_id,
    sees_alive_with_record,
)

pytestmark = pytest.mark.lab

RP_FULL = os.environ.get("MESH_NODE_LAB_FULL") == "1"
RP_GENUINE = "rogue-replayed"  # the member whose traffic is captured, then replayed
RP_FRESH = DEFAULT_TIMINGS.gossip_freshness
RP_RECLAIM = DEFAULT_TIMINGS.dead_reclaim
RP_DEAD_TIMEOUT = 25.0
RP_WATCH_S = 8.0  # views sampled after the replay, every 0.25 s
RP_REVIVAL_EVENTS = ("member_joined", "member_alive", "member_suspected")
IDLE_CONNECTIONS = 1000
JOIN_BOUND_S = 20.0


@pytest.fixture(scope="module")
def rlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HlabMesh]:
    lab = Lab(4, workdir=tmp_path_factory.mktemp("rlab"))
    try:
        mesh = HlabMesh(lab)
        mesh.start()
        yield mesh
        print(f"\nhostile replay lab figures: {json.dumps(mesh.figures)}")
    finally:
        lab.close()


class GenuineWatch:
    """Samples every node's view of the captured member; any live status is a revival."""

    def __init__(self, mesh: HlabMesh) -> None:
        self.mesh = mesh
        self.views: list[tuple[float, int, str | None]] = []
        self.t0 = time.monotonic()

    def sample(self) -> None:
        for k in self.mesh.nodes:
            try:
                st = self.mesh.status(k)
            except Exception:  # noqa: BLE001 - h1 is down while it restarts
                continue
            self.views.append((round(time.monotonic() - self.t0, 2), k,
                               member_states(st).get(RP_GENUINE)))

    def watch_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            self.sample()
            time.sleep(0.25)

    def revived(self) -> list[tuple[float, int, str | None]]:
        return [v for v in self.views if v[2] in ("alive", "suspect")]

    def since(self, t: float) -> int:
        """Samples taken at or after monotonic time `t`."""
        return sum(1 for v in self.views if v[0] >= t - self.t0)


def _restart(mesh: HlabMesh, k: int) -> float:
    """kill -9 node k and start it again with the same config (same data dir, same id)."""
    old = mesh.nodes[k]
    assert old.stop(signal.SIGKILL) is not None
    t0 = time.monotonic()
    mesh.nodes[k] = mesh.lab.host(k).start_node(old.config_path.read_text(),
                                                env=lab_node_env(mesh.lab.workdir))
    st = mesh.nodes[k].wait_for(lambda st: "node" in st, HLAB_START_TIMEOUT)
    assert own_id(st) == mesh.ids[k], "restarted with another id"
    for j, n in mesh.nodes.items():
        n.wait_for(lambda st, j=j: sees_alive_with_record(st, [mesh.ids[3 - j]]), 30.0)
    return time.monotonic() - t0


def _snapshot(mesh: HlabMesh) -> dict[int, dict[str, Any]]:
    """Per node: the placement and every member but the captured one, with its status."""
    out = {}
    for k in mesh.nodes:
        st = mesh.status(k)
        out[k] = {"placement": st["placement"],
                  "members": {i: s for i, s in member_states(st).items() if i != RP_GENUINE}}
    return out


def test_replay_after_restart_and_freshness_changes_nothing(rlab: HlabMesh) -> None:
    h3 = rlab.lab.host(3)
    dgrams, frames = h3.workdir / "replay-dgrams.msgpack", h3.workdir / "replay-frames.msgpack"
    rec = rlab.rogue("record", "--address", h3.addr, "--secret", LAB_SECRET, "--mesh", LAB_MESH,
                     "--seeds", rlab.targets(), "--node-id", RP_GENUINE, "--seconds", "6",
                     "--out", str(dgrams), "--frames-out", str(frames))
    captured_at = time.monotonic()  # the newest message is at most this old
    assert set(rlab.ids.values()) <= set(rec["alive_seen"]), rec
    assert rec["saying_alive"] >= 2 and rec["frames_saying_alive"] >= 1, rec
    watch = GenuineWatch(rlab)
    for n in rlab.nodes.values():  # crashed, no leave
        n.wait_for(lambda st: member_states(st).get(RP_GENUINE) == "dead", RP_DEAD_TIMEOUT)
    dead_s, dead_wall = time.monotonic() - captured_at, time.time()
    logs = [rlab.nodes[1], rlab.nodes[2]]  # the killed h1's log, h2's, then the new h1's
    restart_s = _restart(rlab, 1)
    logs.append(rlab.nodes[1])
    # +2 s: the envelope's send time is in whole seconds
    watch.watch_until(lambda: time.monotonic() - captured_at > RP_FRESH + 2, RP_FRESH + 10,
                      "the capture to go stale")
    if RP_FULL:  # past the tombstone: only freshness is left between a replay and a revival
        watch.watch_until(lambda: all(RP_GENUINE not in member_states(rlab.status(k))
                                      for k in rlab.nodes), RP_RECLAIM + 30, "dead_reclaim")
    before, counters0 = _snapshot(rlab), rlab.counters()
    sent = rlab.rogue("replay-all", "--file", str(dgrams), "--frames", str(frames),
                      "--secret", LAB_SECRET, "--mesh", LAB_MESH, "--targets", rlab.targets())
    replayed_at = time.monotonic()
    watch.watch_until(lambda: time.monotonic() - replayed_at > RP_WATCH_S, RP_WATCH_S + 10,
                      "the watch after the replay")
    after, counters1 = _snapshot(rlab), rlab.counters()
    # between samples too: no node logged the dead member as joined, alive or suspect again
    events = {f"{n.ns[-2:]}:{n.log_path.parent.name}:{ev}": first_event_at(
        n.log_text(), ev, RP_GENUINE, dead_wall) for n in logs for ev in RP_REVIVAL_EVENTS}
    dropped = hlab_delta(counters0, counters1, "gossip_dropped_replay")
    rlab.figures["replay_after_restart"] = {
        "variant": "full" if RP_FULL else "short", "captured": rec, "replayed": sent,
        "dropped_replay": dropped, "dead_after_capture_s": round(dead_s, 1),
        "restart_s": round(restart_s, 1),
        "replayed_after_capture_s": round(replayed_at - captured_at, 1),
        "samples": len(watch.views), "samples_after_replay": watch.since(replayed_at),
        "revived": watch.revived()[:10],
        "placement": {k: v["placement"] for k, v in after.items()}}
    print(f"\nreplay after restart: {json.dumps(rlab.figures['replay_after_restart'])}")
    assert not watch.revived(), watch.revived()
    assert not any(events.values()), events
    assert sent["inauthentic"] == 0 and sent["frames"] >= 2 and sent["datagrams"] >= 4, sent
    assert "answered" not in sent["frame_ended"], sent  # no node took a frame and replied
    assert watch.since(replayed_at) >= 2 * RP_WATCH_S, watch.views  # >= 1 round a second
    assert after == before, (before, after)
    per_node = (sent["datagrams"] + sent["frames"]) // len(rlab.nodes)  # same to each node
    assert all(v >= per_node for v in dropped.values()), (dropped, per_node)
    rlab.assert_healthy()


def test_thousand_idle_connections_do_not_stop_a_join(rlab: HlabMesh) -> None:
    h3, h4 = rlab.lab.host(3), rlab.lab.host(4)
    ready, stop, out = (h3.workdir / f"idle.{x}" for x in ("ready", "stop", "out"))
    before = rlab.counters()
    proc = h3.run([sys.executable, str(HLAB_ROGUE_SCRIPT), "idle", "--targets",
                   lab_peer(rlab.lab.host(1).addr), "--count", str(IDLE_CONNECTIONS),
                   "--seconds", "150", "--ready", str(ready), "--stop", str(stop)],
                  stdout_path=out)
    try:
        wait_until(ready.exists, 60.0, what="the rogue's connections")
        opened = json.loads(ready.read_text())
        t0 = time.monotonic()  # the attack runs from here (opening 1,000 takes ~0.1 s)
        # mDNS off: h4 does not advertise, so no node dials it; its one way in is its own
        # push-pull through h1's inbound door, which the rogue is crowding
        toml = lab_node_toml("h4", rlab.lab.workdir / "data-h4", mdns=False,
                             peers=[lab_peer(rlab.lab.host(1).addr)])
        n4 = h4.start_node(toml, env=lab_node_env(rlab.lab.workdir))
        id4 = own_id(n4.wait_for(lambda st: "node" in st, HLAB_START_TIMEOUT))
        api_s = time.monotonic() - t0
        for k in (1, 2):
            left = max(1.0, JOIN_BOUND_S - (time.monotonic() - t0))
            rlab.nodes[k].wait_for(lambda st: sees_alive_with_record(st, [id4]), left)
        join_s = time.monotonic() - t0
        attack_running = proc.poll() is None
        during = rlab.counters()
        n4.wait_for(lambda st: sees_alive_with_record(st, rlab.ids.values()), 10.0)
    finally:
        stop.touch()
        proc.wait(timeout=30)
    report = json.loads(out.read_text().strip().splitlines()[-1])
    refused = hlab_delta(before, during, "gossip_pushpull_refused")
    failed = hlab_delta(before, during, "gossip_pushpull_failed")
    rlab.figures["idle_connections"] = {
        "opened_first": opened, "rogue": report, "join_s": round(join_s, 1),
        "api_up_s": round(api_s, 1), "pushpull_refused": refused, "pushpull_failed": failed}
    print(f"\nidle connections: {json.dumps(rlab.figures['idle_connections'])}")
    assert opened["opened"] >= IDLE_CONNECTIONS * 0.99, opened
    assert attack_running, report  # the connections were still being held when it joined
    assert join_s <= JOIN_BOUND_S, join_s
    # one inbound push-pull per source address: all but a handful were refused at the door
    assert refused[1] >= IDLE_CONNECTIONS - 50, refused
    # ... and the one it let in held its slot only until the 1 s header timeout: at most one
    # timed-out exchange a second (with no per-address limit the 8 slots fill: 8 a second)
    assert failed[1] <= join_s / DEFAULT_TIMINGS.push_pull_header_timeout + 3, (failed, join_s)
    rlab.assert_healthy()
