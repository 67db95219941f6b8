"""Merge laws of member records and tables, and suspicion arithmetic (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh_node.gossip.members import STATUSES, Update, merge, merge_tables
from mesh_node.gossip.suspicion import (
    Suspicion,
    expected_confirmations,
    retransmit_limit,
    suspicion_bounds,
    suspicion_timeout,
)

_N1 = st.just("n1")


def _updates(node: st.SearchStrategy[str] = _N1) -> st.SearchStrategy[Update]:
    return st.builds(
        Update, node=node, status=st.sampled_from(STATUSES),
        incarnation=st.integers(0, 3), address=st.sampled_from(["10.0.0.1", "10.0.0.2"]),
        port=st.sampled_from([7946, 7947]), state_inc=st.integers(0, 3),
        state_version=st.integers(0, 3), state=st.none() | st.sampled_from([b"a", b"bb"]),
        origin=st.sampled_from(["", "n2", "n3"]))


_tables = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.just(0)).flatmap(
    lambda d: st.fixed_dictionaries({k: _updates(st.just(k)) for k in d}))


@given(_updates(), _updates())
def test_gossip_merge_commutative(a: Update, b: Update) -> None:
    assert merge(a, b) == merge(b, a)


@given(_updates(), _updates(), _updates())
def test_gossip_merge_associative(a: Update, b: Update, c: Update) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@given(_updates(), _updates())
def test_gossip_merge_idempotent_and_absorbing(a: Update, b: Update) -> None:
    assert merge(a, a) == a
    m = merge(a, b)
    assert merge(m, a) == m and merge(m, b) == m


@given(_tables, _tables, _tables)
def test_gossip_table_merge_laws(a: dict[str, Update], b: dict[str, Update],
                                 c: dict[str, Update]) -> None:
    assert merge_tables(a, b) == merge_tables(b, a)
    assert merge_tables(merge_tables(a, b), c) == merge_tables(a, merge_tables(b, c))
    assert merge_tables(a, a) == a


def test_gossip_merge_rules_match_memberlist() -> None:
    alive = Update("x", "alive", 3, "h", 1)
    assert merge(alive, Update("x", "suspect", 3, "h", 1)).status == "suspect"
    assert merge(alive, Update("x", "suspect", 2, "h", 1)).status == "alive"  # stale doubt
    assert merge(Update("x", "dead", 3, "h", 1), alive).status == "dead"
    assert merge(Update("x", "dead", 3, "h", 1), Update("x", "alive", 4, "h", 1)).status == "alive"
    newer_state = Update("x", "suspect", 1, "h", 1, state_inc=3, state_version=2, state=b"s")
    m = merge(alive, newer_state)
    assert (m.status, m.incarnation, m.state) == ("alive", 3, b"s")  # separate orders


@given(st.integers(1, 5000), st.floats(0.1, 5.0))
def test_gossip_suspicion_bounds(n: int, interval: float) -> None:
    lo, hi = suspicion_bounds(4, 6, n, interval)
    assert lo >= 4 * interval and hi == 6 * lo


@given(st.integers(0, 10), st.integers(0, 6), st.floats(0.5, 20.0))
def test_gossip_suspicion_timeout_monotonic_and_bounded(c: int, k: int, lo: float) -> None:
    hi = 6 * lo
    t = suspicion_timeout(c, k, lo, hi)
    assert lo - 1e-9 <= t <= hi + 1e-9
    assert suspicion_timeout(c + 1, k, lo, hi) <= t + 1e-9
    if k >= 1:
        assert suspicion_timeout(0, k, lo, hi) == hi
        assert abs(suspicion_timeout(k, k, lo, hi) - lo) < 1e-9


def test_gossip_suspicion_confirmations_count_once() -> None:
    s = Suspicion(start=10.0, incarnation=1, k=2, lo=4.0, hi=24.0, confirmers={"a"})
    assert s.deadline() == 34.0
    assert not s.confirm("a")  # the first suspecter does not confirm itself
    assert s.confirm("b") and not s.confirm("b")
    assert 14.0 < s.deadline() < 34.0
    assert s.confirm("c") and s.deadline() == 14.0
    assert not s.confirm("d")  # k reached


def test_gossip_memberlist_constants() -> None:
    assert expected_confirmations(4, 10) == 2 and expected_confirmations(4, 3) == 0
    assert retransmit_limit(4, 10) == 8 and retransmit_limit(4, 1000) == 16
    assert suspicion_bounds(4, 6, 1000, 1.0) == (12.0, 72.0)
