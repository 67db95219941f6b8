"""Load on first request, at the API (issue 13): the entry node notes demand at once, a request
waits for a loading model up to load_timeout, a model that can never be placed fails at once in
every dialect; Ollama keep_alive; the DemandBook's smoothing; the config keys."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from mesh_node.api.app import build_app
from mesh_node.api.context import Route
from mesh_node.api.demand import DemandBook
from mesh_node.api.dialects.ollama import keep_alive_seconds
from mesh_node.api.errors import ApiError
from mesh_node.api.fake import FakeMeshContext, FakeModel
from mesh_node.config.load import load_config
from mesh_node.records import KEEP_DEFAULT, KEEP_FOREVER
from mesh_node.timing import Timings
from tests.support.api_servers import ScriptedUpstream, api_serving

MID = "gemma-3-270m"
CHAT = {"model": MID, "messages": [{"role": "user", "content": "hi"}]}
T = Timings(route_retry_window=0.2, load_timeout=1.5, upstream_connect_timeout=1.0,
            upstream_read_timeout=5.0)
WHY = "split needs 9.9 GiB (9.0 GiB x1.1), the mesh offers 313 MiB"


def _ctx(mode: str, routes: list[Route] | None = None) -> FakeMeshContext:
    return FakeMeshContext([FakeModel(MID, mode=mode, routes=routes or [], reason=WHY)],
                           secret=None)


@pytest.mark.parametrize(("path", "body", "where"), [
    ("/v1/chat/completions", CHAT, lambda d: d["error"]["message"]),
    ("/v1/messages", {**CHAT, "max_tokens": 8}, lambda d: d["error"]["message"]),
    ("/api/chat", {**CHAT, "stream": False}, lambda d: d["error"]),
])
async def test_unservable_fails_at_once_with_the_reason(path: str, body: dict[str, object],
                                                        where: object) -> None:
    ctx = _ctx("unservable")
    async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
        start = trio.current_time()
        r = await c.post(path, json=body)
        took = trio.current_time() - start
    assert r.status_code == 503 and took < T.route_retry_window
    assert WHY in where(r.json())  # type: ignore[operator]
    if path.startswith("/v1/chat"):
        assert r.json()["error"]["code"] == "model_unservable"
        assert r.headers["x-should-retry"] == "false"


async def test_loading_model_waits_past_the_route_window_then_serves() -> None:
    up = ScriptedUpstream("h")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx("loading")
        app = build_app(ctx, T)
        async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c, \
                trio.open_nursery() as n:
            async def loaded() -> None:
                await app.state.api.demand_news.wait()  # noted the moment it entered
                assert app.state.api.demand.inflight(MID) == 1
                await trio.sleep(0.5)  # longer than route_retry_window: a load takes time
                ctx.set_routes(MID, [Route("h", up_url, True)])
            n.start_soon(loaded)
            r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    (d,) = app.state.api.demand.records(trio.current_time())
    assert (d.model, d.inflight, d.age) == (MID, 0, 0)


async def test_loading_model_times_out_after_load_timeout() -> None:
    ctx = _ctx("available")
    async with api_serving(build_app(ctx, T)) as url, httpx.AsyncClient(base_url=url) as c:
        start = trio.current_time()
        r = await c.post("/v1/chat/completions", json=CHAT)
        took = trio.current_time() - start
    assert r.status_code == 503 and r.json()["error"]["code"] == "load_timeout"
    assert T.load_timeout <= took < T.load_timeout + 1.0


async def test_new_demand_is_news_and_ollama_keep_alive_is_noted() -> None:
    up = ScriptedUpstream("h")
    async with api_serving(up.app()) as up_url:
        ctx = _ctx("solo", [Route("h", up_url, True)])
        app = build_app(ctx, T)
        state = app.state.api
        async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
            assert not state.demand_news.is_set()
            r = await c.post("/api/chat", json={**CHAT, "stream": False, "keep_alive": "10m"})
            assert r.status_code == 200 and state.demand_news.is_set()
            (d,) = state.demand.records(trio.current_time())
            assert d.keep == 600
            state.demand_news = trio.Event()
            r = await c.post("/api/generate", json={"model": MID, "keep_alive": 0})
            assert r.json()["done_reason"] == "unload" and state.demand_news.is_set()
            (d,) = state.demand.records(trio.current_time())
            assert (d.keep, d.inflight) == (0, 0)


def test_keep_alive_forms() -> None:
    assert keep_alive_seconds({}) is None
    assert keep_alive_seconds({"keep_alive": 30}) == 30
    assert keep_alive_seconds({"keep_alive": "5m"}) == 300
    assert keep_alive_seconds({"keep_alive": "1h30m"}) == 5400
    assert keep_alive_seconds({"keep_alive": "0"}) == 0
    assert keep_alive_seconds({"keep_alive": -1}) == KEEP_FOREVER
    assert keep_alive_seconds({"keep_alive": "-1m"}) == KEEP_FOREVER
    with pytest.raises(ApiError):
        keep_alive_seconds({"keep_alive": "soon"})


def test_demand_book_rises_fast_falls_slowly_and_counts_once() -> None:
    book = DemandBook()
    assert book.begin("m", None, 0.0) is True
    assert book.begin("m", None, 0.0) is False  # already news
    for _ in range(6):
        book.begin("m", None, 0.0)
    (d,) = book.records(4.0)  # 8 open for two rise constants
    assert 6.5 <= d.load <= 7.5 and d.inflight == 8 and d.age == 4
    for _ in range(8):
        book.end("m", 4.0)
    (d,) = book.records(14.0)  # a third of a fall constant later: still most of it
    assert 4.5 <= d.load <= 6.0 and d.inflight == 0 and d.keep == KEEP_DEFAULT
    (d,) = book.records(400.0)
    assert d.load == 0.0 and d.age == 400  # since the last request began


def test_config_preload_idle_unload_and_hf_cache(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('scan_hf_cache = false\n[election]\nidle_unload = "1h30m"\n'
                    'load_timeout = 120\nmax_replicas = 2\n'
                    '[[models]]\npath = "a.gguf"\npreload = true\nidle_unload = "90s"\n')
    cfg = load_config(path, env={})
    assert cfg.scan_hf_cache is False and cfg.election.idle_unload == 5400.0
    assert cfg.election.load_timeout == 120.0 and cfg.election.max_replicas == 2
    assert cfg.models[0].preload is True and cfg.models[0].idle_unload == 90.0


def test_ollama_ps_expiry_and_tags_status() -> None:
    from mesh_node.api.dialects.ollama import NEVER, ps, tags
    from mesh_node.api.dialects.ollama_stream import rfc3339

    entries = [{"id": "a", "ready": True, "expires_in": 90, "status": "loaded"},
               {"id": "b", "ready": True, "expires_in": None, "status": "loaded"},
               {"id": "c", "ready": False, "expires_in": 0, "status": "available"}]
    shown = {m["name"]: m["expires_at"] for m in ps(entries, rfc3339, 0.0)["models"]}
    assert shown == {"a:latest": "1970-01-01T00:01:30Z", "b:latest": NEVER}
    assert [m["status"] for m in tags(entries)["models"]] == ["loaded", "loaded", "available"]
