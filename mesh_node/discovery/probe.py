"""`python -m mesh_node.discovery.probe`: advertise over mDNS and print discovered peers.

For the multi-host lab: one JSON object per line on stdout (`started`, `peer`, `gone`, `done`),
`t` in seconds since the probe started. Runs for --seconds, or until SIGTERM/SIGINT (then sends
goodbyes). Not part of a node.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

import structlog
import trio

from mesh_node.discovery.core import Peer
from mesh_node.discovery.mdns import MdnsDiscovery

_T0 = time.monotonic()


def emit(event: str, **fields: Any) -> None:
    """Print one JSON line (flushed: the lab reads it live)."""
    fields = {"event": event, "t": round(time.monotonic() - _T0, 3), **fields}
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _peer_fields(p: Peer) -> dict[str, Any]:
    return {"node_id": p.node_id, "address": p.address, "gossip_port": p.gossip_port,
            "api_port": p.api_port, "capabilities": list(p.capabilities),
            "memory_offered": p.memory_offered}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="mesh_node.discovery.probe")
    ap.add_argument("--node-id", required=True)
    ap.add_argument("--name", default="probe")
    ap.add_argument("--digest", required=True, help="mesh digest, 16 hex chars")
    ap.add_argument("--address", required=True)
    ap.add_argument("--api-port", type=int, default=9337)
    ap.add_argument("--gossip-port", type=int, default=9338)
    ap.add_argument("--caps", default="llama:split", help="comma-separated capability tokens")
    ap.add_argument("--memory", type=int, default=0)
    ap.add_argument("--interfaces", default="", help="comma-separated; empty: default choice")
    ap.add_argument("--seconds", type=float, default=10.0)
    return ap.parse_args(argv)


async def amain(args: argparse.Namespace) -> None:
    """Run discovery for a bounded time, printing events."""
    disc = MdnsDiscovery(args.node_id, args.name, args.digest, args.address, args.api_port,
                         args.gossip_port, [c for c in args.caps.split(",") if c],
                         [i for i in args.interfaces.split(",") if i], memory_offered=args.memory)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            await nursery.start(disc.run, lambda p: emit("peer", **_peer_fields(p)),
                                lambda p: emit("gone", node_id=p.node_id))
            emit("started", node_id=args.node_id, addresses=disc.choose_addresses())
            await trio.sleep(args.seconds)
            nursery.cancel_scope.cancel()
    emit("done", counters=disc.counters.as_dict())


def main(argv: list[str] | None = None) -> None:
    # Logs to stderr so stdout stays pure JSON lines for the lab to parse.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    trio.run(amain, parse_args(argv))


if __name__ == "__main__":
    main()
