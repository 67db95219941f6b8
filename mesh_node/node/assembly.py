"""`Node`: every room of one node started in one nursery, in dependency order."""

from __future__ import annotations

import os
import time
from typing import Any

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
from mesh_node.election.service import ElectionService
from mesh_node.gossip.shell import GossipService
from mesh_node.node.children import BackendChildren
from mesh_node.node.context import NodeContext
from mesh_node.node.local import LocalState
from mesh_node.node.view import MeshView
from mesh_node.records import NodeState, Placement
from mesh_node.security import derive_keys
from mesh_node.status.events import EventHub
from mesh_node.timing import DEFAULT_TIMINGS, Timings

log = structlog.get_logger("mesh_node.node")
INFLIGHT_PUBLISH_S = 1.0  # in-flight load is gossiped at most this often (it changes per request)


def _model_ref(m: ModelConfig, catalog: list[CatalogEntry]) -> str:
    """How a [[models]] entry's pin/replicas name its model in gossip: the catalog id of its
    file (a bare path is no id or alias, so the election could never match it), else the alias."""
    want = os.path.realpath(m.path.expanduser())
    found = next((e.id for e in catalog if os.path.realpath(e.path) == want), None)
    return found or m.alias or str(m.path)


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

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        if not self.keys.authenticated:
            log.warning("mesh_unauthenticated", mesh=cfg.mesh.name,
                        hint="set [mesh] secret or secret_file: anyone on this LAN can join")
        catalog: list[CatalogEntry] = await trio.to_thread.run_sync(scan_catalog, cfg)
        for e in catalog:
            if e.error:
                log.warning("catalog_entry_invalid", model=e.id, path=str(e.path), error=e.error)
        caps = await trio.to_thread.run_sync(detect_capabilities, cfg)
        log.info("node_starting", node_id=self.node_id, address=self.address,
                 models=[e.id for e in catalog if not e.error],
                 capabilities=[f"{c.name}:{'ok' if c.available else c.reason}" for c in caps])
        usable = [e for e in catalog if not e.error]
        by_id = {e.id: e for e in usable}

        async with trio.open_nursery() as nursery:
            supervisor: Supervisor = await nursery.start(Supervisor(self.timings).run)
            gossip = GossipService(self.node_id, "0.0.0.0", cfg.mesh.gossip_port,
                                   (self.address, cfg.mesh.gossip_port), self.keys, self.timings)
            self.gossip = gossip
            await nursery.start(gossip.run)
            view = MeshView(gossip.members)
            state = NodeState(
                node_id=self.node_id, name=cfg.node.name, address=self.address,
                api_port=cfg.api.port, gossip_port=cfg.mesh.gossip_port,
                memory_offered=self.memory_offered, memory_free=self.memory_offered,
                capabilities=caps, catalog=tuple(e.to_summary() for e in usable),
                version=__version__, rpc_port=cfg.backends.llama.rpc_port,
                pins=tuple((_model_ref(m, usable), m.pin) for m in cfg.models if m.pin),
                replicas=tuple((_model_ref(m, usable), m.replicas) for m in cfg.models
                               if m.replicas > 1),
            )
            local = LocalState(state, gossip.set_local_state)
            local.start()

            ctx: NodeContext | None = None

            def on_children_change() -> None:
                local.update(serving=children.serving(),
                             memory_free=self._memory_free(children.hosted(), by_id))
                election.poke()
                if ctx is not None:
                    ctx.notify_change()

            children = BackendChildren(supervisor, cfg, self.address, on_children_change)
            election = ElectionService(self.node_id, view.live_states, children, by_id,
                                       cfg.election, self.timings, self._on_placement)
            ctx = NodeContext(
                config=cfg, node_id=self.node_id, keys=self.keys, events=self.events,
                members=view.members, placement=lambda: election.placement,
                local_backends=children.local_backends, catalog=catalog,
                counters=lambda: self._counters(gossip, mdns),
                planned=lambda: election.planned_once, address=self.address,
                me=lambda: local.state, started_at=self.started_at)
            app = build_app(ctx, self.timings)
            self.api_port = await nursery.start(serve_api, app, cfg.api.host, cfg.api.port)
            if cfg.api.ollama_port:  # the Ollama API on a listener of its own, when asked
                await nursery.start(serve_api, app.state.ollama_app, cfg.api.host,
                                    cfg.api.ollama_port)

            nursery.start_soon(self._watch_gossip, gossip, election, ctx)
            nursery.start_soon(self._watch_children, supervisor, on_children_change)
            nursery.start_soon(self._publish_load, app, local, children)
            await nursery.start(election.run)

            mdns: MdnsDiscovery | None = None
            if cfg.mesh.mdns:
                mdns = MdnsDiscovery(self.node_id, cfg.node.name, self.keys.mesh_digest,
                                     self.address, self.api_port, cfg.mesh.gossip_port,
                                     capability_tokens(caps), cfg.node.interfaces,
                                     memory_offered=self.memory_offered)
                try:
                    await nursery.start(mdns.run, lambda p: gossip.add_seed(p.address, p.gossip_port))
                except DiscoveryError as exc:
                    log.warning("mdns_unavailable", error=str(exc))
                    mdns = None
            if cfg.mesh.peers:
                nursery.start_soon(static_peers, cfg.mesh.peers, gossip.add_seed,
                                   self._is_member_addr, self.timings)
            log.info("node_ready", api=f"{cfg.api.host}:{self.api_port}",
                     gossip=cfg.mesh.gossip_port, mdns=mdns is not None)
            task_status.started()

    def _is_member_addr(self, host: str, port: int) -> bool:
        if self.gossip is None:
            return False
        return any(m.address == host and m.port == port and m.status == "alive"
                   for m in self.gossip.members() if m.node_id != self.node_id)

    def _memory_free(self, hosted: set[str], by_id: dict[str, CatalogEntry]) -> int:
        """Offered memory minus what this node's hosted models need (shown to operators;
        the planner itself works from offered memory, see election/planner.py)."""
        used = sum(by_id[m].memory_bytes for m in hosted if m in by_id)
        return max(0, self.memory_offered - used)

    def _on_placement(self, old: Placement, new: Placement) -> None:
        from mesh_node.election.explain import placement_to_json

        self.events.publish("placement", {"placement": placement_to_json(new, {})})

    @staticmethod
    def _counters(gossip: GossipService, mdns: MdnsDiscovery | None) -> dict[str, Any]:
        out: dict[str, Any] = {f"gossip_{k}": v for k, v in gossip.stats.items()}
        out.update({f"gossip_{k}": v for k, v in gossip.counters.items()})
        if mdns is not None:
            out.update({f"mdns_{k}": v for k, v in mdns.counters.as_dict().items()})
        return out

    async def _watch_gossip(self, gossip: GossipService, election: ElectionService,
                            ctx: NodeContext) -> None:
        changes = gossip.subscribe()
        async for m in changes:
            if m.node_id != self.node_id:
                self.events.publish("member", {"id": m.node_id, "status": m.status,
                                               "incarnation": m.incarnation})
            election.poke()
            ctx.notify_change()

    async def _watch_children(self, supervisor: Supervisor, on_change: Any) -> None:
        async for name, st in supervisor.subscribe():
            self.events.publish("serving", {"child": name, "state": str(st)})
            on_change()

    async def _publish_load(self, app: Any, local: LocalState, children: BackendChildren) -> None:
        """In-flight load, and serving records whose failure cool-down ran out (LocalState
        republishes only when something changed)."""
        while True:
            await trio.sleep(INFLIGHT_PUBLISH_S)
            local.update(inflight=app.state.api.inflight_total, serving=children.serving())

    async def shutdown(self) -> None:
        """Leave the mesh (others see `left`, not `dead`); the caller then cancels the nursery."""
        if self.gossip is not None:
            await self.gossip.leave(timeout=1.0)
