"""The whole control loop, closed, on the fake LAN: gossip -> view -> plan -> roles -> serving.

Each simulated node runs the real pure pieces the trio node runs (the `Swim` core, `MeshView`
with the validating decoder, `control.decide` with the planner and the role diff, the join gate)
and a fake backend per role that publishes `starting`, then `ready` after a load time, exactly as
`BackendChildren.serving` words its records. The FakeLan clock drives everything, so a run of
minutes takes milliseconds and every run is reproducible from its seed.

The sim records what the properties need: every node's placement over time, each backend start
and stop, and when each node first saw each other node dead. Client requests (`request`) go
through the real `DemandBook` and are gossiped as the node gossips them (at once when new, else
every load_publish); a stopped backend holds its memory for `stop_s` and, like the node's
election step (which awaits each stop), the node starts nothing meanwhile. Every slice checks
that no node runs more model memory than it offers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from mesh_node.api.demand import DemandBook
from mesh_node.election.control import decide
from mesh_node.election.roles import HostRole
from mesh_node.election.rules import need_bytes
from mesh_node.election.standby import SuspectAges
from mesh_node.gossip.fakelan import FakeLan, LinkModel, sim_addr
from mesh_node.gossip.swim import Swim
from mesh_node.node.view import MeshView
from mesh_node.records import (
    BackendCapability,
    Load,
    ModelSummary,
    NodeState,
    Placement,
    Serving,
)
from mesh_node.records_wire import encode_load, encode_state
from mesh_node.timing import DEFAULT_TIMINGS, Timings

LLAMA = BackendCapability("llama", "b1", ("gguf",), True, True)
SLICE = 0.1  # the sim checks views this often (the node's election debounce is 0.3 s)


@dataclass
class _Child:
    key: object
    started: float
    ready_at: float
    workers: tuple[tuple[str, float], ...] = ()
    backend: str = "llama"


@dataclass
class SimNode:
    """One node: the real cores, a fake backend per role."""

    index: int
    core: Swim
    state: NodeState
    started: float
    load_s: float
    view: MeshView = field(init=False)
    hosts: dict[str, _Child] = field(default_factory=dict)
    worker: _Child | None = None
    worker_models: tuple[str, ...] = ()
    placement: Placement = Placement()
    planned: bool = False
    last_sig: object = None
    last_step: float = -1e9
    book: DemandBook = field(default_factory=DemandBook)
    requests: list[tuple[float, str]] = field(default_factory=list)  # (ends at, model)
    news: bool = False
    load_at: float = -1e9
    stopping: dict[str, float] = field(default_factory=dict)  # model -> memory freed at
    ages: SuspectAges = field(default_factory=lambda: SuspectAges(DEFAULT_TIMINGS.standby_after))
    standby_due: float | None = None

    def __post_init__(self) -> None:
        self.view = MeshView(self.core.members)

    @property
    def id(self) -> str:
        return self.core.id


def _structure(p: Placement) -> tuple[tuple[str, str, tuple[str, ...], tuple[tuple[str, float],
                                                                          ...]], ...]:
    """A placement without its reasons: what the nodes must agree on."""
    return tuple((m.model, m.mode, m.hosts, tuple((w.node_id, round(w.weight, 9))
                                                 for w in m.workers)) for m in p.models)


@dataclass
class Record:
    """What a run observed."""

    placements: list[tuple[float, str, tuple[object, ...]]] = field(default_factory=list)
    starts: list[tuple[float, str, str]] = field(default_factory=list)  # (t, node, model/role)
    stops: list[tuple[float, str, str]] = field(default_factory=list)  # (t, node, model)
    standby_starts: list[tuple[float, str, str]] = field(default_factory=list)  # beside the plan
    seen_dead: dict[tuple[str, str], float] = field(default_factory=dict)  # (observer, peer)
    violations: list[str] = field(default_factory=list)


class LoopSim:
    """N nodes on the fake LAN, each closing the control loop."""

    def __init__(self, seed: int, timings: Timings = DEFAULT_TIMINGS,
                 link: LinkModel | None = None, stop_s: float = 0.5) -> None:
        self.lan = FakeLan(seed=seed, timings=timings, link=link)
        self.t = timings
        self.stop_s = stop_s
        self.nodes: dict[str, SimNode] = {}
        self.rec = Record()
        self.memory: dict[str, int] = {}  # model id -> memory_bytes, from the catalogs

    # --- building ---------------------------------------------------------------------
    def add(self, i: int, memory_mib: int, catalog: Iterable[ModelSummary],
            seeds: Iterable[int] = (), load_s: float = 2.0, preload: bool = True,
            idle_unload: int = 900, max_replicas: int = 8) -> SimNode:
        """Start node n{i} now, offering `memory_mib`, holding `catalog` (preloaded, as an
        eager mesh would place it, unless `preload` is False: then models load on request),
        push-pulling with nodes `seeds`."""
        addr = sim_addr(i)
        memory = memory_mib << 20
        catalog = tuple(catalog)
        self.memory.update({m.id: m.memory_bytes for m in catalog})
        state = NodeState(f"n{i}", f"node{i}", addr[0], 9337, addr[1], memory, memory, (LLAMA,),
                          catalog, preload=tuple(m.id for m in catalog) if preload else (),
                          idle_unload=idle_unload, max_replicas=max_replicas)
        core = self.lan.add_node(i, seeds=[sim_addr(s) for s in seeds], state=encode_state(state))
        node = SimNode(i, core, state, self.lan.now, load_s)
        self.nodes[node.id] = node
        return node

    def request(self, i: int, model_id: str, seconds: float, keep: int | None = None) -> None:
        """A client request for `model_id` entering through node n{i} now, open `seconds`."""
        node = self.nodes[f"n{i}"]
        node.news |= node.book.begin(model_id, keep, self.lan.now)
        node.requests.append((self.lan.now + seconds, model_id))

    def crash(self, i: int) -> None:
        self.lan.crash(sim_addr(i))

    def leave(self, i: int) -> None:
        node = self.nodes[f"n{i}"]
        self.lan._handle(node.core.addr, node.core.leave(self.lan.now))
        self.lan._reschedule(node.core.addr)

    def running(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core.addr not in self.lan.crashed
                and not n.core.leaving]

    # --- running ----------------------------------------------------------------------
    def run_until(self, t_end: float) -> None:
        while self.lan.now < t_end - 1e-9:
            self.lan.run_until(min(t_end, self.lan.now + SLICE))
            now = self.lan.now
            for node in self.running():
                self._observe_deaths(node, now)
                self._step(node, now)

    def _observe_deaths(self, node: SimNode, now: float) -> None:
        # a tombstone lives for dead_reclaim (60 s) and the sim looks every 0.1 s: never missed
        for peer, rec in node.core.table.items():
            if rec.status in ("dead", "left"):
                self.rec.seen_dead.setdefault((node.id, peer), now)

    def _joined(self, node: SimNode, now: float) -> bool:
        """The join gate of ElectionService: a peer met, or the join window over."""
        return len(node.core.table) > 1 or now - node.started >= self.t.join_window

    def _demand(self, node: SimNode, now: float) -> None:
        """End due requests; gossip the demand as the node does (news at once, else timer)."""
        for end, model_id in [r for r in node.requests if r[0] <= now]:
            node.requests.remove((end, model_id))
            node.news |= node.book.end(model_id, now)
        if node.news or now - node.load_at >= self.t.load_publish:
            node.news, node.load_at = False, now
            inflight = sum(node.book.inflight(m) for m in self.memory)
            node.core.set_local_load(encode_load(Load(inflight, node.book.records(now))))
            self.lan._reschedule(node.core.addr)

    def _memory_check(self, node: SimNode, now: float) -> None:
        for model_id, until in list(node.stopping.items()):
            if until <= now:
                del node.stopping[model_id]
        held = [*(m for m, c in node.hosts.items() if not c.workers), *node.stopping]
        used = sum(need_bytes(self.memory.get(m, 0), node.state.headroom) for m in held)
        if used > node.state.memory_offered:
            self.rec.violations.append(f"t={now:.1f} {node.id} runs {sorted(held)}: "
                                       f"{used >> 20} MiB > {node.state.memory_offered >> 20}")

    def _step(self, node: SimNode, now: float) -> None:
        self._demand(node, now)
        self._memory_check(node, now)
        self._publish(node, now)  # backends that became ready since the last slice
        if not self._joined(node, now):
            return
        sig = tuple((m.node, m.status, m.incarnation, m.state_version, m.load, m.backed)
                    for m in node.core.members())
        due = sig != node.last_sig or now - node.last_step >= self.t.election_recheck or (
            node.standby_due is not None and now >= node.standby_due)
        if not due:
            return
        node.last_sig, node.last_step = sig, now
        members = node.view.members()
        node.ages.after = self.t.standby_after
        suspects, node.standby_due = node.ages.update(members, now)
        d = decide(node.id, members, set(node.hosts), {m.id for m in node.state.catalog},
                   suspects)
        if not node.planned or _structure(d.placement) != _structure(node.placement):
            self.rec.placements.append((now, node.id, _structure(d.placement)))
            self._check_dead_not_named(node, d.placement, now)
        node.placement, node.planned = d.placement, True
        for model in d.stop_hosts:
            if not node.hosts.pop(model).workers:  # a split's shares are not checked here
                node.stopping[model] = now + self.stop_s
            self.rec.stops.append((now, node.id, model))
        if d.worker_for:
            if node.worker is None:
                node.worker = _Child("worker", now, now + 0.5)
                self.rec.starts.append((now, node.id, "worker"))
            node.worker_models = d.worker_for
        else:
            node.worker, node.worker_models = None, ()
        for role in d.start_hosts:
            if node.stopping:  # the node's step awaits each stop before it starts anything
                node.last_sig = None  # so the next slice steps again
                break
            self._ensure_host(node, role, now, role in d.standby)
        self._publish(node, now)

    def _ensure_host(self, node: SimNode, role: HostRole, now: float, standby: bool) -> None:
        cur = node.hosts.get(role.model)
        if cur is not None and cur.key == role.key:
            return
        node.hosts[role.model] = _Child(role.key, now, now + node.load_s,
                                        tuple((w.node_id, w.weight) for w in role.workers),
                                        role.backend)
        (self.rec.standby_starts if standby else self.rec.starts).append(
            (now, node.id, role.model))

    def _publish(self, node: SimNode, now: float) -> None:
        serving: list[Serving] = []
        for model, c in sorted(node.hosts.items()):
            ready = now >= c.ready_at
            serving.append(Serving(model, "host", c.backend, ready, 9337,
                                   "ready" if ready else "starting", c.workers,
                                   int(c.ready_at) + 1 if ready else 0))
        if node.worker is not None:
            ready = now >= node.worker.ready_at
            serving += [Serving(m, "worker", "llama", ready, 50052,
                                "ready" if ready else "starting") for m in node.worker_models]
        new = dataclasses.replace(node.state, serving=tuple(serving))
        if new != node.state:
            node.state = new
            node.core.set_local_state(encode_state(new))
            self.lan._reschedule(node.core.addr)

    def _check_dead_not_named(self, node: SimNode, p: Placement, now: float) -> None:
        for m in p.models:
            named = set(m.hosts) | {w.node_id for w in m.workers}
            for peer in named:
                seen = self.rec.seen_dead.get((node.id, peer))
                if seen is not None and self.nodes[peer].core.addr in self.lan.crashed:
                    self.rec.violations.append(
                        f"t={now:.1f} {node.id} names {peer} for {m.model}, dead since {seen:.1f}")

    # --- reading ----------------------------------------------------------------------
    def agreed(self) -> tuple[object, ...] | None:
        """The placement every running node holds, if they all agree (and all have planned)."""
        nodes = self.running()
        if not nodes or not all(n.planned for n in nodes):
            return None
        shapes = {_structure(n.placement) for n in nodes}
        return shapes.pop() if len(shapes) == 1 else None

    def all_ready(self) -> bool:
        """Every role of the agreed placement is carried out and ready."""
        now = self.lan.now
        for n in self.running():
            for role in n.placement.models:
                if role.mode == "unservable" or role.served_as:
                    continue
                if n.id in role.hosts and not (role.model in n.hosts
                                               and now >= n.hosts[role.model].ready_at):
                    return False
        return True

    def last_change(self) -> float:
        """When any node's placement last changed."""
        return max((t for t, _, _ in self.rec.placements), default=0.0)


def model(mid: str, mib: int) -> ModelSummary:
    return ModelSummary(mid, mid, "llama", "gguf", mib << 20, mib << 20)

