"""The pure host checks of fault histories (tests/lab/faults/hostcheck.py) on hand-built
histories: one host without flapping, a dead host never named again, backend start counts."""

from __future__ import annotations

from typing import Any

from tests.lab.faults import hostcheck as hc

M = "model-x"
H, S, J = "hosthost", "survivor", "joinerjo"  # crashed host, other holder, newcomer


def hc_sample(t: float, observer: str, hosts: list[str] | None,
              dead: tuple[str, ...] = ()) -> dict[str, Any]:
    members = {i: ["dead" if i in dead else "alive", 0, i] for i in (H, S, J)}
    placement = {} if hosts is None else {M: ["solo", hosts, [], True]}
    return {"t": t, "kind": "sample", "observer": observer, "members": members,
            "placement": placement}


def hc_log(t: float, node: str, event: str, **kw: Any) -> dict[str, Any]:
    return {"t": t, "kind": "log", "node": node, "event": event, **kw}


def test_hc_one_host_holds_once_each_observer_names_it() -> None:
    hist = [hc_sample(1.0, S, [H]), hc_sample(9.0, S, [S]), hc_sample(10.0, S, [S]),
            hc_sample(12.0, J, None), hc_sample(13.0, J, [S]), hc_sample(14.0, J, [S])]
    c = hc.check_one_host(hist, M, S, 5.0, [S, J])
    assert c.ok, c.detail
    assert c.figures["settled_s"] == 8.0 and c.figures["flaps"] == 0


def test_hc_flapping_back_to_the_crashed_host_fails() -> None:
    hist = [hc_sample(9.0, S, [S]), hc_sample(40.0, S, [H]), hc_sample(50.0, S, [S]),
            hc_sample(13.0, J, [S]), hc_sample(41.0, J, [])]
    c = hc.check_one_host(hist, M, S, 5.0, [S, J])
    assert not c.ok and c.figures["flaps"] == 2 and "35.0s" in c.detail


def test_hc_an_observer_that_never_names_the_host_fails() -> None:
    c = hc.check_one_host([hc_sample(9.0, S, [S]), hc_sample(9.0, J, [H])], M, S, 5.0, [S, J])
    assert not c.ok and "never named" in c.detail


def test_hc_dead_host_named_after_it_was_seen_dead() -> None:
    base = [hc_sample(1.0, S, [H]), hc_log(6.0, S, "member_dead", peer=H),
            hc_sample(6.5, S, [H], dead=(H,)),  # sampled before the re-plan: within the grace
            hc_sample(7.0, S, [S], dead=(H,))]
    assert hc.check_dead_host_never_named(base, M, H).ok
    # the newcomer started after the death: any naming of the crashed host counts
    late = [*base, hc_sample(20.0, J, [H])]
    c = hc.check_dead_host_never_named(late, M, H)
    assert not c.ok and c.figures["samples_naming_it"] == 1
    again = [*base, hc_sample(40.0, S, [H])]  # it came back at the survivor
    assert not hc.check_dead_host_never_named(again, M, H).ok
    never = [hc_sample(1.0, S, [H])]
    assert not hc.check_dead_host_never_named(never, M, H).ok  # the crash must be seen


def test_hc_backend_starts_counted_per_node_after_the_crash() -> None:
    hist = [hc_log(0.5, S, "backend_starting", model=M),  # before the crash: not counted
            hc_log(8.0, S, "backend_starting", model=M),
            hc_log(8.5, J, "backend_starting", model="other")]
    assert hc.check_backend_starts(hist, M, 5.0, {S: 1, J: 0}).ok
    restarted = [*hist, hc_log(40.0, S, "backend_stopping", model=M),
                 hc_log(45.0, S, "backend_starting", model=M)]
    c = hc.check_backend_starts(restarted, M, 5.0, {S: 1, J: 0})
    assert not c.ok and c.figures == {"starts": 2, "stops": 1}
    assert "2 starts (want 1), 1 stops" in c.detail
