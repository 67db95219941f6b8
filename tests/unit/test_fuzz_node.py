"""Whole-node fuzzing: hostile but well-formed gossip through the real core, view and planner.

Every input is a message an insider (or anyone, without a mesh secret) could seal: updates with
huge, negative or non-finite numbers, deep nesting, unknown members, long strings, stale or
bound-reaching incarnations, state records and loads of every shape. It goes through the wire
codec (the seam that drops what is out of bounds), the `Swim` core, the `MeshView` decoder and
`control.decide`, as on a running node. After every input: nothing raised, the placement names
only live members with a valid record, and every table stays bounded.
`make test` runs NODE_FUZZ_INPUTS (10,000); `make fuzz` runs 1,000,000.
"""

from __future__ import annotations

import os
import random
from typing import Any

import msgpack

from mesh_node.election.control import decide
from mesh_node.gossip.members import STATUSES, Update
from mesh_node.gossip.swim import MAX_MEMBERS, Swim
from mesh_node.gossip.wire import (
    MAX_COUNTER,
    Ack,
    Gossip,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    WireError,
    decode,
    encode,
)
from mesh_node.node.view import MeshView
from mesh_node.records import BackendCapability, ModelSummary, NodeState, Serving
from mesh_node.records_wire import encode_state

INPUTS = int(os.environ.get("NODE_FUZZ_INPUTS", "1000000"
                            if os.environ.get("MESH_NODE_FUZZ_LONG") == "1" else "10000"))
IDS = [f"peer{i}" for i in range(40)] + ["me"]
MODELS = ["gemma", "qwen", "llama", "x" * 300]
HOSTILE: list[Any] = [float("inf"), float("-inf"), float("nan"), -1, 2**63 - 1, 2**64 - 1,
                      -(2**63), 0, 1e308, "x" * 5000, None, True, {"a": 1}, [[[[[]]]]], b"\x00"]
LLAMA = BackendCapability("llama", "b1", ("gguf",), True, True)


def _num(rng: random.Random) -> Any:
    return rng.choice([rng.randrange(0, 1 << 34), rng.choice(HOSTILE), rng.randrange(10)])


def _state(rng: random.Random, node: str) -> bytes:
    if rng.random() < 0.1:
        return os.urandom(rng.randrange(0, 300))
    d: dict[str, Any] = NodeState(node, node, "10.0.0.2", 9337, 9338, rng.randrange(1 << 33),
                                  0, (LLAMA,)).to_wire()
    d["cat"] = [{"i": rng.choice(MODELS), "k": "k", "b": rng.choice(["llama", "mlx", "?"]),
                 "f": "gguf", "s": _num(rng), "m": _num(rng)} for _ in range(rng.randrange(4))]
    d["sv"] = [{"m": rng.choice(MODELS), "r": rng.choice(["host", "worker", "boss"]),
                "ok": rng.random() < 0.7, "st": rng.choice(["ready", "starting", "failed: x"]),
                "w": [[rng.choice(IDS), rng.choice([0.5, 2.0, float("nan")])]
                      for _ in range(rng.randrange(3))], "ra": _num(rng)}
               for _ in range(rng.randrange(3))]
    d["far"] = [rng.choice(IDS) for _ in range(rng.randrange(3))]
    d["hr"] = rng.choice([1.1, 1.0, 0.0, 9.0, float("inf")])
    for _ in range(rng.randrange(3)):  # some fields hostile
        d[rng.choice(list(d))] = rng.choice(HOSTILE)
    if rng.random() < 0.05:
        d = {"deep": rng.choice(HOSTILE)}
        for _ in range(rng.randrange(50)):
            d = {"deep": [d]}
    return msgpack.packb(d, use_bin_type=True)


def _rare(rng: random.Random, usual: Any, rare: Any) -> Any:
    """Mostly within the wire bounds (so the core sees it), sometimes past them (the seam)."""
    return rare if rng.random() < 0.02 else usual


def _update(rng: random.Random) -> Update:
    node = _rare(rng, rng.choice(IDS), "z" * rng.randrange(1, 200))
    inc = rng.choice([0, 1, 2, MAX_COUNTER, rng.randrange(1 << 32), _rare(rng, 3, 1 << 40)])
    state = _state(rng, node) if rng.random() < 0.7 else None
    load = msgpack.packb({"if": _num(rng)}) if rng.random() < 0.5 else os.urandom(8)
    return Update(node, rng.choice(STATUSES), inc, rng.choice(["10.0.0.2", "", _rare(rng, "a",
                                                                                  "x" * 80)]),
                  rng.randrange(65536), rng.choice([0, inc]), rng.randrange(1, 50), state,
                  rng.choice(IDS), rng.randrange(1 << 20), load)


def _message(rng: random.Random) -> Message:
    ups = tuple(_update(rng) for _ in range(rng.randrange(1, 6)))
    sender = rng.choice(IDS)
    return rng.choice([
        Gossip(sender, ups), Ping(rng.randrange(1 << 31), sender, rng.choice(["me", sender]), ups),
        Ack(rng.randrange(1 << 31), sender, ups), Nack(rng.randrange(1 << 31), sender, ups),
        PingReq(rng.randrange(1 << 31), sender, rng.choice(IDS), "10.0.0.9", 9338, ups),
        PushPull(sender, rng.random() < 0.5, ups)])


def test_fuzz_whole_node_never_crashes_never_plans_on_the_dead_stays_bounded() -> None:
    rng = random.Random(20261201)
    core = Swim("me", ("10.0.0.1", 9338), random.Random(1))
    me = NodeState("me", "me", "10.0.0.1", 9337, 9338, 8 << 30, 8 << 30, (LLAMA,),
                   (ModelSummary("gemma", "gemma", "llama", "gguf", 1 << 28, 1 << 28),),
                   (Serving("gemma", "host", "llama", True, 9337, "ready", (), 1),))
    core.set_local_state(encode_state(me))
    view = MeshView(core.members)
    now, dropped, planned = 0.0, 0, 0
    for i in range(INPUTS):
        now += 0.05
        try:
            msg = decode(encode(_message(rng)))  # the wire seam: out-of-bounds is dropped here
        except (WireError, OverflowError, ValueError):
            dropped += 1
            continue
        core.on_message(("10.0.0.2", 9338), msg, now)
        core.on_tick(now)
        if i % 5 == 0:
            d = decide("me", view.members(), {"gemma"}, {"gemma"})
            planned += 1
            live = {m.node_id for m in view.live()}
            for mp in d.placement.models:
                named = set(mp.hosts) | {w.node_id for w in mp.workers}
                assert named <= live, (mp, live)
            # the view's caches hold current members only (pruned at each read)
            assert len(view._states) <= len(core.table) and len(view._loads) <= len(core.table)
        assert len(core.table) <= MAX_MEMBERS
    print(f"\nwhole-node fuzz: {INPUTS} inputs, {dropped} dropped at the wire seam, "
          f"{view.dropped['state']} state and {view.dropped['load']} load records dropped at "
          f"the view, {planned} plans, {len(core.table)} members, counters {dict(core.counters)}")
    assert core.table["me"].status == "alive"  # it refuted everything said about it
