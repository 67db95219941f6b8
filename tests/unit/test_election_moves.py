"""Placement that can move models (issue 14): which copies the election asks for, and why;
the switch to the copy once it is advertised; nothing moves without a clear gain."""

from __future__ import annotations

import dataclasses

from mesh_node.election.control import decide
from mesh_node.election.moves import plan_moves
from mesh_node.election.planner import plan, snapshot_from_states
from mesh_node.records import BackendCapability, MemberView, ModelSummary, NodeState, Serving

GIB = 1024**3
LLAMA = BackendCapability("llama", "b1", ("gguf",), True, True)
D = "ab" * 32


def gguf(gib: float = 4.0, copied: bool = False, digest: str = D) -> ModelSummary:
    return ModelSummary("qwen", "qwen", "llama", "gguf", int(gib * GIB), int(gib * GIB), (),
                        digest, copied)


def node(nid: str, gib: float, models: tuple[ModelSummary, ...] = (), store: float = 100.0,
         shares: bool = True, caps: tuple[BackendCapability, ...] = (LLAMA,),
         replicas: tuple[tuple[str, int], ...] = (), serving: tuple[Serving, ...] = ()
         ) -> NodeState:
    mem = int(gib * GIB)
    return NodeState(nid, nid, f"10.0.0.{ord(nid[0]) % 250}", 9337, 9338, mem, mem, caps,
                     models, serving, replicas=replicas, store_free=int(store * GIB),
                     shares=shares, preload=("qwen",))  # wanted: copies serve wanted models


def moves(*states: NodeState) -> list[tuple[str, str, str]]:
    s = snapshot_from_states(states)
    return [(m.model, m.target, m.reason) for m in plan_moves(s, plan(s), states)]


def test_a_copy_buys_solo_instead_of_a_split() -> None:
    got = moves(node("mini", 3, (gguf(),)), node("studio", 16), node("air", 2))
    assert got == [("qwen", "studio", "copy from mini: solo on studio instead of a 2-way split "
                                      "(4.0 GiB over the LAN)")]


def test_no_copy_without_disk_or_memory_or_a_sharing_holder() -> None:
    assert moves(node("mini", 3, (gguf(),)), node("studio", 16, store=3)) == []
    assert moves(node("mini", 3, (gguf(),)), node("studio", 4)) == []  # 4 GiB < 4.4 needed
    assert moves(node("mini", 3, (gguf(),), shares=False), node("studio", 16)) == []
    assert moves(node("mini", 3, (gguf(digest=""),)), node("studio", 16)) == []  # not hashed yet


def test_no_copy_when_a_holder_serves_it_solo() -> None:
    assert moves(node("mini", 8, (gguf(),)), node("studio", 64)) == []


def test_a_copy_gives_a_host_to_a_model_no_holder_can_run() -> None:
    got = moves(node("mini", 16, (gguf(),), caps=()), node("studio", 16))
    assert len(got) == 1 and got[0][1] == "studio"
    assert got[0][2].startswith("copy from mini: host on studio (no holder can run it: ")


def test_a_copy_gives_a_replica_the_placement_wants() -> None:
    """The hook for demand-driven placement: a wanted replica no holder can give."""
    got = moves(node("a", 8, (gguf(),), replicas=(("qwen", 2),)), node("b", 8))
    assert got == [("qwen", "b", "copy from a: replica 2 of 2 on b (4.0 GiB over the LAN)")]


def test_two_moves_do_not_promise_one_node_twice() -> None:
    other = dataclasses.replace(gguf(), id="llama3", key="llama3", digest="cd" * 32)
    got = moves(node("mini", 3, (gguf(), other)), node("studio", 10))
    assert len(got) == 1


def _view(states: list[NodeState]) -> list[MemberView]:
    return [MemberView(s.node_id, "alive", 1, s.address, 9338, s) for s in states]


def test_the_split_ends_only_once_the_verified_copy_is_advertised() -> None:
    mini, studio = node("mini", 3, (gguf(),)), node("studio", 16)
    d = decide("studio", _view([mini, studio]), hosted=(), files=())
    assert [m.target for m in d.fetch] == ["studio"]
    assert d.placement.models[0].mode == "split"  # served as before while the copy runs
    assert "copy from mini" in d.placement.models[0].reason
    # the split runs; then studio advertises its verified copy
    mini = dataclasses.replace(mini, serving=(Serving("qwen", "host", "llama", True, 9337,
                                                      "ready", (("studio", 0.8),), 5),))
    studio = dataclasses.replace(studio, serving=(Serving("qwen", "worker", "llama", True,
                                                          50052, "ready"),))
    assert decide("mini", _view([mini, studio]), (), ()).placement.models[0].mode == "split"
    landed = dataclasses.replace(studio, catalog=(gguf(copied=True),))
    d = decide("studio", _view([mini, landed]), hosted=(), files=("qwen",))
    p = d.placement.models[0]
    assert (p.mode, p.hosts, d.fetch) == ("solo", ("studio",), ())
    assert [h.model for h in d.start_hosts] == ["qwen"]


def test_a_users_own_file_does_not_end_a_kept_split() -> None:
    """Only a mesh copy (made to end this split) moves it; a big node joining with its own
    file keeps the old incumbency rule."""
    mini = node("mini", 3, (gguf(),), serving=(Serving(
        "qwen", "host", "llama", True, 9337, "ready", (("studio", 0.8),), 5),))
    studio = node("studio", 16, (gguf(),), serving=(Serving("qwen", "worker", "llama", True,
                                                            50052, "ready"),))
    p = decide("mini", _view([mini, studio]), (), ()).placement.models[0]
    assert p.mode == "split"
