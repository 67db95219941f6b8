"""Node-to-node request authentication: an HMAC over the request, for one target, fresh once.

X-Mesh-Auth is "<unix ts>:<nonce>:<hmac>" with hmac = sign(http_key, method, path, ts, nonce,
request id, origin node id, target node id, sha256(body)). Wall-clock seconds, because the two
ends share no monotonic clock; the window tolerates LAN clock skew. The random nonce makes every
forward distinct (a client may reuse its X-Request-Id), and the replay cache remembers it for as
long as the signature could be fresh. Signing the target means a request signed for node B is
refused by node C.

The signature authenticates only when the mesh has a secret: without one, `http_key` is derived
from the public mesh name and anyone can compute it. The API then requires the client's own key
on forwarded requests too (`CLIENT_AUTH_HEADERS` travel with the forward), see api/app.py.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from mesh_node.api.replay import ReplayCache
from mesh_node.api.seal import SEALED, seal_request
from mesh_node.security import MeshKeys, sign, verify

FORWARDED = "x-mesh-forwarded"  # the origin node id
REQUEST_ID = "x-mesh-request-id"
AUTH = "x-mesh-auth"
CLIENT_AUTH_HEADERS = ("authorization", "x-api-key")  # forwarded only when there is no secret
WINDOW_S = 30.0  # accepted clock skew + transit; replays inside it are caught by the cache
_NONCE_BYTES = 12  # 96 random bits: collisions among honest forwards are out of reach
_AUTH_RE = re.compile(r"(\d{1,12}):([0-9a-f]{24}):([0-9a-f]{64})")  # fullmatch: no "\n"


@dataclass(frozen=True)
class Refused:
    """Why a forwarded request is not accepted, and the status to answer."""

    reason: str
    status: int = 401


def forward_headers(key: bytes, origin: str, target: str, request_id: str, method: str,
                    path: str, body: bytes, now: float) -> dict[str, str]:
    """The headers that sign a request (body as sent) from `origin` to node `target`."""
    return _signed(key, origin, target, request_id, method, path, body, str(int(now)),
                   secrets.token_hex(_NONCE_BYTES))


def forward_request(keys: MeshKeys, origin: str, target: str, request_id: str, method: str,
                    path: str, body: bytes, now: float) -> tuple[dict[str, str], bytes,
                                                                 bytes | None]:
    """(headers, body to send, nonce) for a forward to `target`. With a mesh secret the body is
    sealed (api/seal.py) and the nonce, which opens the answer, is returned; else None."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    if not keys.authenticated:
        return (_signed(keys.http_key, origin, target, request_id, method, path, body,
                        str(int(now)), nonce.hex()), body, None)
    sealed = seal_request(keys.seal_key, nonce, body)
    headers = _signed(keys.http_key, origin, target, request_id, method, path, sealed,
                      str(int(now)), nonce.hex())
    return headers | {SEALED: "1", "content-type": "application/octet-stream"}, sealed, nonce


def auth_nonce(auth: str) -> bytes:
    """The nonce of an X-Mesh-Auth value that `ForwardVerifier.check` accepted."""
    return bytes.fromhex(auth.split(":")[1])


def _signed(key: bytes, origin: str, target: str, request_id: str, method: str, path: str,
            body: bytes, ts: str, nonce: str) -> dict[str, str]:
    mac = sign(key, *_parts(method, path, ts, nonce, request_id, origin, target, body))
    return {FORWARDED: origin, REQUEST_ID: request_id, AUTH: f"{ts}:{nonce}:{mac}"}


class ForwardVerifier:
    """Checks X-Mesh-Auth for this node and remembers accepted nonces (replay guard)."""

    def __init__(self, key: bytes, node_id: str, started: float) -> None:
        """`started`: wall time this node started. The replay cache begins empty, so a
        signature dated before it (more than the 1 s of `ts` truncation) is refused: a forward
        captured before a restart cannot be replayed to the restarted node."""
        self._key = key
        self._node_id = node_id
        self._window = WINDOW_S
        self._floor = started - 1.0
        self.cache = ReplayCache(WINDOW_S)

    def check(self, auth: str | None, origin: str, request_id: str, method: str, path: str,
              body: bytes, now: float) -> Refused | None:
        """None when valid, fresh and new; else why not."""
        m = _AUTH_RE.fullmatch(auth or "")
        if m is None:
            return Refused("missing or malformed X-Mesh-Auth")
        ts, nonce, mac = m.groups()
        if abs(now - int(ts)) > self._window:
            return Refused("stale timestamp")
        if not verify(self._key, mac, *_parts(method, path, ts, nonce, request_id, origin,
                                              self._node_id, body)):
            return Refused("bad signature")
        if int(ts) < self._floor:  # 503: the origin retries; only clock skew gets here
            return Refused("signed before this node started", 503)
        verdict = self.cache.add(bytes.fromhex(nonce), int(ts), now)
        if verdict == "replay":
            return Refused("replayed request")
        if verdict == "stale":
            return Refused("stale timestamp")
        if verdict == "full":
            return Refused("replay cache full", 503)
        return None


def _parts(method: str, path: str, ts: str, nonce: str, request_id: str, origin: str,
           target: str, body: bytes) -> tuple[bytes, ...]:
    return (method.upper().encode(), path.encode(), ts.encode(), nonce.encode(),
            request_id.encode(), origin.encode(), target.encode(), hashlib.sha256(body).digest())
