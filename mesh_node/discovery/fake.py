"""An in-process mDNS: `FakeMdnsNetwork` links `FakeMdnsBus`es (tests, fake LANs).

Like zeroconf, callbacks arrive on a non-trio thread (the caller's worker thread), so the trio
shell's thread hand-off is exercised. Tests can inject arbitrary adverts (malformed, foreign).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from mesh_node.discovery.bus import ChangeCallback, ResolvedService, ServiceAdvert


class FakeMdnsNetwork:
    """A shared multicast domain; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, ResolvedService] = {}
        self._listeners: list[ChangeCallback] = []
        self.goodbyes: list[str] = []

    def bus(self, addresses: Sequence[str] = ()) -> FakeMdnsBus:
        """A bus on this network (the signature of a `BusFactory`)."""
        return FakeMdnsBus(self)

    def publish(self, instance: str, addresses: Sequence[str], port: int,
                properties: Mapping[bytes | str, bytes | str | None]) -> None:
        """Announce (or re-announce) an instance to every browser."""
        with self._lock:
            self._services[instance] = ResolvedService(instance, tuple(addresses), port,
                                                       dict(properties))
            listeners = list(self._listeners)
        for cb in listeners:
            cb(instance, True)

    def withdraw(self, instance: str) -> None:
        """A goodbye for `instance`."""
        with self._lock:
            known = self._services.pop(instance, None) is not None
            listeners = list(self._listeners)
            if known:
                self.goodbyes.append(instance)
        for cb in listeners if known else ():
            cb(instance, False)

    def listen(self, cb: ChangeCallback) -> None:
        with self._lock:
            self._listeners.append(cb)
            existing = list(self._services)
        for name in existing:
            cb(name, True)

    def unlisten(self, cb: ChangeCallback) -> None:
        with self._lock:
            if cb in self._listeners:
                self._listeners.remove(cb)

    def lookup(self, instance: str) -> ResolvedService | None:
        with self._lock:
            return self._services.get(instance)


class FakeMdnsBus:
    """One node's view of a FakeMdnsNetwork (implements MdnsBus)."""

    def __init__(self, net: FakeMdnsNetwork) -> None:
        self.net = net
        self._mine: set[str] = set()
        self._cb: ChangeCallback | None = None
        self.closed = False

    def register(self, advert: ServiceAdvert) -> None:
        self._mine.add(advert.instance)
        props: dict[bytes | str, bytes | str | None] = {k: v for k, v in advert.properties.items()}
        self.net.publish(advert.instance, [advert.address], advert.port, props)

    update = register

    def unregister(self, advert: ServiceAdvert) -> None:
        self._mine.discard(advert.instance)
        self.net.withdraw(advert.instance)

    def browse(self, on_change: ChangeCallback) -> None:
        self._cb = on_change
        self.net.listen(on_change)

    def resolve(self, instance: str, timeout: float) -> ResolvedService | None:
        return self.net.lookup(instance)

    def close(self) -> None:
        if self._cb is not None:
            self.net.unlisten(self._cb)
        for name in list(self._mine):
            self.net.withdraw(name)
        self._mine.clear()
        self.closed = True
