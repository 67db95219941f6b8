"""Which interfaces mDNS should use: by default the physical LAN ones, never virtual bridges."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

# Container/VM bridges and tunnels: multicast there either goes nowhere useful or leaks our
# adverts into guests. Names as Docker, libvirt, LXD, Podman, CNI and VPN tools create them.
SKIP_PREFIXES = (
    "lo", "docker", "veth", "br-", "virbr", "vmnet", "vboxnet", "lxcbr", "lxdbr", "podman",
    "cni", "flannel", "cali", "weave", "kube", "vxlan", "tailscale", "zt", "utun", "tun", "tap",
)


def is_virtual(ifname: str) -> bool:
    """True for loopback and the usual container/VM/VPN interface names."""
    return ifname.startswith(SKIP_PREFIXES)


def _usable(addr: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(addr)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def select_addresses(if_addrs: Mapping[str, Sequence[str]], wanted: Sequence[str] = ()) -> list[str]:
    """IPv4 addresses to run mDNS on, from {ifname: [ipv4, ...]}.

    With `wanted`, exactly those interfaces (by name, or by one of their addresses) are used,
    virtual or not; without, every interface that is not virtual. Sorted for determinism.
    """
    chosen: list[str] = []
    for ifname in sorted(if_addrs):
        addrs = [a for a in if_addrs[ifname] if _usable(a)]
        if wanted:
            addrs = addrs if ifname in wanted else [a for a in addrs if a in wanted]
        elif is_virtual(ifname):
            continue
        chosen.extend(a for a in addrs if a not in chosen)
    return chosen


def host_ipv4_addresses() -> dict[str, list[str]]:
    """{ifname: [ipv4, ...]} of this host (psutil), for `select_addresses`."""
    import socket

    import psutil

    return {name: [a.address for a in addrs if a.family == socket.AF_INET]
            for name, addrs in psutil.net_if_addrs().items()}
