"""Shared pieces of the fuzz tests: example budgets, raw sealing, a synchronous stream driver.

Budgets: a few hundred examples per test in `make test`; with MESH_NODE_FUZZ_LONG=1 each fuzz
*target* (wire decoder, push-pull frame reader, TXT decoder, config loader) gets at least
100,000 inputs, split across the tests that exercise it.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, settings

from mesh_node.gossip.wire import PROTOCOL_VERSION
from mesh_node.security import MeshKeys

FUZZ_LONG = os.environ.get("MESH_NODE_FUZZ_LONG", "") == "1"
LONG_INPUTS_PER_TARGET = 100_000


def fuzz_settings(short: int, share: int = 1) -> settings:
    """Hypothesis settings: `short` examples normally, 100,000/`share` in the long run."""
    n = -(-LONG_INPUTS_PER_TARGET // share) if FUZZ_LONG else short
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def seal_body(keys: MeshKeys, body: bytes, nonce: bytes = bytes(12)) -> bytes:
    """Seal arbitrary plaintext exactly as wire.seal does, so garbage reaches the decoder."""
    ad = bytes([PROTOCOL_VERSION]) + keys.mesh_digest.encode()
    return bytes([PROTOCOL_VERSION]) + nonce + AESGCM(keys.gossip_key).encrypt(nonce, body, ad)


def run_now(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never really suspends (fake I/O) to completion, synchronously.

    Far cheaper than trio.run per example, which matters at 100,000 examples.
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("coroutine suspended: the fake stream must never block")


class ChunkStream:
    """A receive-only stream over fixed chunks; b"" (EOF) once they run out."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = [c for c in chunks if c]
        self.received = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._chunks:
            return b""
        head = self._chunks[0]
        n = len(head) if max_bytes is None else min(max_bytes, len(head))
        out, rest = head[:n], head[n:]
        if rest:
            self._chunks[0] = rest
        else:
            self._chunks.pop(0)
        self.received += len(out)
        return out
