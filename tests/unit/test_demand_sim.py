"""Demand-driven placement, closed loop on the fake LAN (mesh_node/testing/loopsim.py): real
gossip core, view, planner and role diff; client requests through the real DemandBook.

- one node, five models, memory for two: a round-robin of requests is served one after the
  other, never more than two hosts (and never more memory than offered, the sim checks every
  slice, with a stopped backend holding its memory for a while);
- every node computes the same plan from demand entering through different nodes;
- a sustained queue adds a replica on another holder, and the replica leaves after the load
  falls, without flapping.
"""

from __future__ import annotations

from mesh_node.testing.loopsim import LoopSim, model

FIVE = [model(f"m{j}", 100) for j in range(1, 6)]
TWO_MIB = 230  # two 100 MiB models at headroom 1.1, not three


def _served_within(sim: LoopSim, node: int, model_id: str, limit: float) -> float | None:
    """Run until n{node} routes to a ready host of model_id; seconds it took, None if never."""
    start = sim.lan.now
    while sim.lan.now - start < limit:
        sim.run_until(sim.lan.now + 0.1)
        n = sim.nodes[f"n{node}"]
        mp = n.placement.for_model(model_id)
        if mp is None or not mp.hosts:
            continue
        host = sim.nodes[mp.hosts[0]]
        child = host.hosts.get(model_id)
        if child is not None and sim.lan.now >= child.ready_at:
            return sim.lan.now - start
    return None


def test_round_robin_five_models_memory_for_two() -> None:
    for seed in range(4):
        sim = LoopSim(seed, stop_s=1.0)
        sim.add(0, TWO_MIB, FIVE, preload=False)
        sim.run_until(5.0)
        assert all(not n.hosts for n in sim.running())  # found, not loaded
        max_hosts = 0
        for i in range(10):
            mid = FIVE[i % 5].id
            sim.request(0, mid, seconds=30.0)  # open until answered (we end it below)
            took = _served_within(sim, 0, mid, 60.0)
            assert took is not None, f"seed {seed}: {mid} never loaded"
            node = sim.nodes["n0"]
            node.requests = [(sim.lan.now, m) for _, m in node.requests]  # answered now
            sim.run_until(sim.lan.now + 0.5)
            max_hosts = max(max_hosts, len(node.hosts) + len(node.stopping))
        assert max_hosts <= 2
        assert not sim.rec.violations, sim.rec.violations
        evicted = [m for _, _, m in sim.rec.stops]
        assert len(evicted) >= 8  # each new model evicted the least recently used one


def test_demand_merges_the_same_on_every_node() -> None:
    sim = LoopSim(7)
    models = [model("a", 100), model("b", 100), model("c", 100)]
    for i in range(3):
        sim.add(i, TWO_MIB, models, seeds=[0] if i else [], preload=False)
    sim.run_until(10.0)
    sim.request(0, "a", 5.0)
    sim.request(1, "b", 5.0)
    sim.request(2, "c", 5.0)
    sim.run_until(25.0)
    assert sim.agreed() is not None
    agreed = {m[0]: m for m in sim.agreed() or ()}
    assert all(agreed[m][2] for m in ("a", "b", "c"))  # each placed, same everywhere
    assert not sim.rec.violations


def test_replicas_follow_a_sustained_queue_without_flapping() -> None:
    sim = LoopSim(11)
    one = [model("m", 100)]
    for i in range(3):
        sim.add(i, 150, one, seeds=[0] if i else [], preload=False)
    sim.run_until(10.0)
    sim.request(0, "m", 2.0)
    sim.run_until(20.0)
    assert len(sim.nodes["n0"].placement.for_model("m").hosts) == 1  # type: ignore[union-attr]
    burst_start = sim.lan.now
    while sim.lan.now < burst_start + 30.0:  # 12 requests open at any time for 30 s
        for node in (0, 1):
            while sum(1 for r in sim.nodes[f"n{node}"].requests) < 6:
                sim.request(node, "m", 3.0)
        sim.run_until(sim.lan.now + 0.5)
    hosts = sim.nodes["n2"].placement.for_model("m").hosts  # type: ignore[union-attr]
    assert len(hosts) >= 2, "no replica under a sustained queue"
    changes_before = len(sim.rec.placements)
    sim.run_until(sim.lan.now + 240.0)  # quiet: the load falls, the replicas leave
    assert len(sim.nodes["n2"].placement.for_model("m").hosts) == 1  # type: ignore[union-attr]
    assert sim.agreed() is not None
    # up by at most two, down by at most two, once each, on each of 3 nodes: no flapping
    assert len(sim.rec.placements) - changes_before <= 3 * 3
    assert not sim.rec.violations
