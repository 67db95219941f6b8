"""ElectionService: re-plan from the view and reconcile this node's children (fake children)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from mesh_node.catalog.entry import CatalogEntry
from mesh_node.election.roles import HostRole
from mesh_node.election.service import ElectionService
from mesh_node.records import BackendCapability, MemberView, ModelSummary, NodeState, Serving
from mesh_node.timing import DEFAULT_TIMINGS

GIB = 1 << 30
LLAMA = BackendCapability("llama", "1", ("gguf",), True, True)
MODEL = ModelSummary("m", "m", "llama", "gguf", GIB, GIB)
ENTRY = CatalogEntry("m", Path("/m.gguf"), "gguf", "llama", GIB, GIB, "Q4_K_M", "m")


def node(nid: str, mem: int, holds: bool, serving: tuple[Serving, ...] = ()) -> NodeState:
    return NodeState(node_id=nid, name=nid, address=f"10.0.0.{ord(nid[0]) % 250}", api_port=9337,
                     gossip_port=9338, memory_offered=mem, memory_free=mem, capabilities=(LLAMA,),
                     catalog=(MODEL,) if holds else (), serving=serving,
                     preload=("m",) if holds else ())  # wanted from the start (issue 13)


class FakeChildren:
    def __init__(self) -> None:
        self.hosts: dict[str, HostRole] = {}
        self.worker: tuple[str, ...] = ()
        self.calls: list[str] = []

    async def ensure_host(self, role: HostRole, entry: CatalogEntry) -> None:
        if self.hosts.get(role.model) != role:
            self.calls.append(f"start:{role.model}:{len(role.workers)}")
        self.hosts[role.model] = role

    async def stop_host(self, model: str) -> None:
        self.calls.append(f"stop:{model}")
        self.hosts.pop(model, None)

    async def ensure_worker(self, models: tuple[str, ...]) -> None:
        if not self.worker:
            self.calls.append("worker:start")
        self.worker = models

    async def stop_worker(self) -> None:
        if self.worker:
            self.calls.append("worker:stop")
        self.worker = ()

    def hosted(self) -> set[str]:
        return set(self.hosts)


def service(me: str, states: dict[str, NodeState], joined: bool = True
            ) -> tuple[ElectionService, FakeChildren]:
    kids = FakeChildren()
    event = trio.Event()
    if joined:
        event.set()

    def view() -> list[MemberView]:
        return [MemberView(k, "alive", 0, s.address, 9338, s) for k, s in states.items()]

    svc = ElectionService(me, view, kids, {"m": ENTRY}, event)
    return svc, kids


async def test_solo_host_starts_and_others_do_nothing() -> None:
    states = {"a": node("a", 4 * GIB, True), "b": node("b", 2 * GIB, False)}
    svc_a, kids_a = service("a", states)
    svc_b, kids_b = service("b", states)
    await svc_a.step()
    await svc_b.step()
    assert kids_a.calls == ["start:m:0"]
    assert kids_b.calls == []
    assert svc_a.placement == svc_b.placement  # same view, same plan, on every node


async def test_split_host_waits_for_worker_readiness_then_starts() -> None:
    states = {"a": node("a", GIB, True), "b": node("b", 2 * GIB, False)}
    host, kids_host = service("a", states)
    worker, kids_worker = service("b", states)
    await host.step()
    await worker.step()
    assert host.placement.models[0].mode == "split"
    assert kids_worker.calls == ["worker:start"]
    assert kids_host.calls == []  # the worker has not said it is ready
    states["b"] = node("b", 2 * GIB, False, (Serving("m", "worker", "llama", True, 50052, "ready"),))
    await host.step()
    assert kids_host.calls == ["start:m:1"]


async def test_host_lost_moves_model_and_old_role_ends() -> None:
    serving = (Serving("m", "host", "llama", True, 9337, "ready"),)
    states = {"a": node("a", 4 * GIB, True, serving), "c": node("c", 8 * GIB, True)}
    svc_c, kids_c = service("c", states)
    await svc_c.step()
    assert kids_c.calls == []  # a is the serving incumbent: kept despite c's larger memory
    del states["a"]
    await svc_c.step()
    assert kids_c.calls == ["start:m:0"]


async def test_poke_debounces_into_one_step(autojump_clock: trio.testing.MockClock) -> None:
    states = {"a": node("a", 4 * GIB, True)}
    svc, kids = service("a", states)
    steps = 0
    orig = svc.step

    async def counting() -> None:
        nonlocal steps
        steps += 1
        await orig()

    svc.step = counting  # type: ignore[method-assign]
    async with trio.open_nursery() as n:
        await n.start(svc.run)
        await trio.testing.wait_all_tasks_blocked()
        assert steps == 1  # joined: the first plan is carried out at once
        for _ in range(10):
            svc.poke()
        await trio.sleep(1.0)
        n.cancel_scope.cancel()
    assert steps == 2  # ten pokes, one debounced step
    assert kids.calls == ["start:m:0"]


async def test_no_plan_carried_out_before_join_or_join_window(
        autojump_clock: trio.testing.MockClock) -> None:
    """Join steal: a newcomer plans only after it met the mesh (push-pull) or, alone, after the
    join window; before that it starts nothing, even holding the file and the most memory."""
    states = {"new": node("new", 8 * GIB, True)}
    svc, kids = service("new", states, joined=False)
    async with trio.open_nursery() as n:
        await n.start(svc.run)
        await trio.sleep(DEFAULT_TIMINGS.join_window * 0.9)
        assert kids.calls == [] and not svc.planned_once
        await trio.sleep(DEFAULT_TIMINGS.join_window * 0.2)
        assert kids.calls == ["start:m:0"]  # alone: the window ended, it serves its model
        n.cancel_scope.cancel()


async def test_joined_newcomer_keeps_the_ready_incumbent() -> None:
    """The newcomer has more memory and the lower id; the ready incumbent keeps the model,
    and a starting newcomer record ranks below a ready one."""
    ready = (Serving("m", "host", "llama", True, 9337, "ready", (), 100),)
    starting = (Serving("m", "host", "llama", False, 9337, "starting"),)
    states = {"b": node("b", 4 * GIB, True, ready), "a": node("a", 16 * GIB, True, starting)}
    svc, kids = service("a", states)
    await svc.step()
    assert svc.placement.models[0].hosts == ("b",)
    assert kids.calls == []



@pytest.mark.parametrize(("backed", "expected"), [(False, DEFAULT_TIMINGS.standby_after),
                                                  (True, 0.0)])
async def test_standby_clock_starts_at_the_poke_and_a_backed_suspicion_skips_it(
        autojump_clock: trio.testing.MockClock, backed: bool, expected: float) -> None:
    """The holder that would take over starts the standby standby_after after the suspicion's
    poke (not after the debounced step), and at once when the suspicion is backed."""
    serving = (Serving("m", "host", "llama", True, 9337, "ready"),)
    states = {"a": node("a", 4 * GIB, True, serving), "b": node("b", 4 * GIB, True)}
    status = {"a": "alive"}
    kids = FakeChildren()
    joined = trio.Event()
    joined.set()

    def view() -> list[MemberView]:
        return [MemberView(k, status.get(k, "alive"), 0, s.address, 9338, s,  # type: ignore[arg-type]
                           backed=backed and status.get(k) == "suspect")
                for k, s in states.items()]

    svc = ElectionService("b", view, kids, {"m": ENTRY}, joined)
    started: list[float] = []
    orig = kids.ensure_host

    async def timed(role: HostRole, entry: CatalogEntry) -> None:
        started.append(trio.current_time())
        await orig(role, entry)

    kids.ensure_host = timed  # type: ignore[method-assign]
    async with trio.open_nursery() as n:
        await n.start(svc.run)
        await trio.testing.wait_all_tasks_blocked()
        assert kids.calls == []  # a hosts
        t0 = trio.current_time()
        status["a"] = "suspect"
        svc.poke()
        await trio.sleep(2.0)
        n.cancel_scope.cancel()
    assert kids.calls == ["start:m:0"]
    assert abs(started[0] - t0 - expected) < 0.01, started[0] - t0
