"""Paired exports: a GGUF and a tiny MLX folder match by comparison key, or are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh_node.bench.cli import build_parser, main, resolve
from mesh_node.bench.pairing import check_pair
from mesh_node.bench.spec import SpecError
from tests.support.backends_gguf import write_tiny_gguf
from tests.support.tiny_mlx import make_tiny_mlx_model


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bench-pair")
    return {
        "gguf": write_tiny_gguf(base / "gemma-3-270m-Q4_K_M.gguf"),
        "same": make_tiny_mlx_model(base / "gemma-3-270m-4bit"),
        "other": make_tiny_mlx_model(base / "Qwen2.5-0.5B-Instruct-4bit"),
    }


def test_bench_pair_same_family_matches(exports: dict[str, Path]) -> None:
    check = check_pair(exports["gguf"], exports["same"])
    assert check.llama_key == check.mlx_key == "gemma-3-270m"
    assert check.keys_match and check.refusal() is None


def test_bench_pair_other_family_is_refused(exports: dict[str, Path]) -> None:
    check = check_pair(exports["gguf"], exports["other"])
    assert not check.keys_match
    why = check.refusal()
    assert why is not None and "qwen2.5-0.5b-instruct" in why and "--force" in why


def test_bench_pair_unreadable_export_is_a_problem(exports: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "gemma-3-270m-8bit"
    empty.mkdir()
    check = check_pair(exports["gguf"], empty)
    assert check.keys_match and check.problems
    assert check.refusal() == check.problems[0]
    missing = check_pair(tmp_path / "nope-Q4_K_M.gguf", exports["same"])
    assert any("not a file" in p for p in missing.problems)


def test_bench_cli_pair_mismatch_exits_2(exports: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--pair", str(exports["gguf"]), str(exports["other"])])
    assert code == 2
    assert "not paired exports of one model" in capsys.readouterr().err


def test_bench_cli_pair_force_and_match_give_two_targets(exports: dict[str, Path]) -> None:
    p = build_parser()
    _settings, forced = resolve(p.parse_args(["--pair", str(exports["gguf"]), str(exports["other"]),
                                              "--force", "--iterations", "1"]))
    assert [t.kind for t in forced] == ["llama", "mlx"]
    _s, matched = resolve(p.parse_args(["--pair", str(exports["gguf"]), str(exports["same"])]))
    assert [t.name for t in matched] == ["llama:gemma-3-270m-Q4_K_M", "mlx:gemma-3-270m-4bit"]


def test_bench_cli_force_does_not_cover_unreadable_exports(exports: dict[str, Path],
                                                          tmp_path: Path) -> None:
    args = build_parser().parse_args(["--pair", str(exports["gguf"]), str(tmp_path / "x"), "--force"])
    with pytest.raises(SpecError, match="not a folder"):
        resolve(args)
