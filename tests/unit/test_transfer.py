"""Models travel (issue 14): manifest and digest, range parsing, the fetcher's pure core, the
digest cache, the store's LRU bound, the blob endpoint's path safety, and the fetcher against
real holder apps (corrupted chunk refetched, lost holder resumed from the byte reached)."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from mesh_node.api.app import build_app
from mesh_node.api.fake import FakeMeshContext
from mesh_node.api.meshauth import forward_headers
from mesh_node.records import ModelSummary, NodeState
from mesh_node.records_wire import RecordError, decode_state, encode_state
from mesh_node.timing import Timings
from mesh_node.transfer import digest as digest_mod
from mesh_node.transfer.core import Assembly, Holders, Progress
from mesh_node.transfer.digest import DigestCache
from mesh_node.transfer.fetch import Fetch, FetchJob, Source, _resume_point, counters_zero
from mesh_node.transfer.manifest import (
    Hasher,
    Manifest,
    ManifestError,
    chunk_hash,
    parse_range,
    tree_digest,
)
from mesh_node.transfer.store import Store, StoredCopy, evictions, room
from tests.support.api_servers import api_serving

CB = 64 * 1024  # small chunks keep the tests fast; the code is the same at 16 MiB


def _data(n: int, seed: int = 1) -> bytes:
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}-{i}".encode()).digest()
        i += 1
    return out[:n]


def _manifest(data: bytes, cb: int = CB) -> Manifest:
    h = Hasher(cb)
    for i in range(0, len(data), 1000):  # fed in pieces that straddle chunk bounds
        h.update(data[i:i + 1000])
    return h.manifest()


# --- manifest, digest, range --------------------------------------------------------------------

def test_manifest_digest_is_the_tree_of_chunk_hashes_and_checks_itself() -> None:
    data = _data(3 * CB + 17)
    man = _manifest(data)
    assert len(man.chunks) == 4 and man.size == len(data)
    assert man.chunks[1] == chunk_hash(data[CB:2 * CB])
    assert man.digest == hashlib.sha256(b"".join(
        hashlib.sha256(data[i:i + CB]).digest() for i in range(0, len(data), CB))).hexdigest()
    assert Manifest.from_json(man.to_json()) == man
    lying = {**man.to_json(), "chunks": [man.chunks[0], man.chunks[0], *man.chunks[2:]]}
    with pytest.raises(ManifestError, match="do not make the digest"):
        Manifest.from_json(lying)
    with pytest.raises(ManifestError):
        Manifest.from_json({**man.to_json(), "size": man.size + CB})  # one chunk short
    with pytest.raises(ManifestError):
        Manifest.from_json({**man.to_json(), "size": "12"})
    assert tree_digest([]) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(("header", "want"), [
    (None, None), ("bytes=0-", (0, 100)), ("bytes=10-19", (10, 20)), ("bytes=90-500", (90, 100)),
    (" bytes=99-", (99, 100)),
])
def test_parse_range_accepts_one_satisfiable_range(header: str | None,
                                                   want: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == want


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=20-10", "bytes=-5", "bytes=0-1,5-6",
                                    "items=0-", "bytes=0-\n1"])
def test_parse_range_refuses_the_rest(header: str) -> None:
    with pytest.raises(ValueError):
        parse_range(header, 100)


# --- the fetcher's pure core -------------------------------------------------------------------

def test_assembly_cuts_chunks_and_resumes_from_the_byte_reached() -> None:
    data = _data(2 * CB + 5)
    asm = Assembly(_manifest(data))
    assert asm.feed(data[:CB - 1]) == []
    assert asm.offset == CB - 1  # a lost holder: the next one is asked from here
    out = asm.feed(data[CB - 1:CB + 10])
    assert [(i, bytes(b)) for i, b in out] == [(0, data[:CB])]
    asm.accept(0)
    assert asm.verified == CB and asm.offset == CB + 10
    (i, b), = asm.feed(data[CB + 10:2 * CB])
    asm.reject(i)  # bad hash: the chunk and anything after it is fetched again
    assert asm.offset == CB
    asm.feed(data[CB:])
    asm.accept(1)
    asm.accept(2)
    assert asm.done
    with pytest.raises(ValueError):
        asm.feed(b"x")


def test_assembly_resumes_only_from_a_chunk_boundary() -> None:
    man = _manifest(_data(2 * CB))
    assert Assembly(man, CB).offset == CB
    with pytest.raises(ValueError):
        Assembly(man, CB + 1)


def test_holders_back_off_and_prefer_the_honest() -> None:
    h = Holders(retry_min=0.5, retry_max=4.0)
    ids = ["a", "b"]
    assert h.pick(ids, 0.0) == "a"
    assert h.failed("a", 0.0) == 0.5
    assert h.pick(ids, 0.1) == "b"
    assert h.failed("b", 0.1, corrupt=True) == 0.5
    assert h.pick(ids, 0.2) is None and h.next_try(ids, 0.2) == pytest.approx(0.3)
    assert h.pick(ids, 1.0) == "a"  # b served a corrupt chunk: asked only when a cannot be
    assert [h.failed("a", 1.0) for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]  # capped
    assert h.pick(ids, 1.0) == "b"
    h.succeeded("a")
    assert h.failed("a", 10.0) == 0.5


def test_progress_rate_and_eta() -> None:
    p = Progress("m", "d" * 64, 1000, started=0.0)
    assert p.rate() == 0.0 and p.eta() is None
    p.update(100, 1.0)
    p.update(300, 2.0)
    assert p.rate() == 200.0 and p.eta() == 3.5
    doc = p.to_json(2.0)
    assert doc["bytes"] == 300 and doc["rate_bps"] == 200 and doc["eta_s"] == 3.5


# --- digest cache ------------------------------------------------------------------------------

def test_digest_cache_hashes_once_per_path_size_and_mtime(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(_data(CB + 3))
    calls: list[Path] = []
    real = digest_mod.hash_file

    def counting(path: Path, chunk_bytes: int = digest_mod.CHUNK_BYTES) -> Manifest:
        calls.append(path)
        return real(path, chunk_bytes)

    monkeypatch.setattr(digest_mod, "hash_file", counting)
    d1 = DigestCache(tmp_path / "data").digest_of(f, False)
    d2 = DigestCache(tmp_path / "data").digest_of(f, False)  # a restart: read from disk
    assert d1 is not None and d1 == d2 and len(calls) == 1
    assert d1.manifest is not None and d1.digest == d1.manifest.digest
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: hashed again
    assert DigestCache(tmp_path / "data").digest_of(f, False) == d1 and len(calls) == 2
    (tmp_path / "data" / "digests.json").write_text("{not json")
    assert DigestCache(tmp_path / "data").digest_of(f, False) == d1  # damaged: rebuilt
    assert DigestCache(tmp_path / "data").digest_of(tmp_path / "gone", False) is None


def test_mlx_folder_digest_follows_its_files(tmp_path: Path) -> None:
    d = tmp_path / "mlx"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"w" * 100)
    first = digest_mod.hash_mlx_folder(d)
    (d / ".hidden").write_text("ignored")
    assert digest_mod.hash_mlx_folder(d) == first
    (d / "model.safetensors").write_bytes(b"v" * 100)
    assert digest_mod.hash_mlx_folder(d) != first


# --- the store ---------------------------------------------------------------------------------

def _copy(d: str, size: int, used: float) -> StoredCopy:
    return StoredCopy(d, Path(f"/s/{d}"), size, used, f"model-{d}")


def test_evictions_lru_first_never_what_is_kept() -> None:
    copies = [_copy("a", 40, 1.0), _copy("b", 40, 3.0), _copy("c", 40, 2.0)]
    big_disk = 1 << 40
    assert evictions(copies, 30, 150, big_disk, keep=()) == []
    assert [c.digest for c in evictions(copies, 50, 150, big_disk, ()) or []] == ["a"]
    assert [c.digest for c in evictions(copies, 50, 150, big_disk, {"a"}) or []] == ["c"]
    assert [c.digest for c in evictions(copies, 90, 150, big_disk, ()) or []] == ["a", "c"]
    assert evictions(copies, 200, 150, big_disk, ()) is None  # bigger than the bound
    assert evictions(copies, 60, 150, big_disk, {"a", "b", "c"}) is None
    assert room(copies, 150, big_disk, {"b"}) == 110
    assert room(copies, None, (1 << 30), ()) == (1 << 30) - (256 << 20) + 120


def test_store_evicts_only_its_own_copies(tmp_path: Path) -> None:
    user = tmp_path / "models" / "mine.gguf"
    user.parent.mkdir()
    user.write_bytes(b"u" * 100)
    store = Store(tmp_path / "store", max_bytes=250)
    for i, d in enumerate(("a" * 64, "b" * 64)):
        p = store.slot(d, f"org/model-{i}")
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x" * 100)
        store.add(d, p, 100, float(i), f"org/model-{i}")
    assert store.slot("a" * 64, "org/../x") == tmp_path / "store" / ("a" * 16) / "org_.._x.gguf"
    with pytest.raises(ValueError):
        store.slot("../etc", "m")
    evicted = store.make_room(100, keep=())
    assert [c.model for c in evicted or []] == ["org/model-0"]
    assert not (tmp_path / "store" / ("a" * 16)).exists() and user.exists()
    assert set(Store(tmp_path / "store", 250).copies) == {"b" * 64}  # the index survived
    assert store.make_room(300, keep=()) is None


def test_resume_point_keeps_the_verified_chunks_only(tmp_path: Path) -> None:
    data = _data(4 * CB)
    man = _manifest(data)
    part = tmp_path / "m.gguf.part"
    part.write_bytes(data[:2 * CB] + b"\0" * CB + data[3 * CB:3 * CB + 10])
    assert _resume_point(part, man) == 2 * CB
    assert part.stat().st_size == 2 * CB
    assert _resume_point(tmp_path / "none.part", man) == 0


# --- wire --------------------------------------------------------------------------------------

def _state(**kw: object) -> NodeState:
    return NodeState("n1", "n1", "10.0.0.1", 9337, 9338, 1, 1, **kw)  # type: ignore[arg-type]


def test_wire_carries_digests_and_store_room_with_bounds() -> None:
    m = ModelSummary("g", "g", "llama", "gguf", 5, 6, (), "ab" * 32, True)
    st = _state(catalog=(m,), store_free=123, shares=False)
    assert decode_state(encode_state(st)) == st
    for bad in ("AB" * 32, "ab" * 31, "x" * 64, "ab" * 33):
        with pytest.raises(RecordError):
            decode_state(encode_state(_state(catalog=(ModelSummary(
                "g", "g", "llama", "gguf", 5, 6, (), bad),))))
    with pytest.raises(RecordError):
        decode_state(encode_state(_state(store_free=1 << 51)))


# --- the blob endpoint: real app, fake catalog --------------------------------------------------

@dataclass
class _Source:
    files: dict[str, tuple[Path, Manifest]]
    shares: bool = True
    counters: dict[str, int] = field(default_factory=counters_zero)
    lookups: list[str] = field(default_factory=list)

    def lookup(self, digest: str) -> tuple[Path, Manifest] | None:
        self.lookups.append(digest)
        return self.files.get(digest)

    def pull(self, model_id: str) -> dict[str, object]:
        return {"model": model_id, "state": "starting"}


def _signed(ctx: FakeMeshContext, path: str) -> dict[str, str]:
    return forward_headers(ctx.keys.http_key, "peer", ctx.node_id, "r1", "GET", path, b"",
                           time.time())


async def test_blob_endpoint_serves_its_catalog_only_and_reads_nothing_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(3 * CB)
    f = tmp_path / "model.gguf"
    f.write_bytes(data)
    man = _manifest(data)
    src = _Source({man.digest: (f, man)})
    ctx = FakeMeshContext(node_id="holder")
    opened: list[object] = []
    real_open = os.open

    def spy(path: object, *a: object, **kw: object) -> int:
        opened.append(path)
        return real_open(path, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("mesh_node.api.blobs.os.open", spy)
    app = build_app(ctx, Timings(), blobs=src)
    async with api_serving(app) as url, httpx.AsyncClient(base_url=url) as c:
        for path in (f"/mesh/v1/blobs/{'0' * 64}", f"/mesh/v1/blobs/{'0' * 64}/manifest",
                     "/mesh/v1/blobs/..%2F..%2Fetc%2Fpasswd", "/mesh/v1/blobs/%2Fetc%2Fpasswd",
                     f"/mesh/v1/blobs/{man.digest.upper()}"):
            r = await c.get(path, headers=_signed(ctx, path))
            assert r.status_code == 404, (path, r.text)
        assert opened == []  # nothing was opened for any of them
        assert all(len(d) == 64 and d == d.lower() for d in src.lookups) or not src.lookups
        path = f"/mesh/v1/blobs/{man.digest}"
        assert (await c.get(path)).status_code == 401  # no mesh signature: a stranger
        r = await c.get(path, headers=_signed(ctx, path) | {"range": f"bytes={CB + 1}-"})
        assert r.status_code == 206 and r.content == data[CB + 1:]
        assert r.headers["content-range"] == f"bytes {CB + 1}-{3 * CB - 1}/{3 * CB}"
        r = await c.get(path, headers=_signed(ctx, path) | {"range": f"bytes={3 * CB}-"})
        assert r.status_code == 416
        r = await c.get(path + "/manifest", headers=_signed(ctx, path + "/manifest"))
        assert Manifest.from_json(r.json()) == man
        assert src.counters["blob_bytes_served"] == 2 * CB - 1
        src.shares = False  # [node] share_models = false
        r = await c.get(path, headers=_signed(ctx, path))
        assert r.status_code == 404
        assert opened == [f]


# --- the fetcher against real holder apps -------------------------------------------------------

@dataclass
class _Holder:
    ctx: FakeMeshContext
    src: _Source
    url: str = ""


async def _fetch(tmp_path: Path, data: bytes, files: list[bytes], nursery: trio.Nursery
                 ) -> tuple[Path, dict[str, int], Progress]:
    man = _manifest(data)
    holders: list[_Holder] = []
    for i, content in enumerate(files):
        p = tmp_path / f"h{i}.gguf"
        p.write_bytes(content)
        h = _Holder(FakeMeshContext(node_id=f"h{i}"), _Source({man.digest: (p, man)}))
        h.url = await nursery.start(_serve, build_app(h.ctx, Timings(), blobs=h.src))
        holders.append(h)
    keys = holders[0].ctx.keys

    def sign(s: Source, method: str, path: str) -> dict[str, str]:
        return forward_headers(keys.http_key, "me", s.node_id, "r", method, path, b"",
                               time.time())

    counters = counters_zero()
    prog = Progress("m", man.digest, man.size, trio.current_time())
    store = Store(tmp_path / "store", None)
    sources = [Source(h.ctx.node_id, h.ctx.node_id, h.url) for h in holders]
    t = Timings(transfer_retry_min=0.01, transfer_retry_max=0.05)
    dest = await Fetch(FetchJob("org/m", man.digest, man.size), lambda: sources, sign, store,
                       prog, t, counters).run()
    return dest, counters, prog


async def _serve(app: object, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                 ) -> None:
    async with api_serving(app) as url:  # type: ignore[arg-type]
        task_status.started(url)
        await trio.sleep_forever()


async def test_fetch_refetches_a_corrupted_chunk_from_another_holder(tmp_path: Path) -> None:
    data = _data(6 * CB + 99)
    bad = bytearray(data)
    bad[2 * CB + 7] ^= 0xFF
    async with trio.open_nursery() as n:
        dest, counters, prog = await _fetch(tmp_path, data, [bytes(bad), data], n)
        n.cancel_scope.cancel()
    assert dest.read_bytes() == data and dest.name == "org_m.gguf"
    assert prog.refetched_chunks == 1 and counters["transfer_chunks_refetched"] == 1
    assert prog.state == "renamed" and not dest.with_name(dest.name + ".part").exists()


async def test_fetch_resumes_from_the_byte_reached_when_a_holder_is_lost(tmp_path: Path) -> None:
    data = _data(6 * CB + 99)
    cut = 3 * CB + 1234  # the first holder's file ends here: its answer breaks off mid-chunk
    with capture_logs() as logs:
        async with trio.open_nursery() as n:
            dest, counters, prog = await _fetch(tmp_path, data, [data[:cut], data], n)
            n.cancel_scope.cancel()
    ranges = [(e["peer"], e["offset"]) for e in logs if e["event"] == "transfer_range"]
    assert ranges == [("h0", 0), ("h1", cut)], ranges
    assert dest.read_bytes() == data
    assert counters["transfer_bytes_received"] == len(data)  # no byte crossed twice
    assert prog.refetched_chunks == 0


# --- visible: the CLI's progress bar and status section -----------------------------------------

def test_progress_line_and_status_section() -> None:
    from mesh_node.cli.pull import progress_line, render_transfers
    from mesh_node.cli.render import render_status

    t = {"model": "gemma", "digest": "d", "state": "fetching", "source": "studio",
         "bytes": 50 * 1024 * 1024, "total": 200 * 1024 * 1024, "rate_bps": 25 * 1024 * 1024,
         "eta_s": 6.0}
    line = progress_line(t)
    assert line.startswith("[" + "#" * 7 + "." * 23 + "]  25%")
    assert "50.0 MiB / 200.0 MiB" in line and "25.0 MiB/s" in line and "ETA 6.0 s" in line
    assert line.endswith("from studio")
    assert render_transfers([], []) == ""
    moves = [{"model": "gemma", "target": "abcdef123456", "reason": "copy from a: solo on b"}]
    screen = render_status({"node": {}, "mesh": {}, "transfers": [t], "moves": moves})
    assert "Transfers\ngemma  [" in screen and "copy from a: solo on b" in screen


def test_copies_in_the_store_rejoin_the_catalog_after_a_restart(tmp_path: Path) -> None:
    from mesh_node.catalog.scan import scan_catalog
    from mesh_node.config.model import Config, NodeConfig

    cfg = Config(node=NodeConfig("n", tmp_path / "data"), demo_model=False)
    store = Store(cfg.node.store_dir, None)
    p = store.slot("c" * 64, "org/model")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"GGUF-not-really")
    store.add("c" * 64, p, 15, 1.0, "org/model")
    (p.parent / "half.gguf.part").write_bytes(b"x")  # an unfinished fetch is no model
    entries = scan_catalog(cfg, hf_cache=tmp_path / "no-hf")
    assert [(e.id, e.copied, e.path) for e in entries] == [("org/model", True, p)]
