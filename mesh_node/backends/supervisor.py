"""One supervisor for every child process (inference servers, RPC workers).

States: starting -> ready (health passed) -> failed(reason) | stopped. A crash is logged as
`backend_crashed` and, when the spec asks for it, the child restarts after a capped exponential
backoff (timing.py). Stopping sends SIGTERM to the child's process group, SIGKILL after the
grace period. Cancelling `run` kills every child under a shielded cleanup.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import structlog
import trio

from mesh_node.backends.health import wait_healthy
from mesh_node.backends.process import ChildProcess, terminate
from mesh_node.timing import DEFAULT_TIMINGS, Timings

log = structlog.get_logger(__name__)

Status = Literal["starting", "ready", "failed", "stopped"]
OUTPUT_TAIL = 20  # lines kept to explain a crash


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # added to the node's environment
    health_url: str | None = None  # GET until 200
    health_timeout: float = DEFAULT_TIMINGS.backend_health_timeout
    restart: bool = True
    health_tcp: tuple[str, int] | None = None  # TCP connect check (RPC workers have no HTTP)


@dataclass(frozen=True)
class ChildState:
    status: Status
    pid: int | None = None
    restarts: int = 0
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason else self.status


@dataclass
class _Record:
    spec: ChildSpec
    state: ChildState
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    stopping: bool = False
    announced: bool = False  # task_status.started() was called for this child
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_TAIL))


@dataclass(frozen=True)
class Child:
    """Handle returned by `Supervisor.start`."""

    name: str
    supervisor: Supervisor

    @property
    def state(self) -> ChildState:
        return self.supervisor.state(self.name)

    async def wait_ready(self) -> ChildState:
        """Wait until ready or a terminal state (bound it with trio.fail_after)."""
        return await self.supervisor.wait_for(self.name, ("ready", "failed", "stopped"))


class Supervisor:
    """Runs children inside its own nursery; see the module docstring for the life cycle."""

    def __init__(self, timings: Timings = DEFAULT_TIMINGS) -> None:
        self._t = timings
        self._nursery: trio.Nursery | None = None
        self._records: dict[str, _Record] = {}
        self._subscribers: list[trio.MemorySendChannel[tuple[str, ChildState]]] = []
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Own the children until cancelled; every child is killed on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for s in self._subscribers:
                s.close()

    async def start(self, spec: ChildSpec) -> Child:
        """Spawn a child; returns once the process exists (readiness comes as a state change)."""
        if self._nursery is None:
            raise RuntimeError("Supervisor.run is not running")
        old = self._records.get(spec.name)
        if old is not None and not old.done.is_set():
            raise ValueError(f"child {spec.name!r} is already running")
        rec = _Record(spec, ChildState("starting"))
        self._records[spec.name] = rec
        await self._nursery.start(self._supervise, rec)
        return Child(spec.name, self)

    async def stop(self, name: str) -> None:
        """SIGTERM the child's group, SIGKILL after the grace period; no restart."""
        rec = self._records.get(name)
        if rec is None:
            return
        rec.stopping = True
        rec.scope.cancel()
        await rec.done.wait()

    def state(self, name: str) -> ChildState:
        """Current state of a child (KeyError if never started)."""
        return self._records[name].state

    def names(self) -> list[str]:
        return list(self._records)

    def subscribe(self, buffer: int = 64) -> trio.MemoryReceiveChannel[tuple[str, ChildState]]:
        """A channel of (name, state) changes; a full or closed subscriber just misses changes."""
        send, recv = trio.open_memory_channel[tuple[str, ChildState]](buffer)
        self._subscribers.append(send)
        return recv

    async def wait_for(self, name: str, statuses: tuple[Status, ...]) -> ChildState:
        """Wait until the child's status is one of `statuses` (bound it with trio.fail_after)."""
        while self.state(name).status not in statuses:
            await self._changed.wait()
        return self.state(name)

    def _set(self, rec: _Record, **changes: object) -> None:
        rec.state = replace(rec.state, **changes)  # type: ignore[arg-type]
        name = rec.spec.name
        for s in list(self._subscribers):
            try:
                s.send_nowait((name, rec.state))
            except trio.WouldBlock:
                log.warning("backend_state_dropped", child=name)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(s)
        self._changed.set()
        self._changed = trio.Event()

    async def _supervise(self, rec: _Record, task_status: trio.TaskStatus[None]) -> None:
        """Run, watch and restart one child until stopped, cancelled or failed for good."""
        spec, delay = rec.spec, self._t.backend_restart_min
        try:
            with rec.scope:
                while True:
                    ran_for, code = await self._run_once(rec, task_status)
                    if code is None or not spec.restart:
                        return
                    delay = self._t.backend_restart_min if ran_for >= self._t.backend_restart_max \
                        else delay
                    log.info("backend_restarting", child=spec.name, delay=delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, self._t.backend_restart_max)
                    self._set(rec, restarts=rec.state.restarts + 1)
        finally:
            if rec.stopping or rec.state.status != "failed":
                self._set(rec, status="stopped", pid=None, reason="")
                log.info("backend_stopped", child=spec.name)
            self._announce(rec, task_status)
            rec.done.set()

    @staticmethod
    def _announce(rec: _Record, task_status: trio.TaskStatus[None]) -> None:
        if not rec.announced:
            rec.announced = True
            task_status.started()

    async def _run_once(self, rec: _Record,
                        task_status: trio.TaskStatus[None]) -> tuple[float, int | None]:
        """One process lifetime: (seconds it ran, exit code or None when it could not spawn)."""
        spec = rec.spec
        self._set(rec, status="starting", pid=None, reason="")
        try:
            proc = ChildProcess(spec.argv, {**os.environ, **spec.env})
        except OSError as exc:
            self._set(rec, status="failed", reason=f"cannot start {spec.argv[0]}: {exc}")
            log.error("backend_start_failed", child=spec.name, error=str(exc))
            return 0.0, None
        self._set(rec, pid=proc.pid)
        log.info("backend_started", child=spec.name, pid=proc.pid, argv=list(spec.argv))
        self._announce(rec, task_status)
        t0 = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, rec, proc)
                nursery.start_soon(self._watch_health, rec, proc)
                await proc.wait_exited()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                code = await terminate(proc, self._t.backend_stop_grace)
        ran_for = trio.current_time() - t0
        if not rec.stopping:
            reason = rec.state.reason or f"exited with code {code}"
            self._set(rec, status="failed", pid=None, reason=reason)
            log.warning("backend_crashed", child=spec.name, code=code, reason=reason,
                        restarts=rec.state.restarts, output=list(rec.tail)[-5:])
        return ran_for, code

    async def _watch_health(self, rec: _Record, proc: ChildProcess) -> None:
        spec = rec.spec
        with trio.move_on_after(spec.health_timeout):
            await wait_healthy(spec.health_url, spec.health_tcp)
            self._set(rec, status="ready")
            log.info("backend_ready", child=spec.name, pid=proc.pid)
            return
        # not healthy in time: fail it, and let the exit count as a crash
        probe = spec.health_url or f"tcp {spec.health_tcp}"
        why = f"not healthy within {spec.health_timeout:g}s ({probe})"
        rec.state = replace(rec.state, reason=why)  # reported when the kill lands as a crash
        log.warning("backend_unhealthy", child=spec.name, reason=why)
        proc.signal_group(signal.SIGTERM)
        await trio.sleep(self._t.backend_stop_grace)
        proc.signal_group(signal.SIGKILL)  # still here: the group leader has not exited

    async def _pump(self, rec: _Record, proc: ChildProcess) -> None:
        """Stream the child's output lines into structlog at debug level."""
        buf = b""
        while True:
            chunk = await proc.output.receive_some(65536)
            if not chunk:
                return
            *lines, buf = (buf + chunk).split(b"\n")
            buf = buf[-4096:]  # a child printing without newlines must not grow memory
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    rec.tail.append(line)
                    log.debug("backend_output", child=rec.spec.name, line=line)

