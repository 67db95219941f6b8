"""The model store: where copies fetched from peers live, bounded, evicted least recently used.

Only files this node fetched are in the store's index, so only they can ever be evicted: a
user's own model file is never in it. The eviction choice is pure (`evictions`); the index is
one JSON file beside the copies, written atomically.

Layout: `<store>/<digest[:16]>/<original file name>` (the name keeps the model id the holder
advertises); `<store>/<digest[:16]>/<name>.part` while it is being fetched.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

INDEX_NAME = "index.json"
DISK_MARGIN = 256 * 1024 * 1024  # never fill a disk to the last byte: logs and the OS need room


@dataclass(frozen=True)
class StoredCopy:
    digest: str
    path: Path
    size: int
    used: float  # wall-clock second of the last use (LRU order only; never on the wire)
    model: str = ""  # the model id it was fetched as (the catalog scan names it so)


def evictions(copies: Collection[StoredCopy], need: int, max_bytes: int | None,
              disk_free: int, keep: Collection[str]) -> list[StoredCopy] | None:
    """Copies to delete (least recently used first) so that `need` more bytes fit within
    `max_bytes` and the disk's free space; None when even evicting every other copy is not
    enough. `keep`: digests in use (hosted, or being fetched) that must stay."""
    stored = sum(c.size for c in copies)
    over_bound = max(0, stored + need - max_bytes) if max_bytes is not None else 0
    over_disk = max(0, need + DISK_MARGIN - disk_free)
    short = max(over_bound, over_disk)
    out: list[StoredCopy] = []
    for c in sorted(copies, key=lambda c: (c.used, c.digest)):
        if short <= 0:
            break
        if c.digest in keep:
            continue
        out.append(c)
        short -= c.size
    return out if short <= 0 else None


def room(copies: Collection[StoredCopy], max_bytes: int | None, disk_free: int,
         keep: Collection[str]) -> int:
    """Bytes a new copy may take now, evicting unused copies if need be (published as
    NodeState.store_free so the planner only moves a model to a node with the disk)."""
    evictable = sum(c.size for c in copies if c.digest not in keep)
    disk = max(0, disk_free - DISK_MARGIN) + evictable
    if max_bytes is None:
        return disk
    pinned = sum(c.size for c in copies if c.digest in keep)
    return max(0, min(disk, max_bytes - pinned))


class Store:
    """The store's directory and index (blocking file I/O: call from a thread)."""

    def __init__(self, root: Path, max_bytes: int | None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.copies: dict[str, StoredCopy] = {}
        self._load()

    def _load(self) -> None:
        try:
            doc = json.loads((self.root / INDEX_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        for digest, e in doc.items() if isinstance(doc, dict) else ():
            try:
                path = self.root / str(e["path"])
                if path.is_file():  # a copy deleted by hand leaves the index
                    self.copies[digest] = StoredCopy(digest, path, int(e["size"]),
                                                     float(e["used"]), str(e.get("model", "")))
            except (KeyError, TypeError, ValueError):
                continue

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        doc = {d: {"path": c.path.relative_to(self.root).as_posix(), "size": c.size,
                   "used": c.used, "model": c.model} for d, c in self.copies.items()}
        tmp = self.root / (INDEX_NAME + ".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(self.root / INDEX_NAME)

    def slot(self, digest: str, model: str) -> Path:
        """Where the copy of `digest` goes: `<digest[:16]>/<model id, made a file name>.gguf`
        (the digest is checked hex; nothing from a peer chooses a directory)."""
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("not a digest")
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", model).strip(".") or "model"
        return self.root / digest[:16] / f"{safe[:200]}.gguf"

    def disk_free(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free

    def make_room(self, need: int, keep: Collection[str]) -> list[StoredCopy] | None:
        """Evict LRU copies until `need` bytes fit: the copies evicted, or None (nothing
        evicted) when they cannot fit."""
        plan = evictions(list(self.copies.values()), need, self.max_bytes, self.disk_free(),
                         keep)
        if plan is None:
            return None
        for c in plan:
            shutil.rmtree(c.path.parent, ignore_errors=True)
            del self.copies[c.digest]
        if plan:
            self._save()
        return plan

    def add(self, digest: str, path: Path, size: int, now: float, model: str) -> None:
        self.copies[digest] = StoredCopy(digest, path, size, now, model)
        self._save()

    def touch(self, digests: Mapping[str, float]) -> None:
        """Mark copies used (hosted) at the given wall times."""
        changed = False
        for d, t in digests.items():
            c = self.copies.get(d)
            if c is not None and t > c.used:
                self.copies[d] = StoredCopy(c.digest, c.path, c.size, t)
                changed = True
        if changed:
            self._save()

    def room(self, keep: Collection[str]) -> int:
        return room(list(self.copies.values()), self.max_bytes, self.disk_free(), keep)
