"""The control loop closed on the fake LAN (mesh_node/testing/loopsim.py): the real gossip core,
validating view, planner, role diff and join gate, with fake backends, over seeded loss, joins,
leaves, crashes and partitions. Properties over many seeded runs:

- every running node converges to one placement within CONVERGE_S of the last change;
- the placement is a fixed point of its own effects (quiet: no placement change, no restart);
- no placement change without a membership change (the quiet phase before the first fault);
- a crashed host is never named again by a node after that node declared it dead;
- a join never moves a model off a ready host that still fits it.
Standby starts (election/standby.py: a holder loading a model while its host is suspect) are
counted apart: they are not restarts of a placed role, and their number is printed.

`make test` runs SIM_RUNS runs; LOOP_SIM_RUNS=3000 (make lab) soaks it. The convergence time
distribution is printed as a benchmark figure.
"""

from __future__ import annotations

import os
import random
import statistics
from dataclasses import dataclass, field

import pytest

from mesh_node.gossip.fakelan import LinkModel, sim_addr
from mesh_node.records import ModelSummary
from mesh_node.testing.loopsim import LoopSim, model

SIM_RUNS = int(os.environ.get("LOOP_SIM_RUNS", "240"))
CONVERGE_S = 30.0  # detection (<= 10 s at N < 10) + debounce + load (2 s) + margin
QUIET_S = 20.0  # after convergence, this long with nothing changing
FIRST_FAULT = 20.0


@dataclass
class Run:
    seed: int
    kind: str
    converge_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    standby: int = 0  # standby starts (issue 16): beside the plan, while a host was suspect


def _mesh(rng: random.Random) -> tuple[int, list[ModelSummary], list[tuple[int, list[ModelSummary]]]]:
    models = [model(f"m{j}", rng.choice([200, 400, 700, 1200])) for j in range(rng.randint(1, 3))]
    n = rng.randint(2, 5)
    nodes = []
    for _ in range(n):
        held = [m for m in models if rng.random() < 0.6]
        nodes.append((rng.choice([512, 1024, 2048, 4096]), held))
    if not any(held for _, held in nodes):
        nodes[0] = (nodes[0][0], list(models))
    return n, models, nodes


def _host_of(sim: LoopSim) -> str | None:
    agreed = sim.agreed()
    for m in agreed or ():
        if m[2]:
            return str(m[2][0])
    return None


def _membership_events(sim: LoopSim, since: float) -> int:
    """Deaths, leaves and (re)joins logged since `since` (SWIM can falsely kill under loss;
    the node refutes and rejoins): placement may follow a membership change, only that."""
    kinds = {"member_dead", "member_left", "member_joined"}
    return sum(1 for t, _, e in sim.lan.logs if t >= since - 1.0 and e.event in kinds)


def _one_run(seed: int) -> Run:
    rng = random.Random(seed)
    link = LinkModel(drop=rng.choice([0.0, 0.05, 0.1, 0.2]), jitter=rng.choice([0.0, 0.002]))
    sim = LoopSim(seed, link=link)
    n, models, nodes = _mesh(rng)
    for i, (mem, held) in enumerate(nodes):
        sim.add(i, mem, held, seeds=[0] if i else [])
    kind = rng.choice(["crash_host+join", "crash+join", "join", "leave", "partition", "crash"])
    run = Run(seed, kind)
    sim.run_until(FIRST_FAULT)
    # quiet before any fault: the first plans settled and nothing changes without a cause
    settled = sim.agreed()
    assert settled is not None, f"seed {seed}: no agreement before the first fault"
    before_changes = len(sim.rec.placements)
    sim.run_until(FIRST_FAULT + 5)
    if _membership_events(sim, FIRST_FAULT):  # SWIM can falsely kill under loss: a cause
        run.notes.append("false death under loss")
    else:
        assert len(sim.rec.placements) == before_changes, f"seed {seed}: change with no cause"
    ready_before = {m[0]: m[2] for m in settled}
    last_event = sim.lan.now
    if kind in ("crash_host+join", "crash"):
        host = _host_of(sim)
        sim.crash(int(host[1:]) if host is not None else rng.randrange(n))
    elif kind == "crash+join":
        sim.crash(rng.randrange(n))
    elif kind == "leave":
        sim.leave(rng.randrange(n))
    elif kind == "partition":
        side = {sim_addr(i) for i in range(n) if i % 2 == 0}
        sim.lan.blocked = lambda a, b: (a in side) != (b in side)
        sim.run_until(sim.lan.now + 15)
        sim.lan.blocked = lambda a, b: False
        last_event = sim.lan.now
    if "join" in kind:
        sim.run_until(sim.lan.now + rng.uniform(0, 20))  # the same minute
        alive = [i for i in range(n) if sim_addr(i) not in sim.lan.crashed]
        mem, held = rng.choice([512, 2048, 8192]), [m for m in models if rng.random() < 0.7]
        sim.add(n, mem, held, seeds=[alive[0]] if alive else [])  # a join seeds a survivor
        last_event = sim.lan.now
    sim.run_until(last_event + CONVERGE_S)
    agreed = sim.agreed()
    assert agreed is not None, f"seed {seed} ({kind}): no agreement {CONVERGE_S} s after the " \
                               f"last change: {[(x.id, x.placement) for x in sim.running()]}"
    assert sim.all_ready(), f"seed {seed} ({kind}): roles not all ready"
    run.converge_s = max(0.0, sim.last_change() - last_event)
    run.standby = len(sim.rec.standby_starts)
    starts = len(sim.rec.starts)
    changes = len(sim.rec.placements)
    quiet_from = sim.lan.now
    sim.run_until(sim.lan.now + QUIET_S)
    if _membership_events(sim, quiet_from):
        run.notes.append("false death under loss")  # a membership change: replans allowed
        return run
    assert len(sim.rec.placements) == changes, f"seed {seed} ({kind}): not a fixed point"
    assert len(sim.rec.starts) == starts, f"seed {seed} ({kind}): a backend restarted at rest"
    assert sim.agreed() == agreed
    assert not sim.rec.violations, f"seed {seed} ({kind}): {sim.rec.violations}"
    if kind == "join":  # a join never moves a model off a ready host that still fits it
        after = {m[0]: m[2] for m in agreed}
        for mid, hosts in ready_before.items():
            if hosts:
                assert set(hosts) <= set(after.get(mid, ())), \
                    f"seed {seed}: join moved {mid} off {hosts} to {after.get(mid)}"
    return run


def test_control_loop_closed_properties_over_seeded_runs() -> None:
    runs = [_one_run(seed) for seed in range(SIM_RUNS)]
    times = sorted(r.converge_s for r in runs)
    q = statistics.quantiles(times, n=100) if len(times) > 1 else times * 99
    kinds = {k: sum(1 for r in runs if r.kind == k) for k in sorted({r.kind for r in runs})}
    false_deaths = sum(1 for r in runs if r.notes)
    standby = sum(r.standby for r in runs)
    print(f"\ncontrol loop sim: {len(runs)} runs {kinds}; convergence after the last change: "
          f"p50 {q[49]:.1f} s, p90 {q[89]:.1f} s, p99 {q[98]:.1f} s, max {times[-1]:.1f} s "
          f"(bound {CONVERGE_S:.0f} s); {false_deaths} runs with a false death at rest; "
          f"{standby} standby starts in {sum(1 for r in runs if r.standby)} runs")
    assert times[-1] <= CONVERGE_S
    assert false_deaths <= len(runs) // 20  # SWIM at N <= 6 with up to 20 % loss: rare


@pytest.mark.parametrize("seed", [3, 11])
def test_crash_of_host_and_join_same_minute_serves_from_one_host_without_restarts(
        seed: int) -> None:
    """The issue's 4-node reproduction: crash the host, a node joins; the survivor's plan never
    names the crashed host again and its backend starts once."""
    sim = LoopSim(seed, link=LinkModel(drop=0.05))
    gemma = model("gemma", 300)
    sim.add(0, 2048, [gemma])
    sim.add(1, 2048, [gemma], seeds=[0])
    sim.add(2, 1024, [], seeds=[0])
    sim.add(3, 1024, [], seeds=[1])
    sim.run_until(20)
    assert sim.agreed() is not None and sim.all_ready()
    host = _host_of(sim)
    assert host is not None
    sim.crash(int(host[1:]))
    sim.run_until(35)
    sim.add(4, 4096, [gemma], seeds=[2])
    sim.run_until(600)
    agreed = sim.agreed()
    assert agreed is not None and len(agreed[0][2]) == 1 and agreed[0][2][0] != host
    survivor = agreed[0][2][0]
    assert [s for s in sim.rec.starts if s[1] == survivor] == \
        [s for s in sim.rec.starts if s[1] == survivor][:1]  # started once, never again
    assert not sim.rec.violations
