"""Node-to-node request authentication: an HMAC over the request, fresh within a window.

X-Mesh-Auth is "<unix ts>:<hmac>" with hmac = sign(http_key, method, path, ts, request id,
sha256(body)). Wall-clock seconds, because the two ends share no monotonic clock; the window
tolerates LAN clock skew. Signing the request id too makes two identical bodies sent in the
same second distinct, so the replay cache never rejects a legitimate request.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from mesh_node.security import sign, verify

FORWARDED = "x-mesh-forwarded"
REQUEST_ID = "x-mesh-request-id"
AUTH = "x-mesh-auth"
WINDOW_S = 30.0  # accepted clock skew + transit; replays inside it are caught by the cache
_CACHE_MAX = 4096  # signatures remembered; more in one window than a LAN node forwards


def _mac(key: bytes, method: str, path: str, ts: str, request_id: str, body: bytes) -> str:
    return sign(key, *_parts(method, path, ts, request_id, body))


def forward_headers(key: bytes, origin: str, request_id: str, method: str, path: str,
                    body: bytes, now: float) -> dict[str, str]:
    """The headers the origin node adds to a forwarded request."""
    ts = str(int(now))
    return {
        FORWARDED: origin,
        REQUEST_ID: request_id,
        AUTH: f"{ts}:{_mac(key, method, path, ts, request_id, body)}",
    }


class ForwardVerifier:
    """Checks X-Mesh-Auth and remembers accepted signatures for the window (replay guard)."""

    def __init__(self, key: bytes, window: float = WINDOW_S) -> None:
        self._key = key
        self._window = window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, auth: str | None, request_id: str, method: str, path: str, body: bytes,
              now: float) -> str | None:
        """None when valid, else the reason it is not."""
        if not auth or ":" not in auth:
            return "missing or malformed X-Mesh-Auth"
        ts, mac = auth.split(":", 1)
        try:
            age = now - int(ts)
        except ValueError:
            return "malformed timestamp"
        if abs(age) > self._window:
            return "stale timestamp"
        if not verify(self._key, mac, *_parts(method, path, ts, request_id, body)):
            return "bad signature"
        self._expire(now)
        if mac in self._seen:
            return "replayed request"
        self._seen[mac] = now + self._window
        return None

    def _expire(self, now: float) -> None:
        while self._seen and (len(self._seen) >= _CACHE_MAX
                              or next(iter(self._seen.values())) < now):
            self._seen.popitem(last=False)


def _parts(method: str, path: str, ts: str, request_id: str, body: bytes) -> tuple[bytes, ...]:
    return (method.upper().encode(), path.encode(), ts.encode(), request_id.encode(),
            hashlib.sha256(body).digest())
