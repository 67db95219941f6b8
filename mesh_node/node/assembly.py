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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import structlog
import trio

from mesh_node import __version__
from mesh_node.backends.capabilities import llama_capability, mlx_capability
from mesh_node.backends.supervisor import Supervisor
from mesh_node.catalog.demo import demo_model_path
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
from mesh_node.transfer.service import TransferService

log = structlog.get_logger("mesh_node.node")


def _model_ref(m: ModelConfig, catalog: list[CatalogEntry]) -> str:
    """How a [[models]] entry's pin/replicas name its model in gossip: the catalog id of its
    file (a bare path is no id or alias, so the election could never match it), else the alias."""
    want = os.path.realpath(m.path.expanduser())
    found = next((e.id for e in catalog if os.path.realpath(e.path) == want), None)
    return found or m.alias or str(m.path)


def _preloads(cfg: Config, catalog: list[CatalogEntry]) -> tuple[str, ...]:
    """Models this node's config preloads: [[models]] preload = true, and the demo model
    (`demo_model = true` is a request to serve it: `make run` answers at once)."""
    refs = [_model_ref(m, catalog) for m in cfg.models if m.preload]
    demo = demo_model_path(cfg.node.data_dir) if cfg.demo_model else None  # assembled by scan
    if demo is not None:
        refs += [e.id for e in catalog if os.path.realpath(e.path) == os.path.realpath(demo)]
    return tuple(dict.fromkeys(refs))


@dataclass
class Inventory:
    """What this node has: usable catalog entries and capabilities. Empty at start: the node
    joins first, and `take_inventory` fills it in (catalog and probes run in parallel)."""

    catalog: list[CatalogEntry] = field(default_factory=list)
    capabilities: tuple[BackendCapability, ...] = ()
    usable: dict[str, CatalogEntry] = field(default_factory=dict)  # the election reads this
    known: trio.Event = field(default_factory=trio.Event)

    def set_catalog(self, catalog: list[CatalogEntry]) -> None:
        """Fill in place: the election and the status page hold these very objects."""
        self.catalog[:] = catalog
        self.usable.clear()
        self.usable.update({e.id: e for e in catalog if not e.error})


def scan_logged(cfg: Config) -> list[CatalogEntry]:
    catalog = scan_catalog(cfg)
    for e in catalog:
        if e.error:
            log.warning("catalog_entry_invalid", model=e.id, path=str(e.path), error=e.error)
    return catalog


async def take_inventory(cfg: Config, inv: Inventory, on_change: Callable[[], None]) -> None:
    """Scan the catalog and probe each backend at once (threads: file reads, `--version` runs,
    the MLX import ~1 s), each advertised as soon as it is known: a llama.cpp node can host
    its GGUF files before the MLX probe is done."""
    found: dict[str, BackendCapability] = {}

    async def catalog() -> None:
        inv.set_catalog(await trio.to_thread.run_sync(scan_logged, cfg))
        on_change()

    async def probe(name: str, fn: Callable[[Config], BackendCapability]) -> None:
        found[name] = await trio.to_thread.run_sync(fn, cfg)
        inv.capabilities = tuple(found[n] for n in ("llama", "mlx") if n in found)
        on_change()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(catalog)
        nursery.start_soon(probe, "llama", llama_capability)
        nursery.start_soon(probe, "mlx", mlx_capability)
    inv.known.set()
    on_change()


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
        headroom=cfg.election.headroom, shares=cfg.node.share_models,
        preload=_preloads(cfg, usable),
        idle=tuple((_model_ref(m, usable), int(m.idle_unload)) for m in cfg.models
                   if m.idle_unload is not None),
        idle_unload=int(cfg.election.idle_unload), max_replicas=cfg.election.max_replicas,
    )


class Node:
    """One mesh node. `run` starts it (started() once the API listens); `shutdown` leaves."""

    def __init__(self, config: Config, node_id: str, address: str, memory_offered: int,
                 timings: Timings = DEFAULT_TIMINGS) -> None:
        self.config = config
        self.node_id = node_id
        self.address = address
        self.memory_offered = memory_offered
        self.timings = replace(timings, load_timeout=config.election.load_timeout)
        self.keys = derive_keys(config.mesh.secret, config.mesh.name)
        self.events = EventHub()
        self.started_at = time.monotonic()
        self.gossip: GossipService | None = None
        self.api_port = config.api.port
        self._wired: _Wiring | None = None  # set in run, before any child or watcher starts
        self._mdns: MdnsDiscovery | None = None
        self._nursery_mdns: trio.Nursery | None = None
        self._inventory_logged = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Join first (gossip, static peers), then the API and the election; the inventory
        (catalog scan, backend probes) arrives meanwhile and is advertised when known."""
        cfg, t = self.config, self.timings
        if not self.keys.authenticated:
            log.warning("mesh_unauthenticated", mesh=cfg.mesh.name,
                        hint="set [mesh] secret or secret_file: anyone on this LAN can join")
        log.info("node_starting", node_id=self.node_id, address=self.address)
        inv = Inventory()
        async with trio.open_nursery() as nursery:
            gossip = GossipService(self.node_id, "0.0.0.0", cfg.mesh.gossip_port,
                                   (self.address, cfg.mesh.gossip_port), self.keys, t)
            self.gossip = gossip
            await nursery.start(gossip.run)
            local = LocalState(own_state(cfg, self.node_id, self.address, self.memory_offered,
                                         inv), gossip)
            local.start()
            if cfg.mesh.peers:  # the join goes out now; everything below runs meanwhile
                nursery.start_soon(static_peers, cfg.mesh.peers, gossip.add_seed,
                                   self._is_member_addr, t)
            nursery.start_soon(take_inventory, cfg, inv, self._inventory_changed)
            if cfg.mesh.peers:  # let the first push-pull finish before imports hold the loop
                with trio.move_on_after(t.join_head_start):
                    await gossip.joined.wait()
            supervisor: Supervisor = await nursery.start(Supervisor(t).run)
            view = MeshView(gossip.members)
            children = BackendChildren(supervisor, cfg, self.address, self._children_changed, t)
            usable = inv.usable  # one dict: copies fetched later join it (transfer/service.py)
            transfers = TransferService(cfg, self.node_id, self.keys, inv.catalog, usable,
                                        view.members, children.hosted, self.events, t,
                                        self._catalog_changed, inv.known)
            election = ElectionService(self.node_id, view.members, children, usable,
                                       gossip.joined, t, self._on_placement,
                                       on_fetch=transfers.want)
            counters = Counters(gossip, view, transfers=transfers)
            ctx = NodeContext(config=cfg, node_id=self.node_id, keys=self.keys,
                              events=self.events, view=view, election=election,
                              children=children, local=local, catalog=inv.catalog,
                              counters=counters, address=self.address,
                              started_at=self.started_at, transfers=transfers,
                              report=gossip.report_unreachable)
            self._wired = _Wiring(local, children, election, ctx, inv, transfers, usable)
            await nursery.start(transfers.run)
            # imported here, once gossip runs and the join is out: the API (Starlette, the
            # dialects, the server) takes ~0.35 s to import on this project's 2-core machine
            # (issue 16, start-up)
            from mesh_node.api.app import build_app
            from mesh_node.api.server import serve_api

            app = build_app(ctx, t, blobs=transfers)
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
            counters.mdns = await self._start_mdns(nursery, gossip, inv)
            self._mdns = counters.mdns
            self._inventory_changed()  # whatever is known already (mDNS caps included)
            log.info("node_ready", api=f"{cfg.api.host}:{self.api_port}",
                     gossip=cfg.mesh.gossip_port, mdns=counters.mdns is not None)
            task_status.started()

    def _inventory_changed(self) -> None:
        """The catalog or the capabilities became known: advertise them, re-plan."""
        w = self._wired
        if w is None:
            return  # Node.run calls again once everything is wired
        inv, before = w.inv, w.local.state
        w.local.update(learned=own_state(self.config, self.node_id, self.address,
                                         self.memory_offered, inv))
        now = w.local.state
        if now.capabilities != before.capabilities and self._mdns is not None \
                and self._nursery_mdns is not None:
            self._nursery_mdns.start_soon(partial(
                self._mdns.update, capabilities_txt=capability_tokens(now.capabilities)))
        if inv.known.is_set() and not self._inventory_logged:
            self._inventory_logged = True
            log.info("inventory_known", node_id=self.node_id, models=sorted(inv.usable),
                     capabilities=[f"{c.name}:{'ok' if c.available else c.reason}"
                                   for c in inv.capabilities],
                     after_s=round(time.monotonic() - self.started_at, 2))
        if now != before:
            w.election.poke()
            w.ctx.notify_change()

    async def _start_mdns(self, nursery: trio.Nursery, gossip: GossipService,
                          inv: Inventory) -> MdnsDiscovery | None:
        """mDNS (static peers started with gossip); its capability tokens follow the probes."""
        cfg = self.config
        if not cfg.mesh.mdns:
            return None
        mdns = MdnsDiscovery(self.node_id, cfg.node.name, self.keys.mesh_digest,
                             self.address, self.api_port, cfg.mesh.gossip_port,
                             capability_tokens(inv.capabilities), cfg.node.interfaces,
                             memory_offered=self.memory_offered)
        try:
            await nursery.start(mdns.run, lambda p: gossip.add_seed(p.address, p.gossip_port))
        except DiscoveryError as exc:
            log.warning("mdns_unavailable", error=str(exc))
            return None
        self._nursery_mdns = nursery
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
                       memory_free=self._memory_free(w.children.hosted(), w.usable))
        w.election.poke()
        w.ctx.notify_change()

    def _catalog_changed(self) -> None:
        """A digest was computed, a copy landed or was evicted: republish, re-plan."""
        w = self._wired
        if w is None:
            return
        w.local.update(catalog=tuple(e.to_summary() for e in w.usable.values()),
                       store_free=w.transfers.store_free)
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
            if change.load_only:  # demand may change the plan (load it, unload it, replicas)
                w.ctx.notify_load()  # and load moves the routing order
                w.election.poke()
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
        api = app.state.api  # type: ignore[attr-defined]
        while True:
            # new demand (a model's first open request here) goes out at once: the mesh
            # re-plans within about one gossip round, not a load_publish later
            with trio.move_on_after(self.timings.load_publish):
                await api.demand_news.wait()
            api.demand_news = trio.Event()
            if w.local.update_load(Load(api.inflight_total,
                                        api.demand.records(trio.current_time()))):
                w.election.poke()  # our own demand changed: re-plan now
            await trio.sleep(self.timings.demand_publish_min)
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
    transfers: TransferService
    usable: dict[str, CatalogEntry]
