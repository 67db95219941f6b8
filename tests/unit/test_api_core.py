"""Pure cores of the API room: payload checks, replica order, request ids, mesh auth, resolve."""

from __future__ import annotations

import pytest

from mesh_node.api import errors
from mesh_node.api.context import Route
from mesh_node.api.payload import parse
from mesh_node.api.resolve import resolve_name, routes_for
from mesh_node.api.routing import order_routes, request_id
from mesh_node.records import MemberView, ModelPlacement, NodeState, Placement, Serving


@pytest.mark.parametrize(("raw", "kind", "code", "param"), [
    (b"{nope", "chat", "invalid_json", None),
    (b"[1]", "chat", "invalid_json", None),
    (b'{"messages": []}', "chat", "missing_required_parameter", "model"),
    (b'{"model": "m"}', "chat", "missing_required_parameter", "messages"),
    (b'{"model": "m", "messages": "hi"}', "chat", "invalid_type", "messages"),
    (b'{"model": "m", "messages": ["hi"]}', "chat", "invalid_type", "messages"),
    (b'{"model": 3, "messages": []}', "chat", "invalid_type", "model"),
    (b'{"model": "m"}', "completions", "missing_required_parameter", "prompt"),
    (b'{"model": "m", "prompt": 5}', "completions", "invalid_type", "prompt"),
    (b'{"model": "m", "input": {}}', "embeddings", "invalid_type", "input"),
    (b'{"model": "m", "prompt": "x", "stream": "yes"}', "completions", "invalid_type", "stream"),
])
def test_api_parse_rejects(raw: bytes, kind: str, code: str, param: str | None) -> None:
    with pytest.raises(errors.ApiError) as info:
        parse(raw, kind)  # type: ignore[arg-type]
    assert info.value.status == 400
    assert info.value.body()["error"]["code"] == code
    assert info.value.body()["error"]["param"] == param


def test_api_parse_accepts_chat() -> None:
    doc = parse(b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}', "chat")
    assert doc["model"] == "m"


def test_api_order_least_inflight_then_local() -> None:
    a, b, c = Route("a", "u", True), Route("b", "u", False), Route("c", "u", False)
    assert order_routes([a, b, c], {"a": 3, "b": 1, "c": 1}, {}) == [b, c, a]
    assert order_routes([b, a], {}, {}) == [a, b]  # tie: local first
    # this node's own open requests count even before gossip reports them
    assert order_routes([b, c], {"b": 0, "c": 1}, {"b": 5}) == [c, b]


def test_api_request_id_accepts_sane_client_ids_only() -> None:
    assert request_id("abc-123") == "abc-123"
    assert request_id(None).startswith("req_")
    assert request_id("bad id\nx").startswith("req_")
    assert request_id("x" * 200).startswith("req_")


def test_api_resolve_by_id_alias_key_and_case() -> None:
    entries = [{"id": "gemma-3-270m-q4_k_m", "aliases": ["gemma"], "key": "gemma-3-270m"},
               {"id": "other", "aliases": [], "key": "other"}]
    assert resolve_name("gemma-3-270m-q4_k_m", entries) == "gemma-3-270m-q4_k_m"
    assert resolve_name("gemma", entries) == "gemma-3-270m-q4_k_m"
    assert resolve_name("gemma-3-270m", entries) == "gemma-3-270m-q4_k_m"
    assert resolve_name("OTHER", entries) == "other"
    assert resolve_name("nope", entries) is None


def _member(nid: str, ready: bool, status: str = "alive") -> MemberView:
    state = NodeState(nid, f"n-{nid}", f"10.0.0.{len(nid)}", 9337, 9338, 0, 0,
                      serving=(Serving("m", "host", "llama", ready, 9337),))
    return MemberView(nid, status, 1, state.address, 9338, state)  # type: ignore[arg-type]


def test_api_routes_for_trusts_gossiped_readiness() -> None:
    placement = Placement((ModelPlacement("m", "solo", "llama",
                                          hosts=("me", "b", "cc", "ddd", "eeee")),))
    members = [_member("me", True), _member("b", True), _member("cc", False),
               _member("ddd", True, "suspect"), _member("eeee", True, "dead")]
    routes = routes_for("m", placement, members, "me", {"m": (8080, None)})
    # one liveness rule (records.is_live): a suspect host is still routed to, a dead one not
    assert routes == [Route("me", "http://127.0.0.1:8080", True, None),
                      Route("b", "http://10.0.0.1:9337", False, None),
                      Route("ddd", "http://10.0.0.3:9337", False, None)]
    assert routes_for("m", placement, members, "me", {}) == routes[1:]
    assert routes_for("x", placement, members, "me", {}) == []
