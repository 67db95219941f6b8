"""mDNS discovery, a thin trio shell: advertise this node, browse for the others, say goodbye.

Found peers are hints only (gossip authenticates). zeroconf calls back on its own threads; the
calls are handed into trio through a memory channel with `trio.from_thread.run_sync`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import structlog
import trio

from mesh_node import PROTOCOL_VERSION
from mesh_node.discovery.bus import BusFactory, MdnsBus, ServiceAdvert, ZeroconfBus
from mesh_node.discovery.core import BrowseCore, Dropped, MdnsCounters, Peer
from mesh_node.discovery.interfaces import host_ipv4_addresses, select_addresses
from mesh_node.discovery.limits import MAX_QUEUED, MAX_RESOLVING, DialGate
from mesh_node.discovery.txt import SERVICE_TYPE, Advert, encode_txt

log = structlog.get_logger("mesh_node.discovery")

RESOLVE_TIMEOUT = 3.0  # zeroconf's own get_service_info default (3000 ms)
GOODBYE_DEADLINE = 2.0  # goodbyes take 3 x 125 ms (zeroconf _UNREGISTER_TIME); part of shutdown's 5 s
_CHANNEL_SIZE = 1024  # a burst beyond this is dropped; mDNS re-announces anyway


class DiscoveryError(RuntimeError):
    """mDNS cannot run here (no usable interface)."""


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")


class MdnsDiscovery:
    """Advertise `_mesh-node._tcp.local.` and report peers of the same mesh."""

    def __init__(self, node_id: str, name: str, mesh_digest: str, address: str, api_port: int,
                 gossip_port: int, capabilities_txt: Sequence[str] = (),
                 interfaces: Sequence[str] = (), *, memory_offered: int = 0,
                 bus_factory: BusFactory = ZeroconfBus,
                 if_addrs: Callable[[], Mapping[str, Sequence[str]]] = host_ipv4_addresses,
                 protocol: int = PROTOCOL_VERSION) -> None:
        self.node_id, self.name, self.address = node_id, name, address
        self.api_port, self.gossip_port = api_port, gossip_port
        self.mesh_digest = mesh_digest
        self.interfaces = tuple(interfaces)
        self.protocol = protocol
        self._caps = tuple(capabilities_txt)
        self._memory = memory_offered
        self._bus_factory = bus_factory
        self._if_addrs = if_addrs
        self._core = BrowseCore(node_id, mesh_digest, protocol)
        # DNS labels are at most 63 bytes (RFC 1035): the node id keeps instances unique.
        nid = _label(node_id)
        label = f"{_label(name)[:max(0, min(20, 62 - len(nid)))]}-{nid}".strip("-")[:63]
        self.instance = f"{label}.{SERVICE_TYPE}"
        self._host = f"mn-{_label(node_id)[:59]}.local."
        self._bus: MdnsBus | None = None
        self._send: trio.MemorySendChannel[tuple[str, bool]] | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        # Bounded by MAX_RESOLVING / MAX_QUEUED: instance names come off the wire.
        self._gen: dict[str, int] = {}  # per resolve in flight, bumped on removal
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._queued: set[str] = set()
        self._gate = DialGate()
        self._wake = trio.Event()

    @property
    def counters(self) -> MdnsCounters:
        """Adverts seen and dropped (foreign mesh, malformed, protocol, no address)."""
        return self._core.counters

    @property
    def peers(self) -> tuple[Peer, ...]:
        return self._core.peers

    def advert(self) -> ServiceAdvert:
        """What this node registers right now."""
        txt = encode_txt(Advert(self.node_id, self.name, self.mesh_digest, self.protocol,
                                self.gossip_port, self.api_port, self._caps, self._memory))
        return ServiceAdvert(self.instance, self._host, self.address, self.api_port, txt)

    def choose_addresses(self) -> list[str]:
        """Interface addresses mDNS runs on; raises DiscoveryError if there are none."""
        chosen = select_addresses(self._if_addrs(), self.interfaces)
        if not chosen:
            raise DiscoveryError(f"no usable interface for mDNS (interfaces={list(self.interfaces)})")
        return chosen

    async def run(self, on_peer: Callable[[Peer], None],
                  on_gone: Callable[[Peer], None] | None = None, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register, browse until cancelled, then send goodbyes within GOODBYE_DEADLINE.

        `on_peer` (a gossip dial) is called for at most MAX_DIALS new peers per DIAL_WINDOW_S;
        resolves run on MAX_RESOLVING workers from a queue of at most MAX_QUEUED instances."""
        addresses = self.choose_addresses()
        bus = await trio.to_thread.run_sync(self._bus_factory, addresses)
        send, recv = trio.open_memory_channel[tuple[str, bool]](_CHANNEL_SIZE)
        queue_send, queue_recv = trio.open_memory_channel[str](MAX_QUEUED)
        self._send, self._token = send, trio.lowlevel.current_trio_token()
        try:
            await trio.to_thread.run_sync(bus.register, self.advert())
            self._bus = bus
            log.info("mdns_started", node=self.node_id, instance=self.instance,
                     addresses=addresses)
            await trio.to_thread.run_sync(bus.browse, self._on_change)
            task_status.started()
            async with trio.open_nursery() as nursery:
                for _ in range(MAX_RESOLVING):
                    nursery.start_soon(self._resolver, bus, queue_recv, on_peer)
                nursery.start_soon(self._deferred_dials, on_peer)
                async for instance, present in recv:
                    if present:
                        self._schedule(queue_send, instance)
                    else:
                        self._removed(instance, on_gone)
        finally:
            self._bus = None
            with trio.move_on_after(GOODBYE_DEADLINE, shield=True) as scope:
                await trio.to_thread.run_sync(bus.close, abandon_on_cancel=True)
            send.close()
            log.info("mdns_stopped", node=self.node_id, goodbye_timed_out=scope.cancelled_caught)

    async def update(self, *, capabilities_txt: Sequence[str] | None = None,
                     memory_offered: int | None = None) -> None:
        """Change what is advertised; re-announces at once when running."""
        if capabilities_txt is not None:
            self._caps = tuple(capabilities_txt)
        if memory_offered is not None:
            self._memory = memory_offered
        bus = self._bus
        if bus is not None:
            await trio.to_thread.run_sync(bus.update, self.advert())
            log.info("mdns_updated", node=self.node_id, capabilities=list(self._caps),
                     memory_offered=self._memory)

    def _on_change(self, instance: str, present: bool) -> None:
        """Runs on a zeroconf thread: hand the change to trio, never block zeroconf for long."""
        send, token = self._send, self._token
        if send is None or token is None:
            return
        try:
            trio.from_thread.run_sync(send.send_nowait, (instance, present), trio_token=token)
        except (trio.RunFinishedError, trio.ClosedResourceError, trio.BrokenResourceError,
                trio.WouldBlock):
            pass  # shutting down, or flooded: the next announcement brings it again

    def _schedule(self, queue: trio.MemorySendChannel[str], instance: str) -> None:
        if instance == self.instance or instance in self._queued:
            return
        if instance in self._busy:
            self._again.add(instance)  # changed while resolving: resolve once more after
            return
        try:
            queue.send_nowait(instance)
        except trio.WouldBlock:  # a flood of names: drop, mDNS announces real ones again
            self._core.counters.resolves_dropped += 1
            return
        self._queued.add(instance)

    async def _resolver(self, bus: MdnsBus, queue: trio.MemoryReceiveChannel[str],
                        on_peer: Callable[[Peer], None]) -> None:
        async for instance in queue:
            if instance not in self._queued:  # withdrawn while it waited
                continue
            self._queued.discard(instance)
            self._busy.add(instance)
            self._gen[instance] = 0
            try:
                await self._resolve(bus, instance, on_peer)
            finally:
                self._busy.discard(instance)
                self._again.discard(instance)
                del self._gen[instance]

    async def _resolve(self, bus: MdnsBus, instance: str, on_peer: Callable[[Peer], None]) -> None:
        while True:
            self._again.discard(instance)
            gen = self._gen[instance]
            svc = await trio.to_thread.run_sync(bus.resolve, instance, RESOLVE_TIMEOUT,
                                                abandon_on_cancel=True)
            if svc is not None and self._gen[instance] == gen:
                self._apply(instance, svc.addresses, svc.properties, on_peer)
            if instance not in self._again:
                return

    def _hint(self, peer: Peer, on_peer: Callable[[Peer], None]) -> None:
        """Hand a peer to gossip now, or later under the dial cap (counted)."""
        verdict = self._gate.offer(peer, trio.current_time())
        if verdict == "dial":
            on_peer(peer)
        elif verdict == "deferred":
            self._core.counters.dials_deferred += 1
            self._wake.set()
        else:
            self._core.counters.dials_dropped += 1
            log.debug("mdns_dial_dropped", node=self.node_id, peer=peer.node_id)

    async def _deferred_dials(self, on_peer: Callable[[Peer], None]) -> None:
        while True:
            due_at = self._gate.next_due()
            if due_at is None:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            await trio.sleep_until(due_at)
            for peer in self._gate.due(trio.current_time()):
                on_peer(peer)

    def _apply(self, instance: str, addresses: Sequence[str],
               props: Mapping[bytes | str, bytes | str | None],
               on_peer: Callable[[Peer], None]) -> None:
        result = self._core.on_resolved(instance, addresses, props)
        if isinstance(result, Dropped):
            log.debug("mdns_advert_dropped", node=self.node_id, instance=instance,
                      reason=result.reason)
        elif isinstance(result, Peer):
            log.info("mdns_peer_found", node=self.node_id, peer=result.node_id,
                     address=result.address, gossip_port=result.gossip_port)
            self._hint(result, on_peer)

    def _removed(self, instance: str, on_gone: Callable[[Peer], None] | None) -> None:
        if instance in self._gen:  # a resolve in flight must not resurrect it
            self._gen[instance] += 1
        self._queued.discard(instance)  # nor one still waiting in the queue
        peer = self._core.on_removed(instance)
        if peer is not None:
            self._gate.withdraw(peer.node_id)
            log.info("mdns_peer_gone", node=self.node_id, peer=peer.node_id)
            if on_gone is not None:
                on_gone(peer)
