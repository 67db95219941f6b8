"""Bench spec validation: good documents parse, bad ones fail with the JSON path in the message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh_node.bench.cli import load_spec_file
from mesh_node.bench.spec import (
    Settings,
    SpecError,
    Target,
    parse_concurrency,
    parse_spec,
    unique_labels,
)

GOOD = {
    "settings": {"concurrency": [1, 2], "iterations": 2, "warmup": 0, "max_tokens": 16,
                 "prompt": "hi", "threads": 1, "ignore_eos": False, "request_timeout": 30},
    "targets": [
        {"kind": "llama", "model": "/m/a.gguf", "threads": 2},
        {"kind": "mlx", "model": "/m/b-4bit", "name": "b"},
        {"kind": "url", "url": "http://127.0.0.1:8080/v1", "model": "x"},
        {"kind": "mesh", "url": "http://127.0.0.1:9337", "model": "gemma", "api_key": "k"},
    ],
    "pairs": [{"llama": "/m/a.gguf", "mlx": "/m/a-4bit", "force": True}],
}


def test_bench_spec_parses_a_full_document() -> None:
    spec = parse_spec(GOOD)
    s = spec.settings
    assert (s.concurrency, s.iterations, s.warmup, s.max_tokens, s.threads) == ((1, 2), 2, 0, 16, 1)
    assert s.ignore_eos is False and s.request_timeout == 30 and s.ctx_size == Settings().ctx_size
    assert [t.kind for t in spec.targets] == ["llama", "mlx", "url", "mesh"]
    assert spec.targets[0].threads == 2 and spec.targets[3].api_key == "k"
    assert spec.pairs[0].force is True


def test_bench_spec_defaults_match_the_issue() -> None:
    spec = parse_spec({"targets": [{"kind": "url", "url": "http://h:1", "model": "m"}]})
    assert spec.settings.concurrency == (1, 4, 8)
    assert (spec.settings.iterations, spec.settings.warmup, spec.settings.max_tokens) == (3, 1, 64)


@pytest.mark.parametrize(("doc", "needle"), [
    ([], "spec: expected dict"),
    ({}, "needs at least one entry"),
    ({"targets": [], "bogus": 1}, "unknown key(s) ['bogus']"),
    ({"targets": [{"kind": "vllm", "model": "m"}]}, "targets[0].kind: must be one of"),
    ({"targets": [{"kind": "llama"}]}, "targets[0].model: missing (a .gguf file)"),
    ({"targets": [{"kind": "url", "model": "m"}]}, "targets[0].url: a url target needs"),
    ({"targets": [{"kind": "mesh", "model": "m", "url": "ftp://x"}]}, "targets[0].url"),
    ({"targets": [{"kind": "mlx", "model": "d", "url": "http://x"}]}, "only url and mesh"),
    ({"targets": [{"kind": "mlx", "model": "d", "threads": 2}]}, "only llama targets"),
    ({"targets": [{"kind": "llama", "model": 5}]}, "targets[0].model: expected str, got int"),
    ({"settings": {"concurrency": []}, "targets": [{"kind": "llama", "model": "a"}]},
     "settings.concurrency: needs one or more"),
    ({"settings": {"concurrency": [1, 0]}, "targets": [{"kind": "llama", "model": "a"}]},
     "settings.concurrency[1]: must be >= 1"),
    ({"settings": {"iterations": True}, "targets": [{"kind": "llama", "model": "a"}]},
     "settings.iterations: expected int, got a boolean"),
    ({"settings": {"warmup": -1}, "targets": [{"kind": "llama", "model": "a"}]},
     "settings.warmup: must be >= 0"),
    ({"settings": {"prompt": "  "}, "targets": [{"kind": "llama", "model": "a"}]},
     "settings.prompt: must not be empty"),
    ({"settings": {"request_timeout": 0}, "targets": [{"kind": "llama", "model": "a"}]},
     "settings.request_timeout: must be > 0"),
    ({"settings": {"max_tokns": 5}, "targets": [{"kind": "llama", "model": "a"}]},
     "settings: unknown key(s) ['max_tokns']"),
    ({"pairs": [{"llama": "a.gguf"}]}, "pairs[0].mlx: missing"),
    ({"pairs": [{"llama": "a.gguf", "mlx": "d", "force": "yes"}]}, "pairs[0].force: expected bool"),
])
def test_bench_spec_errors_name_the_bad_value(doc: object, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    assert needle in str(info.value)


def test_bench_concurrency_flag() -> None:
    assert parse_concurrency("1,4,8") == (1, 4, 8)
    assert parse_concurrency(" 2 ") == (2,)
    for bad in ("", "1,x", "0", "-1,2"):
        with pytest.raises(SpecError, match="concurrency"):
            parse_concurrency(bad)


def test_bench_labels_are_unique_and_short() -> None:
    ts = unique_labels((Target("llama", "/m/a.gguf"), Target("llama", "/x/a.gguf"),
                        Target("url", "gemma", url="http://h:1"), Target("mlx", "/m/d/", name="mine")))
    assert [t.name for t in ts] == ["llama:a.gguf", "llama:a.gguf#2", "url:gemma", "mine"]


def test_bench_spec_file_errors_name_the_file(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{oops")
    with pytest.raises(SpecError, match=r"bad\.json: not JSON"):
        load_spec_file(bad_json)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec_file(tmp_path / "missing.json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"targets": [{"kind": "llama"}]}))
    with pytest.raises(SpecError, match=r"wrong\.json: targets\[0\]\.model: missing"):
        load_spec_file(wrong)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    assert len(load_spec_file(good).targets) == 4
