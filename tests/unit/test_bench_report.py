"""Bench output: the terminal/Markdown table, the JSON document, the PNG chart, CLI usage errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mesh_node.bench import report
from mesh_node.bench.cli import main as bench_main
from mesh_node.bench.harness import all_ok
from mesh_node.bench.spec import Settings
from mesh_node.bench.stats import LevelStats, TargetResult
from mesh_node.cli.main import main as node_main


def _level(c: int, tps: float, errors: int = 0) -> LevelStats:
    return LevelStats(concurrency=c, batches=3, requests=3 * c - errors, errors=errors,
                      avg_ttft=0.1234 * c, avg_total=1.5, avg_batch_wall=1.6,
                      avg_decode_tps=tps, avg_overall_tps=tps * 0.9, avg_batch_tps=tps * c * 0.8,
                      avg_tokens=64.0)


RESULTS = [
    TargetResult("llama:gemma", "llama", "/m/g.gguf", 2.5, (_level(1, 50.0), _level(4, 20.0, 1))),
    TargetResult("mlx:tiny", "mlx", "/m/t", 3.25, (_level(1, 300.0), _level(4, 150.0))),
    TargetResult("url:down", "url", "x", None, error="backend did not start: failed"),
]


def test_bench_table_has_one_row_per_level_and_failures() -> None:
    text = report.render_table(RESULTS)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["target", "conc"]
    assert len(lines) == 2 + 4 + 1
    assert lines[2].split() == ["llama:gemma", "1", "2.50", "0.123", "1.50", "1.60", "50.0",
                                "45.0", "40.0", "3/0"]
    assert lines[3].split()[:2] == ["4", "0.494"] and lines[3].split()[-1] == "11/1"
    assert lines[-1] == "url:down: FAILED: backend did not start: failed"


def test_bench_markdown_table() -> None:
    md = report.render_table(RESULTS[:1], markdown=True).splitlines()
    assert md[0].startswith("| target | conc |") and md[1].startswith("|---|")
    assert md[2].startswith("| llama:gemma | 1 | 2.50 | 0.123 |") and len(md) == 4


def test_bench_json_document(tmp_path: Path) -> None:
    doc = report.to_json(RESULTS, Settings(), when=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    out = tmp_path / "r.json"
    report.write_json(out, doc)
    back = json.loads(out.read_text())
    assert back["date"] == "2026-01-02T03:04:05+00:00"
    assert back["settings"]["concurrency"] == [1, 4, 8] and back["machine"]["cpus"] >= 1
    assert back["results"][0]["levels"][1]["avg_decode_tps"] == 20.0
    assert back["results"][2]["error"].startswith("backend did not start")


def test_bench_png_chart(tmp_path: Path) -> None:
    out = tmp_path / "chart.png"
    report.write_chart(out, RESULTS)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_bench_all_ok() -> None:
    assert all_ok(RESULTS[:2])
    assert not all_ok(RESULTS)
    dead = TargetResult("x", "url", "m", None, (_level(1, 1.0, errors=3),))
    assert not all_ok([dead])


@pytest.mark.parametrize(("argv", "needle"), [
    ([], "nothing to benchmark"),
    (["--url", "http://127.0.0.1:9"], "--url needs --model"),
    (["--mesh", "127.0.0.1:9337", "--model", "m"], "want an http(s):// URL"),
    (["--url", "http://127.0.0.1:9", "--model", "m", "--concurrency", "1,x"], "concurrency"),
    (["--url", "http://127.0.0.1:9", "--model", "m", "--iterations", "0"], "--iterations: must be >= 1"),
])
def test_bench_cli_usage_errors_exit_2(argv: list[str], needle: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(argv) == 2
    assert needle in capsys.readouterr().err


def test_bench_hook_in_node_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        node_main(["bench", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "mesh-node bench" in out and "--pair" in out and "--chart-out" in out


def test_bench_cli_unreachable_targets_exit_1(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.backends_procs import free_port

    out = tmp_path / "r.json"
    code = bench_main(["--url", f"http://127.0.0.1:{free_port()}", "--model", "m",
                       "--llama", str(tmp_path / "missing.gguf"), "--concurrency", "1",
                       "--iterations", "1", "--warmup", "0", "--timeout", "5",
                       "--json-out", str(out)])
    assert code == 1
    captured = capsys.readouterr()
    assert "llama:missing.gguf: FAILED:" in captured.out and "is not a file" in captured.out
    assert "0/1" in captured.out  # the URL target ran; its one request failed
    assert "[bench] url:m: concurrency 1 batch 1/1: 0 tokens" in captured.err
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["results"]] == ["llama:missing.gguf", "url:m"]
