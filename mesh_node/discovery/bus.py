"""The mDNS seam: a small blocking `MdnsBus` protocol and its python-zeroconf implementation.

zeroconf is asyncio-based; with no asyncio loop in our (trio) thread it runs its own loop in a
thread (FIELD-NOTES), so its sync API is what we use: every method here blocks and the trio
shell calls them through `trio.to_thread`. `browse` callbacks arrive on zeroconf's threads.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mesh_node.discovery.txt import SERVICE_TYPE

# (instance name, present): present=False is a goodbye or a TTL expiry.
ChangeCallback = Callable[[str, bool], None]


@dataclass(frozen=True)
class ServiceAdvert:
    """What we register: one instance of SERVICE_TYPE."""

    instance: str  # full name, "<label>._mesh-node._tcp.local."
    host: str  # "<label>.local."
    address: str
    port: int
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedService:
    """A resolved instance: its addresses and raw TXT properties."""

    instance: str
    addresses: tuple[str, ...]
    port: int
    properties: Mapping[bytes | str, bytes | str | None]


class MdnsBus(Protocol):
    """Blocking mDNS operations (real: ZeroconfBus; fake: discovery.fake.FakeMdnsBus)."""

    def register(self, advert: ServiceAdvert) -> None: ...
    def update(self, advert: ServiceAdvert) -> None: ...
    def unregister(self, advert: ServiceAdvert) -> None: ...
    def browse(self, on_change: ChangeCallback) -> None: ...
    def resolve(self, instance: str, timeout: float) -> ResolvedService | None: ...
    def close(self) -> None: ...


BusFactory = Callable[[Sequence[str]], MdnsBus]


class ZeroconfBus:
    """MdnsBus over python-zeroconf, IPv4 on the given interface addresses."""

    def __init__(self, addresses: Sequence[str]) -> None:
        from zeroconf import IPVersion, Zeroconf

        self._zc = Zeroconf(interfaces=list(addresses), ip_version=IPVersion.V4Only,
                            use_asyncio=False)
        self._browser: Any = None
        self._infos: dict[str, Any] = {}

    def _info(self, advert: ServiceAdvert) -> Any:
        from zeroconf import ServiceInfo

        return ServiceInfo(SERVICE_TYPE, advert.instance, port=advert.port,
                           addresses=[socket.inet_aton(advert.address)],
                           properties=dict(advert.properties), server=advert.host)

    def register(self, advert: ServiceAdvert) -> None:
        """Probe and announce (RFC 6762 section 8); blocks about a second."""
        info = self._info(advert)
        # A clash means a duplicated node id (a copied data dir): gossip reports that; mDNS
        # renames the instance ("name (2)") rather than crash the node.
        self._zc.register_service(info, allow_name_change=True)
        self._infos[advert.instance] = info

    def update(self, advert: ServiceAdvert) -> None:
        info = self._info(advert)
        self._zc.update_service(info)
        self._infos[advert.instance] = info

    def unregister(self, advert: ServiceAdvert) -> None:
        """Send goodbye packets (TTL 0, RFC 6762 section 10.1)."""
        info = self._infos.pop(advert.instance, None)
        if info is not None:
            self._zc.unregister_service(info)

    def browse(self, on_change: ChangeCallback) -> None:
        from zeroconf import ServiceBrowser, ServiceStateChange

        def handler(zeroconf: Any, service_type: str, name: str,
                    state_change: ServiceStateChange) -> None:
            on_change(name, state_change is not ServiceStateChange.Removed)

        self._browser = ServiceBrowser(self._zc, SERVICE_TYPE, handlers=[handler])

    def resolve(self, instance: str, timeout: float) -> ResolvedService | None:
        from zeroconf import IPVersion

        info = self._zc.get_service_info(SERVICE_TYPE, instance, timeout=int(timeout * 1000))
        if info is None or info.port is None:
            return None
        props: dict[bytes | str, bytes | str | None] = {k: v for k, v in info.properties.items()}
        return ResolvedService(instance, tuple(info.parsed_addresses(IPVersion.V4Only)),
                               info.port, props)

    def close(self) -> None:
        if self._browser is not None:
            self._browser.cancel()
        self._zc.close()  # also sends goodbyes for anything still registered
