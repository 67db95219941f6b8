"""`run_node(config)`: one node under one root nursery, with shutdown as a deadline."""

from __future__ import annotations

import resource
import signal

import structlog
import trio

from mesh_node.config.advice import api_unreachable
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


NOFILE_WANTED = 65536  # every API client, push-pull exchange and child pipe is a descriptor


def raise_nofile_limit(wanted: int = NOFILE_WANTED) -> int:
    """Lift the soft open-files limit toward the hard one; the soft limit it ends with.

    Stock soft limits (macOS 256, Linux 1,024) let a few hundred idle LAN connections exhaust
    them, after which the API accepts nobody, health probes included (tests/integration/
    test_api_abuse.py). Servers lift it themselves, as Go's runtime does since 1.19.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    while target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):  # macOS: capped lower by kern.maxfilesperproc
            target //= 2
    return soft


async def run_node(config: Config) -> int:
    """Run until SIGINT/SIGTERM; then leave the mesh, stop children and return 0."""
    nofile = raise_nofile_limit()
    node_id = load_or_create_node_id(config.node.data_dir)
    structlog.contextvars.bind_contextvars(node=config.node.name)
    address = advertise_address(config)
    if (unreachable := api_unreachable(config, address)) is not None:
        log.warning("api_unreachable_from_peers", hint=unreachable)
    node = Node(config, node_id, address, offered_memory(config))
    log.info("open_files_limit", soft=nofile)
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
