"""The node's route table: built once per view/placement change, never read stale.

A request reads names, routes, liveness and in-flight counts from one table that the node
drops at every change notice (gossip member change, local child change, placement change);
a table is also never older than TABLE_MAX_AGE_S, should a notice be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.resolve import RouteTable
from mesh_node.config.model import Config, NodeConfig
from mesh_node.node.assembly import Node, _Wiring
from mesh_node.node.context import TABLE_MAX_AGE_S, NodeContext
from mesh_node.records import (
    Load,
    MemberView,
    ModelPlacement,
    ModelSummary,
    NodeState,
    Placement,
    Serving,
)
from mesh_node.security import derive_keys
from mesh_node.status.events import EventHub
from mesh_node.timing import Timings
from tests.support.api_servers import ScriptedUpstream, api_serving

T = Timings(route_retry_window=1.0)
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _member(nid: str, *, ready: bool = True, status: str = "alive", port: int = 9337,
            inflight: int = 0) -> MemberView:
    state = NodeState(nid, f"n-{nid}", "127.0.0.1", port, 9338, 0, 0,
                      catalog=(ModelSummary("m", "m", "llama", "gguf", 0, 0),),
                      serving=(Serving("m", "host", "llama", ready, port),))
    return MemberView(nid, status, 1, "127.0.0.1", 9338, state,  # type: ignore[arg-type]
                      0.0, Load(inflight=inflight))


def _placement(*hosts: str) -> Placement:
    return Placement((ModelPlacement("m", "solo", "llama", hosts=hosts),))


@dataclass
class _Mesh:
    """The parts NodeContext reads, as plain data; counts how often the view is rebuilt."""

    members_list: list[MemberView]
    placement: Placement
    local: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    planned_once: bool = True
    reads: int = 0

    def members(self) -> list[MemberView]:
        self.reads += 1
        return list(self.members_list)

    def local_backends(self) -> dict[str, tuple[int, str | None]]:
        return dict(self.local)


def _ctx(mesh: _Mesh, tmp: Path) -> NodeContext:
    cfg = Config(node=NodeConfig(name="me", data_dir=tmp))
    return NodeContext(config=cfg, node_id="me", keys=derive_keys("s", "mesh"),
                       events=EventHub(), view=mesh, election=mesh,  # type: ignore[arg-type]
                       children=mesh, local=None, catalog=[],  # type: ignore[arg-type]
                       counters=None, address="127.0.0.1",  # type: ignore[arg-type]
                       started_at=0.0)


def test_api_route_table_is_pure_and_follows_served_as() -> None:
    members = [_member("me"), _member("b")]
    t = RouteTable(_placement("me", "b"), members, "me", {"m": (8080, None)},
                   [{"id": "m", "aliases": ["mm"], "key": "m"}])
    assert t.resolve("mm") == "m" and t.resolve("nope") is None
    assert t.routes("m") == [Route("me", "http://127.0.0.1:8080", True, None),
                             Route("b", "http://127.0.0.1:9337", False, None)]
    assert t.live == {"me", "b"} and t.routes("x") == []


async def test_api_route_table_built_once_per_change(tmp_path: Path) -> None:
    mesh = _Mesh([_member("me"), _member("b", inflight=3)], _placement("b"))
    ctx = _ctx(mesh, tmp_path)
    for _ in range(100):  # what 100 requests read
        assert ctx.resolve("m") == "m"
        assert [r.node_id for r in ctx.routes("m")] == ["b"]
        assert ctx.host_alive("b") and not ctx.host_alive("zz")
        assert ctx.inflight()["b"] == 3
    assert mesh.reads == 2  # one table + one in-flight map, not 400 member lists
    ctx.notify_change()
    ctx.routes("m")
    assert mesh.reads == 3
    ctx.notify_load()  # a load-only gossip change: in-flight re-read, the table kept
    mesh.members_list[1] = _member("b", inflight=7)
    assert ctx.inflight()["b"] == 7 and mesh.reads == 4


async def test_api_route_table_never_stale_after_a_host_change(tmp_path: Path) -> None:
    mesh = _Mesh([_member("me"), _member("b", port=1001), _member("c", port=1002)],
                 _placement("b"))
    ctx = _ctx(mesh, tmp_path)
    assert [r.url for r in ctx.routes("m")] == ["http://127.0.0.1:1001"]
    mesh.placement = _placement("c")  # re-election: the host moves to c
    ctx.notify_change()
    assert [r.url for r in ctx.routes("m")] == ["http://127.0.0.1:1002"]
    mesh.members_list[2] = _member("c", status="dead", port=1002)  # c dies
    ctx.notify_change()
    assert ctx.routes("m") == [] and not ctx.host_alive("c")


async def test_api_route_table_bounded_age_without_a_notice(
        tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    mesh = _Mesh([_member("me"), _member("b", port=1001), _member("c", port=1002)],
                 _placement("b"))
    ctx = _ctx(mesh, tmp_path)
    assert ctx.routes("m")[0].node_id == "b"
    mesh.placement = _placement("c")  # a change whose notice was lost
    mock_clock.jump(TABLE_MAX_AGE_S + 0.01)
    assert ctx.routes("m")[0].node_id == "c"


async def test_api_placement_change_drops_the_table(tmp_path: Path) -> None:
    """The node's placement callback notifies the context (not only gossip and children)."""
    seen: list[str] = []

    class _Ctx:
        def notify_change(self) -> None:
            seen.append("change")

    node = Node(Config(node=NodeConfig(name="me", data_dir=tmp_path)), "me", "127.0.0.1", 0)
    node._wired = _Wiring(None, None, None, _Ctx(), None, None, {})  # type: ignore[arg-type]
    node._on_placement(_placement("b"), _placement("c"))
    assert seen == ["change"]


async def test_api_request_after_a_local_host_change_goes_to_the_new_host(
        tmp_path: Path) -> None:
    """End to end through the API: the model's local backend moves from one port to another
    (a child restarted elsewhere); the first request after the notice goes to the new one."""
    old, new = ScriptedUpstream(name="old"), ScriptedUpstream(name="new")
    async with api_serving(old.app()) as old_url, api_serving(new.app()) as new_url:
        mesh = _Mesh([_member("me")], _placement("me"),
                     local={"m": (int(old_url.rsplit(":", 1)[1]), None)})
        ctx = _ctx(mesh, tmp_path)
        async with api_serving(build_app(ctx, T)) as url, \
                httpx.AsyncClient(base_url=url) as c:
            r: Any = (await c.post("/v1/chat/completions", json=CHAT)).json()
            assert r["served_by"] == "old"
            mesh.local = {"m": (int(new_url.rsplit(":", 1)[1]), None)}
            ctx.notify_change()
            for _ in range(3):
                r = (await c.post("/v1/chat/completions", json=CHAT)).json()
                assert r["served_by"] == "new"
    assert len(old.requests) == 1 and len(new.requests) == 3
    await trio.lowlevel.checkpoint()
