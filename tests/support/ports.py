"""Free loopback ports for tests that start real nodes."""

from __future__ import annotations

import socket


def free_tcp_udp_port() -> int:
    """A port free for both TCP and UDP on loopback (gossip binds both)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free TCP+UDP port on loopback after 50 tries")
