"""Models travel over the LAN (issue 14), in the lab: real nodes, the real Gemma 3 270M GGUF,
real llama-server. Holders can only split the model; the big node copies it, verifies it and
serves it solo. A holder killed mid-transfer, a corrupted chunk, and requests outside the
catalog. Every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from election_configs import (
    ELAB_MESH,
    ELAB_SECRET,
    GEMMA_ID,
    elab_catalog_memory,
    elab_chat,
    elab_gemma_file,
    elab_kill_host,
)
from netlab import Lab, NodeProc
from netlab_proc import mesh_node_bin
from transfer_configs import (
    sha256_file,
    tlab_local,
    tlab_log_events,
    tlab_seed,
    tlab_solo_on,
    tlab_specs,
    tlab_start,
    tlab_start_one,
    tlab_throttle,
    tlab_transfer,
    tlab_wait_bytes,
    tlab_wait_log,
)

from mesh_node.api.meshauth import forward_headers
from mesh_node.security import derive_keys
from mesh_node.transfer.digest import DigestCache

pytestmark = [pytest.mark.lab, pytest.mark.real]

COPY_SERVE_S = 120.0  # two node starts, digest, 253 MB copy, llama-server load, on 2 shared cores
CHUNK = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def tlab_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = elab_gemma_file(tmp_path_factory.mktemp("tlab-cache"))
    return path


@pytest.fixture(scope="module")
def tlab_memory(tlab_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> int:
    memory: int = elab_catalog_memory(tlab_gguf, tmp_path_factory.mktemp("tlab-probe"))
    return memory


def _copied(st: dict[str, Any]) -> bool:
    e = tlab_local(st)
    return e is not None and bool(e["copied"]) and bool(e["digest"])


def _digest_known(st: dict[str, Any]) -> bool:
    e = tlab_local(st)
    return e is not None and bool(e["digest"])


def _signed_get(node: NodeProc, target_id: str, path: str, timeout: float = 10.0
                ) -> tuple[int, bytes]:
    """GET `path` of `node` signed like a mesh member (the lab knows the mesh secret)."""
    keys = derive_keys(ELAB_SECRET, ELAB_MESH)
    h = forward_headers(keys.http_key, "lab-probe", target_id, "probe", "GET", path, b"",
                        time.time())
    argv = ["ip", "netns", "exec", node.ns, "curl", "-sS", "-m", str(timeout), "-o", "-",
            "-w", "\n%{http_code}", "--path-as-is"]
    for k, v in h.items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run([*argv, node.base_url + path], capture_output=True, timeout=timeout + 5).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code or 0), body


def _chat_ok(node: NodeProc) -> None:
    res = elab_chat(node.ns, node.base_url, GEMMA_ID, max_tokens=8, timeout=60)
    assert res.status == 200, f"{node.ns}: {res.status} {res.body[:300]}\n{node.log_tail(30)}"
    assert res.json()["choices"][0]["message"]["content"].strip()


def test_big_node_copies_verifies_and_serves_solo(lab_factory: Any, tlab_gguf: Path,
                                                  tlab_memory: int) -> None:
    lab: Lab = lab_factory(2)
    tlab_seed(lab, tlab_gguf, {1})
    small, big = tlab_start(lab, tlab_specs(lab, tlab_memory, {1}))
    st_small = small.wait_for(_digest_known, 60)
    holder_digest = tlab_local(st_small)["digest"]  # type: ignore[index]
    big_id = big.wait_for(lambda st: bool(st.get("node")), 30)["node"]["id"]

    st = big.wait_for(lambda st: _copied(st) and tlab_solo_on(st, big_id), COPY_SERVE_S)
    entry = tlab_local(st)
    assert entry is not None and entry["digest"] == holder_digest
    assert sha256_file(Path(entry["path"])) == sha256_file(tlab_gguf)  # the bytes, not a name
    t = tlab_transfer(st)
    assert t is not None and t["state"] == "verified" and t["bytes"] == t["total"]
    assert t["refetched_chunks"] == 0
    # the move said why it copied; the verified copy then took over from the split
    started = tlab_log_events(big, "transfer_started")
    assert started and "solo on tlab2 instead of a 2-way split" in started[0]["reason"], started
    _chat_ok(big)
    _chat_ok(small)
    metrics = big.get("/metrics").body
    assert "mesh_transfers_completed_total 1.0" in metrics, metrics[-2000:]

    # a holder serves only files of its own catalog, by digest: the rest is 404 and reads nothing
    small_id = st_small["node"]["id"]
    served = small.status()["counters"]["blob_bytes_served"]
    passwd = sha256_file(Path("/etc/passwd"))
    for path in (f"/mesh/v1/blobs/{passwd}", f"/mesh/v1/blobs/{'0' * 64}",
                 f"/mesh/v1/blobs/{passwd}/manifest", "/mesh/v1/blobs/../../etc/passwd",
                 "/mesh/v1/blobs/..%2F..%2Fetc%2Fpasswd", "/mesh/v1/blobs/%2Fetc%2Fpasswd"):
        code, body = _signed_get(small, small_id, path)
        assert code == 404, (path, code, body[:200])
        assert b"root:" not in body
    assert small.status()["counters"]["blob_bytes_served"] == served
    # strangers (no mesh signature) get 401, even for a file the holder has
    res = small.get(f"/mesh/v1/blobs/{holder_digest}")
    assert res.status == 401, res
    code, body = _signed_get(small, small_id, f"/mesh/v1/blobs/{holder_digest}/manifest")
    assert code == 200 and b'"chunks"' in body


def _fetch_source(st: dict[str, Any]) -> str:
    t = tlab_transfer(st)
    return t["source"] if t else ""


def test_kill_source_mid_transfer_third_holder_completes(lab_factory: Any, tlab_gguf: Path,
                                                         tlab_memory: int) -> None:
    lab: Lab = lab_factory(3)
    tlab_seed(lab, tlab_gguf, {1, 3})
    for k in (1, 3):
        tlab_throttle(lab, k, 240)  # 30 MB/s: the 253 MB copy takes ~8 s, so a kill lands mid
    nodes = tlab_start(lab, tlab_specs(lab, tlab_memory, {1, 3}))
    big = nodes[1]
    st = tlab_wait_bytes(big, 3 * CHUNK, COPY_SERVE_S)
    source = _fetch_source(st)
    victim = {"tlab1": 1, "tlab3": 3}[source]
    elab_kill_host(lab, victim)
    killed_at = tlab_transfer(st)["bytes"]  # type: ignore[index]
    st = big.wait_for(_copied, COPY_SERVE_S)
    assert tlab_local(st)["digest"] == tlab_local(nodes[2 if victim == 1 else 0].status()
                                                  )["digest"]  # type: ignore[index]
    ranges = tlab_log_events(big, "transfer_range")
    other = "tlab3" if victim == 1 else "tlab1"
    assert any(r["peer"] == other and r["offset"] >= killed_at for r in ranges), ranges
    assert sha256_file(Path(tlab_local(st)["path"])) == sha256_file(tlab_gguf)  # type: ignore[index]


def test_kill_only_source_resumes_from_byte_reached(lab_factory: Any, tlab_gguf: Path,
                                                    tlab_memory: int) -> None:
    lab: Lab = lab_factory(2)
    tlab_seed(lab, tlab_gguf, {1})
    tlab_throttle(lab, 1, 240)
    specs = tlab_specs(lab, tlab_memory, {1})
    small, big = tlab_start(lab, specs)
    tlab_wait_bytes(big, 3 * CHUNK, COPY_SERVE_S)
    elab_kill_host(lab, 1)
    tlab_wait_log(big, "transfer_source_failed", 30)  # the fetcher saw its holder go
    reached = big.status()["counters"]["transfer_bytes_received"]
    assert 0 < reached < os.path.getsize(tlab_gguf)
    tlab_start_one(lab, 1, specs[0])  # the source returns (same data_dir, same id)
    st = big.wait_for(_copied, COPY_SERVE_S)
    ranges = tlab_log_events(big, "transfer_range")
    assert len(ranges) >= 2 and ranges[0]["offset"] == 0, ranges
    assert ranges[-1]["offset"] == reached, (ranges, reached)  # the byte it reached, not a chunk
    # every byte crossed the LAN once: nothing was fetched twice
    assert st["counters"]["transfer_bytes_received"] == os.path.getsize(tlab_gguf)
    assert sha256_file(Path(tlab_local(st)["path"])) == sha256_file(tlab_gguf)  # type: ignore[index]


def _flip_byte(path: Path, offset: int) -> None:
    """Corrupt one byte in place and keep size and mtime: the holder's cached digest and chunk
    list still describe the good file, so it serves a bad chunk (bit rot, or a bad link)."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_corrupted_chunk_is_detected_and_refetched(lab_factory: Any, tlab_gguf: Path,
                                                   tlab_memory: int) -> None:
    lab: Lab = lab_factory(3)
    # h1's id sorts first, so the fetcher asks it first; its copy (not a link) gets corrupted
    tlab_seed(lab, tlab_gguf, {3}, {1: "0" * 31 + "1", 2: "5" * 32, 3: "f" * 32})
    bad = lab.host(1).workdir / "models" / f"{GEMMA_ID}.gguf"
    bad.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", str(tlab_gguf), str(bad)], check=True)
    DigestCache(lab.host(1).workdir / "data").digest_of(bad, False)  # cached while good
    _flip_byte(bad, 5 * CHUNK + 12345)  # chunk 5 now lies about its cached hash
    nodes = tlab_start(lab, tlab_specs(lab, tlab_memory, {1, 3}))
    holder = nodes[0].wait_for(_digest_known, 60)
    assert tlab_local(holder)["digest"] == tlab_local(nodes[2].wait_for(_digest_known, 60)
                                                      )["digest"]  # type: ignore[index]
    big = nodes[1]
    st = big.wait_for(_copied, COPY_SERVE_S)
    t = tlab_transfer(st)
    assert t is not None and t["refetched_chunks"] >= 1, t
    corrupt = tlab_log_events(big, "transfer_chunk_corrupt")
    assert corrupt and corrupt[0]["peer"] == "tlab1" and corrupt[0]["chunk"] == 5, corrupt
    assert sha256_file(Path(tlab_local(st)["path"])) == sha256_file(tlab_gguf)  # type: ignore[index]
    assert st["counters"]["transfer_chunks_refetched"] >= 1


def test_pull_copies_a_model_ahead_of_time(lab_factory: Any, tlab_gguf: Path,
                                           tlab_memory: int) -> None:
    """`mesh-node pull`: no placement asks for the copy (the holder serves it solo), the CLI
    fetches it anyway; result on stdout, exit 0, the copy in the node's catalog."""
    lab: Lab = lab_factory(2)
    tlab_seed(lab, tlab_gguf, {1})
    specs = [dataclasses.replace(s, memory_bytes=tlab_memory * 4) for s in
             tlab_specs(lab, tlab_memory, {1})]
    holder, other = tlab_start(lab, specs)
    holder.wait_for(_digest_known, 60)
    other.wait_for(lambda st: any(tlab_local_any(st, m) for m in (GEMMA_ID,)), 60)
    assert tlab_transfer(other.status()) is None  # solo on the holder: nothing to move
    cp = lab.host(2).exec([str(mesh_node_bin()), "pull", GEMMA_ID, "--url", other.base_url,
                           "--json"], timeout=120)
    doc = json.loads(cp.stdout)
    assert doc["state"] == "verified" and doc["source"] == "tlab1", doc
    st = other.status()
    assert _copied(st) and tlab_local(st)["digest"] == doc["digest"]  # type: ignore[index]
    screen = lab.host(2).exec([str(mesh_node_bin()), "status", "--url", other.base_url]).stdout
    assert "Transfers" in screen and "verified" in screen


def tlab_local_any(st: dict[str, Any], model: str) -> bool:
    """The mesh catalog (every node's) lists the model."""
    return any(e.get("id") == model for e in st.get("catalog", []))
