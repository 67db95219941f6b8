"""Routing while a host is suspect (issue 16): hosts that are not suspect first, a ready standby
used, and a request waiting on a suspect host released once such a host is ready."""

from __future__ import annotations

from mesh_node.api.resolve import host_worth_waiting_for, routes_around_suspects
from mesh_node.records import ModelPlacement, Placement
from tests.unit.test_election_standby import _hosting, _member

PLACED = Placement((ModelPlacement("gemma", "solo", "llama", ("n1",), (), "test"),))


def test_routes_use_a_ready_standby_only_while_the_host_is_suspect() -> None:
    alive = [_member(1, serving=_hosting()), _member(2, serving=_hosting(at=200)), _member(3)]
    assert [r.node_id for r in routes_around_suspects("gemma", PLACED, alive, "n3", {})] == ["n1"]
    suspect = [_member(1, "suspect", serving=_hosting()), *alive[1:]]
    routes = routes_around_suspects("gemma", PLACED, suspect, "n3", {})
    assert [r.node_id for r in routes] == ["n2", "n1"]  # the standby first, the suspect last
    starting = [suspect[0], _member(2, serving=_hosting(ready=False)), _member(3)]
    assert [r.node_id for r in routes_around_suspects("gemma", PLACED, starting, "n3", {})] \
        == ["n1"]  # a standby still loading is no route


def test_waiting_on_a_suspect_host_ends_once_another_host_is_ready() -> None:
    suspect = _member(1, "suspect", serving=_hosting())
    loading = [suspect, _member(2, serving=_hosting(ready=False))]
    assert host_worth_waiting_for("n1", loading, PLACED)
    ready = [suspect, _member(2, serving=_hosting(at=200))]
    assert not host_worth_waiting_for("n1", ready, PLACED)
    assert host_worth_waiting_for("n1", [_member(1, serving=_hosting()), ready[1]], PLACED)
    assert not host_worth_waiting_for("n1", [_member(1, "dead")], PLACED)
