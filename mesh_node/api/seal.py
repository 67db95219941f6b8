"""Sealed node-to-node HTTP bodies (mesh with a secret): prompts and completions never cross the
LAN in clear between nodes.

Request: the body is AES-256-GCM under the mesh's `seal_key`, with the forward's random 96-bit
nonce (X-Mesh-Auth) as GCM nonce; the HMAC then signs the sealed bytes. Response: a stream of
frames `len (4 bytes, big-endian) || AES-GCM(chunk)` under a key of its own per forward
(HMAC-SHA256(seal_key, "resp" || nonce)), nonces counting 0, 1, 2...; the last frame says so in
its associated data, so a cut stream is detected rather than taken as complete. Headers (status,
content type) stay clear: they carry no prompt text.

Why not TLS: a second, TLS-wrapped listener per node would need its port in gossip and a
certificate chain derived from the secret; sealing the bodies keeps one port, one HTTP path and
the same `cryptography` primitive gossip already uses. Cost on the hop: `benchmarks/hop_latency.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED = "x-mesh-sealed"  # "1" on a sealed request and on a sealed response
SEAL_OVERHEAD = 16  # bytes a sealed body is longer than the clear one (the GCM tag)
MAX_FRAME = 16 << 20  # one relayed chunk; larger means a broken or hostile peer
_REQ_AAD = b"mesh-node/v1 request"
_MORE, _LAST = b"\x00", b"\x01"


class SealError(ValueError):
    """A sealed body or frame that does not open (wrong key, tampered, cut, oversized)."""


def seal_request(key: bytes, nonce: bytes, body: bytes) -> bytes:
    return AESGCM(key).encrypt(nonce, body, _REQ_AAD)


def open_request(key: bytes, nonce: bytes, sealed: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, sealed, _REQ_AAD)
    except (InvalidTag, ValueError):
        raise SealError("sealed request body does not open") from None


def _response_aead(key: bytes, nonce: bytes) -> AESGCM:
    return AESGCM(hmac.new(key, b"resp" + nonce, hashlib.sha256).digest())


class FrameSealer:
    """The host's side: each response chunk becomes one frame."""

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._aead = _response_aead(key, nonce)
        self._n = 0

    def frame(self, chunk: bytes, last: bool) -> bytes:
        sealed = self._aead.encrypt(self._n.to_bytes(12, "big"), chunk, _LAST if last else _MORE)
        self._n += 1
        return struct.pack(">I", len(sealed)) + sealed


class FrameOpener:
    """The origin's side: bytes in any pieces -> the chunks, in order; `finish` checks the end."""

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._aead = _response_aead(key, nonce)
        self._n = 0
        self._buf = bytearray()
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            if self.done:
                raise SealError("data after the last frame")
            size = struct.unpack_from(">I", self._buf)[0]
            if size < SEAL_OVERHEAD or size > MAX_FRAME + SEAL_OVERHEAD:
                raise SealError(f"bad frame length {size}")
            if len(self._buf) < 4 + size:
                break
            sealed = bytes(self._buf[4:4 + size])
            del self._buf[:4 + size]
            out.append(self._open(sealed))
        return out

    def _open(self, sealed: bytes) -> bytes:
        nonce = self._n.to_bytes(12, "big")
        for aad, last in ((_MORE, False), (_LAST, True)):
            try:
                chunk = self._aead.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            self._n += 1
            self.done = last
            return chunk
        raise SealError("frame does not open")

    def finish(self) -> None:
        if not self.done or self._buf:
            raise SealError("sealed response cut short")


def sealed_message(sealer: FrameSealer,
                   message: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """An ASGI response message as it goes to the origin node: body framed, length dropped
    (the frames are longer), the sealed mark added."""
    if message["type"] == "http.response.start":
        headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
        return {**message, "headers": [*headers, (SEALED.encode(), b"1")]}
    if message["type"] == "http.response.body":
        last = not message.get("more_body", False)
        return {**message, "body": sealer.frame(bytes(message.get("body", b"")), last)}
    return message


class _UnsealedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.Response, request: httpx.Request, opener: FrameOpener) -> None:
        self._inner, self._request, self._opener = inner, request, opener

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._inner.aiter_raw():
                for chunk in self._opener.feed(data):
                    if chunk:
                        yield chunk
            self._opener.finish()
        except SealError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=self._request) from None

    async def aclose(self) -> None:
        await self._inner.aclose()


def unsealed(resp: httpx.Response, request: httpx.Request, key: bytes,
             nonce: bytes) -> httpx.Response:
    """The host's response with its body opened on the fly; an unsealed success is refused
    (RemoteProtocolError: retried like a broken host). Unsealed errors pass: they carry no
    prompt text, and nothing on the path could have forged less than it can already block."""
    if resp.headers.get(SEALED) != "1":
        if resp.status_code < 400:
            raise httpx.RemoteProtocolError("unsealed answer to a sealed request",
                                            request=request)
        return resp
    return httpx.Response(resp.status_code, headers=resp.headers,
                          stream=_UnsealedStream(resp, request, FrameOpener(key, nonce)),
                          extensions=resp.extensions)
