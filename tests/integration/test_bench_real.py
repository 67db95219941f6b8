"""The bench harness end to end: real llama-server (Gemma 3 270M) and real mlx_lm.server.

The MLX side is the tiny generated model, in a folder named like an MLX export of Gemma 3
270M, so the run goes through the paired-export path (`--pair`): key check, then both
backends under the same settings, concurrency 1, 4, 8. Small settings keep it near a minute.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mesh_node.bench.cli import main as bench_main
from tests.support.backends_procs import shared_demo_gguf
from tests.support.tiny_mlx import make_tiny_mlx_model

pytestmark = [pytest.mark.real, pytest.mark.timeout(400)]
MAX_TOKENS = 8


def test_bench_real_pair_llama_and_mlx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gguf = shared_demo_gguf()  # gemma-3-270m-q4_k_m.gguf
    mlx_dir = make_tiny_mlx_model(tmp_path / "gemma-3-270m-4bit")
    js, png = tmp_path / "bench.json", tmp_path / "bench.png"
    t0 = time.monotonic()
    code = bench_main(["--pair", str(gguf), str(mlx_dir), "--concurrency", "1,4,8",
                       "--iterations", "1", "--warmup", "1", "--max-tokens", str(MAX_TOKENS),
                       "--threads", "1", "--timeout", "120",
                       "--json-out", str(js), "--chart-out", str(png)])
    elapsed = time.monotonic() - t0
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    doc = json.loads(js.read_text())
    llama, mlx = doc["results"]
    assert (llama["kind"], mlx["kind"]) == ("llama", "mlx")
    for r in (llama, mlx):
        assert r["error"] is None and 0 < r["startup_s"] < 120
        assert [lv["concurrency"] for lv in r["levels"]] == [1, 4, 8]
        for lv in r["levels"]:
            assert lv["errors"] == 0 and lv["requests"] == lv["concurrency"]
            assert 0 < lv["avg_ttft"] < lv["avg_total"] <= lv["avg_batch_wall"] + 1e-6
            assert lv["avg_decode_tps"] > 0 and lv["avg_overall_tps"] > 0
            assert lv["avg_batch_tps"] > 0
    # llama-server honours ignore_eos: exactly max_tokens per request, counted from `usage`
    assert all(lv["avg_tokens"] == MAX_TOKENS for lv in llama["levels"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "llama:gemma-3-270m-q4_k_m" in out.out and "mlx:gemma-3-270m-4bit" in out.out
    assert "ready in" in out.err and "concurrency 8 batch 1/1" in out.err
    print(out.out, f"\nelapsed {elapsed:.1f}s")
