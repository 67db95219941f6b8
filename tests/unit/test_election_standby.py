"""The standby (issue 16): while a host is suspect, the holder that would take over loads the
model beside the placement; the death itself stays SWIM's, and nothing restarts either way."""

from __future__ import annotations

from mesh_node.election.control import decide
from mesh_node.election.standby import SuspectAges
from mesh_node.records import MemberView, NodeState, Serving
from mesh_node.testing.loopsim import LLAMA, model

GEMMA = model("gemma", 300)
MIB = 1 << 20


def _member(i: int, status: str = "alive", mem_mib: int = 2048, holds: bool = True,
            serving: tuple[Serving, ...] = ()) -> MemberView:
    st = NodeState(f"n{i}", f"node{i}", f"10.0.0.{i}", 9337, 9338, mem_mib * MIB,
                   mem_mib * MIB, (LLAMA,), (GEMMA,) if holds else (), serving=serving,
                   preload=("gemma",))  # wanted: a standby is for a model the mesh serves
    return MemberView(f"n{i}", status, 0, st.address, 9338, st)  # type: ignore[arg-type]


def _hosting(ready: bool = True, at: int = 100) -> tuple[Serving, ...]:
    return (Serving("gemma", "host", "llama", ready, 9337, "ready" if ready else "starting",
                    (), at if ready else 0),)


def test_standby_starts_on_the_next_holder_only_while_the_host_is_suspect() -> None:
    view = [_member(1, "suspect", serving=_hosting()), _member(2), _member(3, holds=False)]
    d = decide("n2", view, set(), {"gemma"}, {"n1"})
    assert [r.model for r in d.standby] == ["gemma"] and d.start_hosts == d.standby
    assert d.placement.models[0].hosts == ("n1",)  # the placement still names the suspect
    assert not decide("n3", view, set(), set(), {"n1"}).start_hosts  # holds nothing
    assert not decide("n2", view, set(), {"gemma"}, ()).standby  # not suspect long enough
    alive = [_member(1, serving=_hosting()), _member(2), _member(3, holds=False)]
    d = decide("n2", alive, {"gemma"}, {"gemma"}, ())  # refuted: the standby stops
    assert d.stop_hosts == ("gemma",) and not d.standby


def test_standby_becomes_the_host_without_a_restart_when_the_suspect_dies() -> None:
    standby = _hosting(ready=False)
    view = [_member(1, "suspect", serving=_hosting()), _member(2, serving=standby),
            _member(3, holds=False)]
    before = decide("n2", view, {"gemma"}, {"gemma"}, {"n1"})
    dead = [_member(1, "dead", serving=_hosting()), _member(2, serving=standby),
            _member(3, holds=False)]
    after = decide("n2", dead, {"gemma"}, {"gemma"}, ())
    assert after.placement.models[0].hosts == ("n2",) and not after.stop_hosts
    assert [r.key for r in after.start_hosts] == [r.key for r in before.start_hosts]  # no restart
    # every other node plans the standby as the incumbent too
    assert decide("n3", dead, set(), set(), ()).placement.models[0].hosts == ("n2",)


def test_standby_never_oversubscribes_memory() -> None:
    other = model("other", 1200)
    big = NodeState("n2", "node2", "10.0.0.2", 9337, 9338, 1500 * MIB, 1500 * MIB, (LLAMA,),
                    (GEMMA, other), serving=(Serving("other", "host", "llama", True, 9337,
                                                     "ready", (), 50),),
                    preload=("gemma", "other"))
    view = [_member(1, "suspect", serving=_hosting()),
            MemberView("n2", "alive", 0, "10.0.0.2", 9338, big)]
    d = decide("n2", view, {"other"}, {"gemma", "other"}, {"n1"})
    assert [r.model for r in d.start_hosts] == ["other"] and not d.standby  # 1320 + 330 > 1500


def test_standby_not_for_a_model_with_a_live_replica() -> None:
    view = [_member(1, "suspect", serving=_hosting()), _member(2, serving=_hosting(at=90)),
            _member(3)]
    assert not decide("n3", view, set(), {"gemma"}, {"n1"}).standby


def test_suspect_ages_only_count_a_suspicion_that_lasted() -> None:
    ages = SuspectAges(0.5)
    view = [_member(1, "suspect"), _member(2)]
    assert ages.update(view, 10.0) == (frozenset(), 10.5)
    assert ages.update(view, 10.5) == (frozenset({"n1"}), None)
    assert ages.update([_member(1), _member(2)], 10.6) == (frozenset(), None)
    assert ages.update(view, 11.0) == (frozenset(), 11.5)  # a new suspicion starts anew


def test_suspect_ages_count_a_backed_suspicion_at_once() -> None:
    """Our own TCP probe of the suspect failed too (MemberView.backed): not lost datagrams."""
    import dataclasses
    ages = SuspectAges(0.5)
    backed = dataclasses.replace(_member(1, "suspect"), backed=True)
    assert ages.update([backed, _member(2)], 10.0) == (frozenset({"n1"}), None)
    assert ages.update([_member(1, "suspect"), _member(2)], 10.1) == (frozenset(), 10.5)
