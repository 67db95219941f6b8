"""Settings that load fine but cannot work together: said at `config check` and at start-up."""

from __future__ import annotations

import ipaddress

from mesh_node.config.model import Config


def _loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_unreachable(config: Config, advertised: str) -> str | None:
    """The API listens on loopback only while the node tells a mesh (static peers or mDNS) to
    reach it at another address: every forward and model copy from a peer would fail."""
    if not (config.mesh.peers or config.mesh.mdns):
        return None
    if not _loopback(config.api.host) or _loopback(advertised):
        return None
    return (f"[api] host = {config.api.host!r} listens on this machine only, but peers are told "
            f"to reach this node at {advertised}:{config.api.port}: requests they forward and "
            f"models they copy from it will fail; set [api] host = \"0.0.0.0\" (or this "
            f"machine's LAN address), or [node] advertise_address for nodes on one machine")
