"""Drivers of issue 16's lab figures, shared by tests/lab/test_failover_lab.py and
benchmarks/lab_failover.py: failover without a warm replica, and start-up to every view.

Failover: three hosts; h1 and h2 hold the Gemma 3 270M GGUF (each fits it solo), h3 holds
nothing and carries the client's requests. The host is lost one of two ways:
  kill9     - SIGKILL of every process of its namespace (a crashed process on a live machine:
              its kernel refuses connects and answers datagrams with ICMP port-unreachable);
  link_down - its link goes down first, then its processes are killed (a machine that lost
              power: nothing comes back, not even a FIN).
Start-up: two nodes run; a third `mesh-node run` starts (a new node id each time) holding
the GGUF; measured from its process start to `member_joined` in both other nodes' logs, and
to the first completion through it.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path
from typing import Any

from election_configs import (
    GEMMA_ID,
    ElabModel,
    elab_chat,
    elab_first_success,
    elab_kill_host,
    elab_placement,
    elab_seed_demo,
    elab_specs,
    elab_start,
    elab_toml,
)
from netlab import Lab, NodeProc
from netlab_proc import wait_until

from tests.support.gossiplab_observe import event_time, log_events

SOLO_MEMORY = 2 * 1024**3  # far above the model's need: solo on either holder
FAILOVER_KINDS = ("kill9", "link_down")


def _ready_solo(st: dict[str, Any]) -> bool:
    p = elab_placement(st, GEMMA_ID)
    alive = [m for m in st.get("members", []) if m["status"] == "alive"]
    return len(alive) == 3 and p is not None and p["mode"] == "solo" and bool(p["ready"])


def failover_run(lab: Lab, kind: str, gguf: Path) -> dict[str, Any]:
    """One failover in a fresh 3-host lab; seconds from the fault to the next completion."""
    specs = elab_specs(lab, SOLO_MEMORY, demo_on={1, 2})
    for spec in specs[:2]:
        elab_seed_demo(spec.data_dir, gguf)
    nodes = elab_start(lab, specs)
    entry = nodes[2]
    st = entry.wait_for(_ready_solo, 180.0)
    ids = [n.wait_for(lambda s: bool(s.get("node")), 30.0)["node"]["id"] for n in nodes]
    p = elab_placement(st, GEMMA_ID)
    assert p is not None
    victim_id = p["hosts"][0]["id"]
    victim = ids.index(victim_id) + 1
    other = 3 - victim
    res = elab_chat(entry.ns, entry.base_url, GEMMA_ID, max_tokens=4)
    if res.status != 200:
        raise AssertionError(f"no completion before the fault: {res}")
    wall0, t0 = time.time(), time.monotonic()
    if kind == "link_down":
        lab.link_down(victim)
    elab_kill_host(lab, victim)
    t_ok = elab_first_success(entry, GEMMA_ID, 120.0)
    # a standby may serve before SWIM's timer ends: the death itself must still come
    wait_until(lambda: _first_event(entry, "member_dead", victim_id, wall0), 60.0, 0.2,
               "the host declared dead by the entry node")
    # the entry re-plans after the death (debounced): read the placement once it has
    def replanned() -> dict[str, Any] | None:
        st = entry.status()
        mp = elab_placement(st, GEMMA_ID)
        return st if mp is not None and victim_id not in [h["id"] for h in mp["hosts"]] \
            else None
    after = wait_until(replanned, 30.0, 0.2, "a placement without the dead host")
    pa = elab_placement(after, GEMMA_ID)
    served_by = [h["id"] for h in pa["hosts"]] if pa else []
    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - wall0, 2)

    holder = nodes[other - 1]
    dead = _first_event(entry, "member_dead", victim_id, wall0)
    return {"kind": kind, "failover_s": round(t_ok - t0, 2),
            "served_before_dead": dead is not None and time.time() - (time.monotonic() - t_ok)
            < dead,
            "suspected_s": rel(_first_event(entry, "member_suspected", victim_id, wall0)),
            "dead_s": rel(_first_event(entry, "member_dead", victim_id, wall0)),
            # where the rest goes, in the other holder's own log
            "standby_s": rel(_first_event(holder, "standby_starting", None, wall0)),
            "backend_starting_s": rel(_first_event(holder, "backend_starting", None, wall0)),
            "backend_ready_s": rel(_first_event(holder, "backend_ready", None, wall0)),
            # the other holder hosts it and the dead one does not; demand may add a replica
            # (a copy onto the entry node, issue 13/14) while requests waited
            "new_host_is_other_holder": ids[other - 1] in served_by and victim_id not in served_by,
            "served_by": served_by, "victim": victim_id, "other": ids[other - 1],
            "evidence": int(after.get("counters", {}).get("gossip_evidence", 0))}


def _first_event(node: NodeProc, event: str, peer: str | None, after: float = 0.0
                 ) -> float | None:
    for ev in log_events(node.log_text()):
        if ev.get("event") == event and (peer is None or ev.get("peer") == peer) \
                and event_time(ev) >= after:
            return event_time(ev)
    return None


def startup_runs(lab: Lab, gguf: Path, runs: int) -> list[dict[str, Any]]:
    """h1, h2 run with no model; h3 starts `runs` times (fresh id, holding the GGUF): seconds
    from its process start to `member_joined` in both other logs, and to a completion."""
    specs = elab_specs(lab, SOLO_MEMORY, demo_on=set())
    base = specs[2]
    peers = elab_start(lab, specs[:2])
    for n in peers:
        n.wait_for(lambda s: bool(s.get("node")), 90.0)
    out = []
    for i in range(runs):
        data = lab.host(3).workdir / f"data-run{i}"
        spec = dataclasses.replace(base, data_dir=data,
                                   models=[ElabModel(gguf, alias="gemma")])
        hf = lab.host(3).workdir / "hf-empty"
        hf.mkdir(exist_ok=True)
        wall0, t0 = time.time(), time.monotonic()
        node = lab.host(3).start_node(elab_toml(spec), env={"HF_HUB_CACHE": str(hf)})
        t_ok = elab_first_success(node, GEMMA_ID, 120.0)
        new_id = node.status()["node"]["id"]
        joined = [_first_event(p, "member_joined", new_id) for p in peers]
        if any(j is None for j in joined):
            raise AssertionError(f"run {i}: {new_id} not joined in every view\n{node.log_tail()}")
        visible = max(j for j in joined if j is not None) - wall0
        starting = _first_event(node, "node_starting", None)  # interpreter + imports before it
        out.append({"visible_s": round(visible, 2), "completion_s": round(t_ok - t0, 2),
                    "node_starting_s": None if starting is None else round(starting - wall0, 2)})
        assert node.stop(signal.SIGTERM, 15.0) == 0, node.log_tail()
    return out


def soak_run(lab: Lab, percent: int, seconds: float) -> dict[str, Any]:
    """All hosts' nodes (no models, static peers) with `percent`% of incoming UDP lost for
    `seconds`: deaths, suspicions and refutations logged inside the window."""
    from lab_configs import lab_node_env, lab_node_toml, lab_peer

    addrs = [h.addr for h in lab.hosts]
    nodes = [h.start_node(lab_node_toml(f"s{h.index}", h.workdir / "data", mdns=False,
                                        peers=[lab_peer(a) for a in addrs if a != h.addr]),
                          env=lab_node_env(lab.workdir)) for h in lab.hosts]
    n = len(nodes)
    for node in nodes:
        node.wait_for(lambda st: sum(m["status"] == "alive" for m in st["members"]) == n, 120.0)
    for h in lab.hosts:
        lab.drop(h.index, percent)
    t0 = time.time()
    time.sleep(seconds)
    t1 = time.time()
    for h in lab.hosts:
        lab.drop(h.index, 0)
    counts = {"member_dead": 0, "member_suspected": 0, "member_refuted": 0}
    for node in nodes:
        for ev in log_events(node.log_text()):
            if ev.get("event") in counts and t0 <= event_time(ev) <= t1:
                counts[str(ev["event"])] += 1
    return {"nodes": n, "percent": percent, "seconds": seconds,
            "false_deaths": counts["member_dead"], "suspicions": counts["member_suspected"],
            "refutations": counts["member_refuted"]}
