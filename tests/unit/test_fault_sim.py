"""Delay with jitter, duplication and reordering (no netem on this kernel): the fault matrix's
link faults on the fake LAN, judged by the same checker as the lab (tests/lab/faults/checker.py).

Each run: 10 converged nodes, bad links for two simulated minutes, state records updated on
some nodes, one node crashed. No divergence: every live view ends identical (status,
incarnation and state record of every member), the crashed node is dead everywhere, and
nobody else was ever declared dead.
"""

from __future__ import annotations

from typing import Any

import pytest

from mesh_node.gossip.fakelan import FakeLan, LinkModel, sim_addr
from mesh_node.gossip.swim import Swim
from tests.lab.faults import checker as ck

FS_N = 10
FS_CRASH_AT = 60.0
FS_END = 150.0  # the crash is detected well within 90 s even on bad links


def fs_records(lan: FakeLan) -> list[dict[str, Any]]:
    """The sim's logs as history `log` records, plus one final `sample` per live core."""
    recs: list[dict[str, Any]] = [
        {"t": t, "kind": "log", "node": node, "event": e.event, "peer": e.fields.get("peer")}
        for t, node, e in lan.logs]
    recs += [{"t": lan.now, "kind": "sample", "observer": c.id,
              "members": {k: [u.status, u.incarnation, k] for k, u in c.table.items()}}
             for c in lan.alive_cores()]
    return recs


def fs_view(c: Swim) -> dict[str, tuple[str, int, bytes | None]]:
    return {k: (u.status, u.incarnation, c._full.get(k)) for k, u in c.table.items()}


def fs_run(link: LinkModel, seed: int) -> tuple[FakeLan, list[dict[str, Any]]]:
    lan = FakeLan(seed=seed, link=link)
    cores = lan.bootstrap(FS_N)
    lan.run_until(20.0)
    for i, c in enumerate(cores[:3]):
        c.set_local_state(b"v2-" + bytes([i]) * 64)
    lan.run_until(FS_CRASH_AT)
    lan.crash(sim_addr(FS_N - 1))
    fault = {"t": lan.now, "kind": "fault", "name": "crash", "targets": [f"n{FS_N - 1}"],
             "victims": [f"n{FS_N - 1}"]}
    lan.run_until(FS_END)
    return lan, sorted([fault, *fs_records(lan)], key=lambda r: r["t"])


LINKS = {
    "jitter_200ms": LinkModel(delay=0.002, jitter=0.2),
    "jitter_450ms": LinkModel(delay=0.002, jitter=0.45),  # just under probe_timeout (0.5 s)
    "duplicate_50pct": LinkModel(duplicate=0.5),
    "reorder_50pct_300ms": LinkModel(reorder=0.5, reorder_delay=0.3),
    "all_with_5pct_loss": LinkModel(drop=0.05, delay=0.002, jitter=0.1, duplicate=0.3,
                                    reorder=0.3, reorder_delay=0.2),
}


@pytest.mark.parametrize("name", sorted(LINKS))
def test_fs_bad_links_do_not_diverge(name: str) -> None:
    lan, hist = fs_run(LINKS[name], seed=len(name))
    views = [fs_view(c) for c in lan.alive_cores()]
    assert len(views) == FS_N - 1
    assert all(v == views[0] for v in views), f"{name}: views diverged"
    assert all(views[0][f"n{i}"][0] == "alive" for i in range(FS_N - 1))
    # dead, or already reclaimed (dead_reclaim = 30 s): the same in every view either way
    assert views[0].get(f"n{FS_N - 1}", ("dead",))[0] == "dead"
    records = {k: v[2] for k, v in views[0].items()}
    assert all(records[f"n{i}"] == lan.nodes[sim_addr(i)].record for i in range(FS_N - 1))
    v = ck.verdict(name, [ck.check_no_false_death(hist),
                          ck.check_detected(hist, "crash", within=40.0)])
    print("\n" + v.summary())
    assert v.ok, v.summary()


def test_fs_duplicates_and_reordering_are_really_injected() -> None:
    lan = FakeLan(seed=5, link=LinkModel(duplicate=1.0, reorder=1.0, reorder_delay=0.3))
    lan.bootstrap(3)
    lan.run_until(10.0)
    sent = lan.stats.packets
    assert sent > 0
    # every datagram doubled, and each copy 300 ms late: pings still answered within timeout
    assert ck.check_no_false_death(fs_records(lan)).ok
