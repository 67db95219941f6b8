"""`Node`: every room of one node started in one nursery, in dependency order.

The control loop, as it runs here:
  gossip (datagrams, push-pull) -> MeshView (typed, validated records) -> ElectionService
  (control.decide: plan + role diff) -> BackendChildren (children) -> LocalState (serving
  records back into gossip) ... and the API routes each request with NodeContext over the
  same view and placement.
Each part is built before the parts that read it; nothing refers forward.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial

import structlog
import trio

from mesh_node import __version__
from mesh_node.api.app import build_app
from mesh_node.api.server import serve_api
from mesh_node.backends.capabilities import detect_capabilities
from mesh_node.backends.supervisor import Supervisor
from mesh_node.catalog.entry import CatalogEntry
from mesh_node.catalog.scan import scan_catalog
from mesh_node.config.model import Config, ModelConfig
from mesh_node.discovery.mdns import DiscoveryError, MdnsDiscovery
from mesh_node.discovery.static import static_peers
from mesh_node.discovery.txt import capability_tokens
from mesh_node.election.explain import placement_to_json
from mesh_node.election.service import ElectionService
from mesh_node.gossip.shell import GossipService
from mesh_node.node.children import BackendChildren
from mesh_node.node.context import Counters, NodeContext
from mesh_node.node.local import LocalState, far_peers
from mesh_node.node.view import MeshView
from mesh_node.records import BackendCapability, Load, NodeState, Placement
from mesh_node.security import derive_keys
from mesh_node.status.events import EventHub
from mesh_node.timing import DEFAULT_TIMINGS, Timings

log = structlog.get_logger("mesh_node.node")


def _model_ref(m: ModelConfig, catalog: list[CatalogEntry]) -> str:
    """How a [[models]] entry's pin/replicas name its model in gossip: the catalog id of its
    file (a bare path is no id or alias, so the election could never match it), else the alias."""
    want = os.path.realpath(m.path.expanduser())
    found = next((e.id for e in catalog if os.path.realpath(e.path) == want), None)
    return found or m.alias or str(m.path)


@dataclass(frozen=True)
class Inventory:
    """What this node has, found before it joins: usable catalog entries and capabilities."""

    catalog: list[CatalogEntry]
    capabilities: tuple[BackendCapability, ...]

    @property
    def usable(self) -> dict[str, CatalogEntry]:
        return {e.id: e for e in self.catalog if not e.error}


async def take_inventory(cfg: Config) -> Inventory:
    catalog: list[CatalogEntry] = await trio.to_thread.run_sync(scan_catalog, cfg)
    for e in catalog:
        if e.error:
            log.warning("catalog_entry_invalid", model=e.id, path=str(e.path), error=e.error)
    caps = await trio.to_thread.run_sync(detect_capabilities, cfg)
    return Inventory(catalog, caps)


def own_state(cfg: Config, node_id: str, address: str, memory: int, inv: Inventory) -> NodeState:
    """This node's first state record."""
    usable = list(inv.usable.values())
    return NodeState(
        node_id=node_id, name=cfg.node.name, address=address, api_port=cfg.api.port,
        gossip_port=cfg.mesh.gossip_port, memory_offered=memory, memory_free=memory,
        capabilities=inv.capabilities, catalog=tuple(e.to_summary() for e in usable),
        version=__version__, rpc_port=cfg.backends.llama.rpc_port,
        pins=tuple((_model_ref(m, usable), m.pin) for m in cfg.models if m.pin),
        replicas=tuple((_model_ref(m, usable), m.replicas) for m in cfg.models
                       if m.replicas > 1),
        headroom=cfg.election.headroom,
    )


class Node:
    """One mesh node. `run` starts it (started() once the API listens); `shutdown` leaves."""

    def __init__(self, config: Config, node_id: str, address: str, memory_offered: int,
                 timings: Timings = DEFAULT_TIMINGS) -> None:
        self.config = config
        self.node_id = node_id
        self.address = address
        self.memory_offered = memory_offered
        self.timings = timings
        self.keys = derive_keys(config.mesh.secret, config.mesh.name)
        self.events = EventHub()
        self.started_at = time.monotonic()
        self.gossip: GossipService | None = None
        self.api_port = config.api.port
        self._wired: _Wiring | None = None  # set in run, before any child or watcher starts

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg, t = self.config, self.timings
        if not self.keys.authenticated:
            log.warning("mesh_unauthenticated", mesh=cfg.mesh.name,
                        hint="set [mesh] secret or secret_file: anyone on this LAN can join")
        inv = await take_inventory(cfg)
        log.info("node_starting", node_id=self.node_id, address=self.address,
                 models=sorted(inv.usable),
                 capabilities=[f"{c.name}:{'ok' if c.available else c.reason}"
                               for c in inv.capabilities])
        async with trio.open_nursery() as nursery:
            supervisor: Supervisor = await nursery.start(Supervisor(t).run)
            gossip = GossipService(self.node_id, "0.0.0.0", cfg.mesh.gossip_port,
                                   (self.address, cfg.mesh.gossip_port), self.keys, t)
            self.gossip = gossip
            await nursery.start(gossip.run)
            view = MeshView(gossip.members)
            local = LocalState(own_state(cfg, self.node_id, self.address, self.memory_offered,
                                         inv), gossip)
            local.start()
            children = BackendChildren(supervisor, cfg, self.address, self._children_changed, t)
            election = ElectionService(self.node_id, view.members, children, inv.usable,
                                       gossip.joined, t, self._on_placement)
            counters = Counters(gossip, view)
            ctx = NodeContext(config=cfg, node_id=self.node_id, keys=self.keys,
                              events=self.events, view=view, election=election,
                              children=children, local=local, catalog=inv.catalog,
                              counters=counters, address=self.address,
                              started_at=self.started_at)
            self._wired = _Wiring(local, children, election, ctx, inv)
            app = build_app(ctx, t)
            self.api_port = await nursery.start(serve_api, app, cfg.api.host, cfg.api.port)
            if cfg.api.tls_cert is not None and cfg.api.tls_key is not None:  # client HTTPS
                await nursery.start(partial(serve_api, tls=(cfg.api.tls_cert, cfg.api.tls_key)),
                                    app, cfg.api.host, cfg.api.tls_port)
            if cfg.api.ollama_port:  # the Ollama API on a listener of its own, when asked
                await nursery.start(serve_api, app.state.ollama_app, cfg.api.host,
                                    cfg.api.ollama_port)

            nursery.start_soon(self._watch_gossip, gossip)
            nursery.start_soon(self._watch_children, supervisor)
            nursery.start_soon(self._publish_load, app, view)
            await nursery.start(election.run)
            counters.mdns = await self._start_discovery(nursery, gossip, inv)
            log.info("node_ready", api=f"{cfg.api.host}:{self.api_port}",
                     gossip=cfg.mesh.gossip_port, mdns=counters.mdns is not None)
            task_status.started()

    async def _start_discovery(self, nursery: trio.Nursery, gossip: GossipService,
                               inv: Inventory) -> MdnsDiscovery | None:
        cfg = self.config
        mdns: MdnsDiscovery | None = None
        if cfg.mesh.mdns:
            mdns = MdnsDiscovery(self.node_id, cfg.node.name, self.keys.mesh_digest,
                                 self.address, self.api_port, cfg.mesh.gossip_port,
                                 capability_tokens(inv.capabilities), cfg.node.interfaces,
                                 memory_offered=self.memory_offered)
            try:
                await nursery.start(mdns.run, lambda p: gossip.add_seed(p.address, p.gossip_port))
            except DiscoveryError as exc:
                log.warning("mdns_unavailable", error=str(exc))
                mdns = None
        if cfg.mesh.peers:
            nursery.start_soon(static_peers, cfg.mesh.peers, gossip.add_seed,
                               self._is_member_addr, self.timings)
        return mdns

    def _is_member_addr(self, host: str, port: int) -> bool:
        if self.gossip is None:
            return False
        return any(m.address == host and m.port == port and m.status == "alive"
                   for m in self.gossip.members() if m.node != self.node_id)

    def _memory_free(self, hosted: set[str], by_id: dict[str, CatalogEntry]) -> int:
        """Offered memory minus what this node's hosted models need (shown to operators;
        the planner itself works from offered memory, see election/planner.py)."""
        used = sum(by_id[m].memory_bytes for m in hosted if m in by_id)
        return max(0, self.memory_offered - used)

    def _children_changed(self) -> None:
        """A child started, stopped or changed state: republish serving, re-plan."""
        w = self._wired
        if w is None:
            return
        w.local.update(serving=w.children.serving(),
                       memory_free=self._memory_free(w.children.hosted(), w.inv.usable))
        w.election.poke()
        w.ctx.notify_change()

    def _on_placement(self, old: Placement, new: Placement) -> None:
        self.events.publish("placement", {"placement": placement_to_json(new, {})})
        if self._wired is not None:  # the route table follows the placement at once
            self._wired.ctx.notify_change()

    async def _watch_gossip(self, gossip: GossipService) -> None:
        w = self._wired
        assert w is not None
        async for change in gossip.subscribe():
            m = change.member
            if change.load_only:
                w.ctx.notify_load()  # load moves routing order only
                continue
            if m.node != self.node_id:
                self.events.publish("member", {"id": m.node, "status": m.status,
                                               "incarnation": m.incarnation})
            w.election.poke()
            w.ctx.notify_change()

    async def _watch_children(self, supervisor: Supervisor) -> None:
        async for name, st in supervisor.subscribe():
            self.events.publish("serving", {"child": name, "state": str(st)})
            self._children_changed()

    async def _publish_load(self, app: object, view: MeshView) -> None:
        """Volatile load, far peers, and serving records whose failure cool-down ran out
        (LocalState republishes only what changed)."""
        w = self._wired
        assert w is not None
        max_rtt = self.config.election.max_rtt_ms
        while True:
            await trio.sleep(self.timings.load_publish)
            api = app.state.api  # type: ignore[attr-defined]
            w.local.update_load(Load(inflight=api.inflight_total))
            peers = [m for m in view.members() if m.node_id != self.node_id]
            w.local.update(serving=w.children.serving(),
                           far=far_peers(peers, max_rtt, w.local.state.far))

    async def shutdown(self) -> None:
        """Leave the mesh (others see `left`, not `dead`); the caller then cancels the nursery."""
        if self.gossip is not None:
            await self.gossip.leave(timeout=1.0)


@dataclass(frozen=True)
class _Wiring:
    """The parts the node's watchers act on, built once in `Node.run`."""

    local: LocalState
    children: BackendChildren
    election: ElectionService
    ctx: NodeContext
    inv: Inventory
