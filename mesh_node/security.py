"""Keys derived from the mesh secret: one for gossip, one for node-to-node HTTP, and a digest.

HKDF-SHA256 (RFC 5869) with the mesh name as salt, so two meshes sharing a secret but not a name
never accept each other's messages. The digest is what mDNS adverts carry: it identifies the mesh
without revealing the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Said by `mesh-node config check` and logged at start (api_key_without_mesh_secret).
API_KEY_WITHOUT_SECRET = ("api_key is set but the mesh has no secret: node-to-node signatures "
                          "then prove nothing (their key comes from the public mesh name), so "
                          "forwarded requests must carry the client's key and every node needs "
                          "the same api_key; set [mesh] secret or secret_file")


@dataclass(frozen=True)
class MeshKeys:
    gossip_key: bytes = field(repr=False)  # 32 bytes, AES-256-GCM
    http_key: bytes = field(repr=False)  # 32 bytes, HMAC-SHA256 of node-to-node requests
    mesh_digest: str  # 16 hex chars, safe to publish
    authenticated: bool  # False when no secret is configured (trusted-LAN mode)
    seal_key: bytes = field(default=b"", repr=False)  # 32 bytes, AES-256-GCM of node-to-node bodies


def _hkdf(secret: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def derive_keys(secret: str | None, mesh_name: str) -> MeshKeys:
    """Derive the mesh keys; with no secret the keys still exist (from the name) but auth is off."""
    salt = b"mesh-node/v1/" + mesh_name.encode()
    material = (secret or "").encode()
    digest_src = _hkdf(material, salt, b"digest") if secret else hashlib.sha256(salt).digest()
    return MeshKeys(
        gossip_key=_hkdf(material, salt, b"gossip"),
        http_key=_hkdf(material, salt, b"http"),
        mesh_digest=hashlib.sha256(digest_src).hexdigest()[:16],
        authenticated=bool(secret),
        seal_key=_hkdf(material, salt, b"http-seal"),
    )


def sign(key: bytes, *parts: bytes) -> str:
    """HMAC-SHA256 over length-prefixed parts, hex."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for p in parts:
        mac.update(len(p).to_bytes(8, "big"))
        mac.update(p)
    return mac.hexdigest()


def verify(key: bytes, signature: str, *parts: bytes) -> bool:
    return hmac.compare_digest(sign(key, *parts), signature)
