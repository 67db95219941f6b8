"""Supervisor with real small child processes (python http servers, sleepers)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
from structlog.testing import capture_logs

from mesh_node.backends.supervisor import ChildSpec, ChildState, Supervisor
from mesh_node.timing import Timings
from tests.support.backends_procs import (
    exit_argv,
    free_port,
    group_members,
    health_server_argv,
    pid_alive,
    sleeper_argv,
)

FAST = Timings(backend_restart_min=0.1, backend_restart_max=0.4, backend_stop_grace=1.0)
WAIT = 20.0  # generous: 2 shared cores, python start-up ~0.1-1 s


async def _wait_gone(pids: list[int]) -> None:
    with trio.fail_after(WAIT):
        while any(pid_alive(p) for p in pids):  # noqa: ASYNC110 - no event for a pid exit
            await trio.sleep(0.05)


def _http_spec(name: str, **kw: object) -> ChildSpec:
    port = free_port()
    return ChildSpec(name, health_server_argv(port, **kw),  # type: ignore[arg-type]
                     health_url=f"http://127.0.0.1:{port}/health", health_timeout=WAIT)


async def test_supervisor_ready_then_stop(nursery: trio.Nursery) -> None:
    sup: Supervisor = await nursery.start(Supervisor(FAST).run)
    changes = sup.subscribe()
    child = await sup.start(_http_spec("web"))
    with trio.fail_after(WAIT):
        state = await child.wait_ready()
    assert state.status == "ready" and state.pid is not None and pid_alive(state.pid)
    pid = state.pid
    await sup.stop("web")
    assert sup.state("web").status == "stopped"
    assert not pid_alive(pid)
    seen = []
    while True:
        try:
            seen.append(changes.receive_nowait()[1].status)
        except trio.WouldBlock:
            break
    assert seen[0] == "starting" and "ready" in seen and seen[-1] == "stopped"


async def test_supervisor_exit_without_restart_fails_with_reason(nursery: trio.Nursery) -> None:
    sup: Supervisor = await nursery.start(Supervisor(FAST).run)
    with capture_logs() as logs:
        await sup.start(ChildSpec("quitter", exit_argv(3), restart=False))
        with trio.fail_after(WAIT):
            state = await sup.wait_for("quitter", ("failed", "stopped"))
    assert state == ChildState("failed", None, 0, "exited with code 3")
    crash = [e for e in logs if e["event"] == "backend_crashed"]
    assert crash and crash[0]["child"] == "quitter" and crash[0]["code"] == 3


async def test_supervisor_sigkill_restarts_and_reports(nursery: trio.Nursery) -> None:
    sup: Supervisor = await nursery.start(Supervisor(FAST).run)
    with capture_logs() as logs:
        child = await sup.start(_http_spec("victim"))
        with trio.fail_after(WAIT):
            first = await child.wait_ready()
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        with trio.fail_after(WAIT):
            await sup.wait_for("victim", ("failed",))
            second = await sup.wait_for("victim", ("ready",))
    assert second.restarts == 1 and second.pid != first.pid and second.pid is not None
    crash = [e for e in logs if e["event"] == "backend_crashed"]
    assert crash[0]["child"] == "victim" and crash[0]["code"] == -signal.SIGKILL
    assert any(e["event"] == "backend_restarting" for e in logs)
    assert not pid_alive(first.pid)


async def test_supervisor_health_timeout_fails_and_kills(nursery: trio.Nursery) -> None:
    sup: Supervisor = await nursery.start(Supervisor(FAST).run)
    port = free_port()
    spec = ChildSpec("deaf", sleeper_argv(), health_url=f"http://127.0.0.1:{port}/health",
                     health_timeout=1.0, restart=False)
    child = await sup.start(spec)
    pid = child.state.pid
    with trio.fail_after(WAIT):
        state = await child.wait_ready()
    assert state.status == "failed" and "not healthy within 1s" in state.reason
    assert pid is not None and not pid_alive(pid)


async def test_supervisor_sigterm_ignored_gets_sigkill(nursery: trio.Nursery) -> None:
    sup: Supervisor = await nursery.start(Supervisor(FAST).run)
    child = await sup.start(_http_spec("stubborn", ignore_term=True))
    with trio.fail_after(WAIT):
        state = await child.wait_ready()
    t0 = trio.current_time()
    with trio.fail_after(WAIT):
        await sup.stop("stubborn")
    assert trio.current_time() - t0 >= FAST.backend_stop_grace * 0.9  # waited the grace first
    assert state.pid is not None and not pid_alive(state.pid)


async def test_supervisor_cancel_leaves_no_process(tmp_path: Path) -> None:
    pids: list[int] = []
    async with trio.open_nursery() as nursery:
        sup: Supervisor = await nursery.start(Supervisor(FAST).run)
        for i in range(2):
            child = await sup.start(_http_spec(f"c{i}", spawn_sleeper=True))
            with trio.fail_after(WAIT):
                state = await child.wait_ready()
            assert state.pid is not None
            pids += group_members(state.pid)
        assert len(pids) == 4  # two children, each with a grandchild in its group
        nursery.cancel_scope.cancel()
    await _wait_gone(pids)
    assert not any(pid_alive(p) for p in pids)


async def test_supervisor_missing_binary_fails(nursery: trio.Nursery) -> None:
    sup: Supervisor = await nursery.start(Supervisor(FAST).run)
    child = await sup.start(ChildSpec("ghost", ("/nonexistent/llama-server",)))
    assert child.state.status == "failed" and "cannot start" in child.state.reason
    with pytest.raises(KeyError):
        sup.state("never-started")


async def test_supervisor_start_requires_run() -> None:
    with pytest.raises(RuntimeError):
        await Supervisor(FAST).start(ChildSpec("x", sleeper_argv()))
