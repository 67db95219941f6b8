"""Digests of catalog entries, computed in a worker thread and cached in `data_dir`.

The cache key is (real path, size, mtime_ns): a file replaced or touched is hashed again, an
unchanged one never (a 70 GB model takes minutes to hash, the node must not pay it per start).
The cache is one JSON file written atomically; a damaged cache is treated as empty.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from mesh_node.transfer.manifest import (
    CHUNK_BYTES,
    Hasher,
    Manifest,
    ManifestError,
    mlx_manifest_text,
)

log = structlog.get_logger("mesh_node.transfer")

READ_BYTES = 4 * 1024 * 1024  # large reads: hashing runs at disk speed, not syscall speed
CACHE_NAME = "digests.json"


def hash_file(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Manifest:
    """Digest and chunk hashes of one file, in one pass (blocking: run it in a thread)."""
    h = Hasher(chunk_bytes)
    with open(path, "rb") as f:
        while block := f.read(READ_BYTES):
            h.update(block)
    return h.manifest()


def hash_mlx_folder(folder: Path) -> str:
    """sha256 of an MLX folder's manifest (sorted relative paths, sizes, per-file sha256)."""
    files: list[tuple[str, int, str]] = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            files.append((rel, p.stat().st_size, hash_file(p).digest))
    return hashlib.sha256(mlx_manifest_text(files)).hexdigest()


def cache_key(path: Path) -> str | None:
    """(real path, size, mtime_ns) of a file or folder; None when it cannot be read."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return f"{real}\0{st.st_size}\0{st.st_mtime_ns}"


@dataclass(frozen=True)
class Digested:
    """What the cache keeps per path: the digest, and for a single file its chunk list."""

    digest: str
    manifest: Manifest | None  # None for MLX folders (not transferable yet)


class DigestCache:
    """`data_dir/digests.json`: key -> digest (+ chunk list). Blocking I/O: use in a thread."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / CACHE_NAME
        self._entries: dict[str, dict[str, object]] = {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(doc, dict):
                self._entries = {k: v for k, v in doc.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass

    def get(self, key: str) -> Digested | None:
        e = self._entries.get(key)
        if e is None:
            return None
        try:
            man = Manifest.from_json(e["manifest"]) if e.get("manifest") else None
            return Digested(str(e["digest"]), man)
        except (KeyError, ManifestError):
            return None

    def put(self, key: str, d: Digested) -> None:
        self._entries[key] = {"digest": d.digest,
                              "manifest": d.manifest.to_json() if d.manifest else None}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self._entries), encoding="utf-8")
        tmp.replace(self.path)

    def digest_of(self, path: Path, is_folder: bool) -> Digested | None:
        """The cached digest of `path`, else computed now and cached; None if unreadable."""
        key = cache_key(path)
        if key is None:
            return None
        hit = self.get(key)
        if hit is not None:
            return hit
        try:
            if is_folder:
                d = Digested(hash_mlx_folder(path), None)
            else:
                man = hash_file(path)
                d = Digested(man.digest, man)
        except OSError as exc:
            log.warning("digest_failed", path=str(path), error=str(exc))
            return None
        self.put(key, d)
        return d
