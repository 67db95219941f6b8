"""The node's transfer service (trio): digests in the background, the files it shares, and
the fetches the election (or `mesh-node pull`) asks of it, with their progress.

Digests are computed one entry at a time in a worker thread after the node has started:
neither the join nor serving waits for them; each one joins the catalog when it is known
(`on_catalog` republishes the node's record, so the mesh sees it). A finished fetch adds the
copy to the catalog the same way; the planner then sees a holder (election/moves.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, MutableMapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
import trio

from mesh_node.api.meshauth import forward_headers
from mesh_node.catalog.entry import CatalogEntry, gguf_entry
from mesh_node.catalog.identity import SPLIT_RE
from mesh_node.config.model import Config
from mesh_node.election.moves import Move
from mesh_node.records import MemberView
from mesh_node.security import MeshKeys
from mesh_node.status.events import EventHub
from mesh_node.timing import Timings
from mesh_node.transfer.core import Progress
from mesh_node.transfer.digest import DigestCache
from mesh_node.transfer.fetch import Fetch, FetchJob, Source, counters_zero
from mesh_node.transfer.manifest import Manifest
from mesh_node.transfer.store import Store

log = structlog.get_logger("mesh_node.transfer")

def _single_gguf(e: CatalogEntry) -> bool:
    return e.format == "gguf" and SPLIT_RE.match(e.path.name[: -len(".gguf")]) is None \
        and e.path.name.lower().endswith(".gguf")


class TransferService:
    """Owns the store, the digest cache and every fetch of this node."""

    def __init__(self, cfg: Config, node_id: str, keys: MeshKeys, catalog: list[CatalogEntry],
                 usable: MutableMapping[str, CatalogEntry], members: Callable[[],
                                                                             Sequence[MemberView]],
                 hosted: Callable[[], Collection[str]], events: EventHub, timings: Timings,
                 on_catalog: Callable[[], None], catalog_known: trio.Event | None = None
                 ) -> None:
        self.cfg, self.node_id, self.keys, self.t = cfg, node_id, keys, timings
        # the node joins before its catalog scan ends (node/assembly.py): digests wait for it
        self._known = catalog_known
        self.catalog, self.usable, self.members, self.hosted = catalog, usable, members, hosted
        self.events, self.on_catalog = events, on_catalog
        self.shares = cfg.node.share_models
        self.counters: dict[str, int] = counters_zero()
        self.store = Store(cfg.node.store_dir, cfg.node.max_store_bytes)
        self.progress: dict[str, Progress] = {}  # digest -> progress (finished ones stay)
        self._files: dict[str, tuple[Path, Manifest]] = {}
        self._active: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._touched = 0.0
        self._failed_at: dict[str, float] = {}
        self.store_free = 0

    # --- what this node shares (api/blobs.py) ---------------------------------------------
    def lookup(self, digest: str) -> tuple[Path, Manifest] | None:
        return self._files.get(digest)

    # --- running --------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as n:
            self._nursery = n
            await self._refresh_room()
            task_status.started()
            n.start_soon(self._digest_all)
            while True:
                await trio.sleep(self.t.transfer_progress_publish)
                now = trio.current_time()
                for d in sorted(self._active):
                    self.events.publish("transfer", self.progress[d].to_json(now))

    async def _digest_all(self) -> None:
        if self._known is not None:
            await self._known.wait()
        cache = DigestCache(self.cfg.node.data_dir)
        for e in list(self.catalog):
            if e.error or e.digest or not (_single_gguf(e) or e.format == "mlx"):
                continue
            d = await trio.to_thread.run_sync(cache.digest_of, e.path, e.format == "mlx")
            if d is None:
                continue
            if d.manifest is not None:
                self._files[d.digest] = (e.path, d.manifest)
            self._replace(replace(e, digest=d.digest))
            log.info("model_digest", model=e.id, digest=d.digest[:16])
        self.on_catalog()

    def _replace(self, new: CatalogEntry) -> None:
        for i, e in enumerate(self.catalog):
            if e.id == new.id:
                self.catalog[i] = new
                break
        else:
            self.catalog.append(new)
        if not new.error:
            self.usable[new.id] = new

    async def _refresh_room(self) -> None:
        self.store_free = await trio.to_thread.run_sync(self.store.room, self._keep())

    def _keep(self) -> set[str]:
        hosted = set(self.hosted())
        return {e.digest for e in self.usable.values() if e.id in hosted and e.digest} \
            | self._active

    # --- fetch intents ---------------------------------------------------------------------
    def want(self, moves: Sequence[Move]) -> None:
        """The election's moves for this node: start the fetches not running yet (a fetch
        runs to its end even if the move disappears: the copy is then simply not used)."""
        for mv in moves:
            self.start(mv.model, mv.digest, mv.size, mv.sources, mv.reason)
        self._touch_hosted()

    def pull(self, model_id: str) -> dict[str, Any]:
        """`mesh-node pull`: fetch the model here ahead of time."""
        have = self.usable.get(model_id)
        if have is not None:
            return {"model": model_id, "digest": have.digest, "state": "present"}
        found = [(e.digest, e.size_bytes) for m in self.members() if m.live and m.state
                 and m.state.shares and m.node_id != self.node_id
                 for e in m.state.catalog if e.id == model_id and e.digest
                 and e.format == "gguf"]
        if not found:
            return {"model": model_id, "state": "failed: no live peer shares a copy"}
        digest, size = min(found)
        self.start(model_id, digest, size, (), "pulled")
        return {"model": model_id, "digest": digest, "state": self.progress[digest].state}

    def start(self, model: str, digest: str, size: int, prefer: Sequence[str],
              why: str) -> None:
        if digest in self._active or digest in self._files or self._nursery is None:
            return
        failed = self._failed_at.get(digest)
        if failed is not None and trio.current_time() - failed < self.t.failed_cooldown:
            return  # e.g. no room: not retried every plan (the failure shows in status)
        self._active.add(digest)
        self.progress[digest] = Progress(model, digest, size, trio.current_time(),
                                         window=self.t.transfer_rate_window)
        log.info("transfer_started", model=model, digest=digest[:16], size=size, reason=why)
        self._nursery.start_soon(self._fetch, FetchJob(model, digest, size), tuple(prefer))

    def _sources(self, digest: str, prefer: Sequence[str]) -> list[Source]:
        out = [Source(m.node_id, m.state.name or m.node_id,
                      f"http://{m.state.address}:{m.state.api_port}")
               for m in self.members() if m.live and m.state is not None
               and m.node_id != self.node_id and m.state.shares
               and any(e.digest == digest for e in m.state.catalog)]
        return sorted(out, key=lambda s: (s.node_id not in prefer,
                                          prefer.index(s.node_id) if s.node_id in prefer
                                          else 0, s.node_id))

    def _sign(self, src: Source, method: str, path: str) -> dict[str, str]:
        h = forward_headers(self.keys.http_key, self.node_id, src.node_id,
                            f"fetch-{os.urandom(6).hex()}", method, path, b"", time.time())
        if not self.keys.authenticated and self.cfg.api.api_key:
            h["authorization"] = f"Bearer {self.cfg.api.api_key}"
        return h

    async def _fetch(self, job: FetchJob, prefer: tuple[str, ...]) -> None:
        prog = self.progress[job.digest]
        try:
            evicted = await trio.to_thread.run_sync(self.store.make_room, job.size,
                                                    self._keep())
            if evicted is None:
                raise OSError(f"no room for {job.size} bytes in {self.store.root}")
            self._forget([c.model for c in evicted])
            fetch = Fetch(job, lambda: self._sources(job.digest, prefer), self._sign, self.store, prog, self.t, self.counters)
            dest = await fetch.run()
            await self._landed(job, dest, fetch)
        except OSError as exc:
            prog.state = f"failed: {exc}"
            self._failed_at[job.digest] = trio.current_time()
            self.counters["transfers_failed"] += 1
            log.warning("transfer_failed", model=job.model, error=str(exc))
        finally:
            self._active.discard(job.digest)
            await self._refresh_room()
            self.on_catalog()

    async def _landed(self, job: FetchJob, dest: Path, fetch: Fetch) -> None:
        ctx = self.cfg.backends.llama.ctx_size
        entry = await trio.to_thread.run_sync(gguf_entry, job.model, [dest], ctx)
        entry = replace(entry, digest=job.digest, copied=True)
        assert fetch.manifest is not None
        self._files[job.digest] = (dest, fetch.manifest)  # shared onward, like any file
        self._replace(entry)
        self.counters["transfers_completed"] += 1
        prog = self.progress[job.digest]
        prog.state = "verified"  # only now: the copy is in the catalog (pull waits for this)
        log.info("transfer_verified", model=job.model, digest=job.digest[:16],
                 size=entry.size_bytes, seconds=round(trio.current_time() - prog.started, 2),
                 refetched_chunks=prog.refetched_chunks, resumed_from=prog.resumed_from)
        self.events.publish("transfer", prog.to_json(trio.current_time()))

    def _forget(self, models: Sequence[str]) -> None:
        """Evicted copies leave the catalog."""
        for mid in models:
            e = self.usable.pop(mid, None)
            if e is not None:
                self.catalog[:] = [c for c in self.catalog if c.id != mid]
                self._files.pop(e.digest, None)
                log.info("store_evicted", model=mid, digest=e.digest[:16])

    def _touch_hosted(self) -> None:
        now = time.time()
        if now - self._touched < self.t.store_touch_interval:
            return
        self._touched = now
        hosted = set(self.hosted())
        used = {e.digest: now for e in self.usable.values() if e.copied and e.id in hosted}
        if used:
            self.store.touch(used)

    def status(self) -> list[dict[str, Any]]:
        now = trio.current_time()
        return [p.to_json(now) for _, p in sorted(self.progress.items())]
