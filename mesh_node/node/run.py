"""`run_node(config)`: one node under one root nursery, with shutdown as a deadline."""

from __future__ import annotations

import signal

import structlog
import trio

from mesh_node.config.identity import load_or_create_node_id
from mesh_node.config.memory import offered_memory
from mesh_node.config.model import Config
from mesh_node.discovery.interfaces import host_ipv4_addresses, select_addresses
from mesh_node.node.assembly import Node
from mesh_node.timing import DEFAULT_TIMINGS

log = structlog.get_logger("mesh_node.node")


def advertise_address(config: Config) -> str:
    """The mesh address: configured, else the first usable LAN IPv4, else loopback."""
    if config.node.advertise_address:
        return config.node.advertise_address
    addrs = select_addresses(host_ipv4_addresses(), config.node.interfaces)
    return addrs[0] if addrs else "127.0.0.1"


async def run_node(config: Config) -> int:
    """Run until SIGINT/SIGTERM; then leave the mesh, stop children and return 0."""
    node_id = load_or_create_node_id(config.node.data_dir)
    structlog.contextvars.bind_contextvars(node=config.node.name)
    node = Node(config, node_id, advertise_address(config), offered_memory(config))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as root:
            await root.start(node.run)
            async for signum in signals:
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                break
            with trio.move_on_after(DEFAULT_TIMINGS.shutdown_deadline) as deadline:
                await node.shutdown()
            if deadline.cancelled_caught:
                log.warning("shutdown_deadline_passed")
            root.cancel_scope.cancel()
    log.info("node_stopped")
    return 0
