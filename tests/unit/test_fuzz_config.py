"""Fuzz the config loader: random TOML, random values for known keys, random environment and
flags. Every input gives a Config or a ConfigError, never another exception."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_node.config import schema
from mesh_node.config.load import ConfigError, load_config
from mesh_node.config.model import Config
from tests.support.hostile_fuzz import fuzz_settings

FZC_TESTS = 4  # the config target's long-run budget is split across these tests
_KNOWN = sorted(schema.FIELDS)
_MODEL_KEYS = sorted(schema.MODEL_FIELDS)


@pytest.fixture(scope="module")
def fzc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


def fzc_load(path: Path | None, env: dict[str, str] | None = None,
             overrides: dict[str, object] | None = None) -> Config | None:
    """load_config, turning the one allowed exception into None."""
    try:
        cfg = load_config(path, env=env or {}, overrides=overrides)
    except ConfigError as e:
        assert str(e)  # the message names the file/key; rendering it must not fail either
        return None
    assert isinstance(cfg, Config)
    return cfg


# --- a small TOML writer, so structured documents reach the checks behind the parser ---------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON escapes are TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"


def fzc_document(flat: dict[str, Any], models: list[dict[str, Any]]) -> str:
    """TOML text for dotted keys (grouped into their tables) and [[models]] entries."""
    tables: dict[str, list[str]] = {}
    for dotted, value in flat.items():
        table, _, leaf = dotted.rpartition(".")
        tables.setdefault(table, []).append(f"{json.dumps(leaf)} = {_toml_value(value)}")
    out = tables.pop("", [])
    for table, lines in tables.items():
        out += [f"[{table}]", *lines]
    for m in models:
        out += ["[[models]]", *(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in m.items())]
    return "\n".join(out) + "\n"


_ints = st.integers(-(2**70), 2**70) | st.integers(0, 70000) | st.sampled_from([10**4000])
_strings = (st.text(max_size=40) | st.sampled_from(
    ["", " ", "~", "~nosuchuser/x", "a\x00b", "8GiB", "512MB", "0.5b", "9" * 400 + "kb",
     "127.0.0.1:9338", "[::1]:0", "h:70000", "debug", "JSON", "./rel/path", "/"]))
_scalars = (st.booleans() | _ints | st.floats() | _strings)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=4)
                       | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8)


@fuzz_settings(300, FZC_TESTS)
@given(st.text(max_size=400))
def test_fuzz_config_random_text(fzc_dir: Path, text: str) -> None:
    path = fzc_dir / "random.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    fzc_load(path)


@fuzz_settings(300, FZC_TESTS)
@given(st.dictionaries(st.sampled_from(_KNOWN) | st.text(max_size=12), _values, max_size=6),
       st.lists(st.dictionaries(st.sampled_from(_MODEL_KEYS) | st.text(max_size=6), _values,
                                max_size=4), max_size=2))
def test_fuzz_config_random_values_for_known_keys(fzc_dir: Path, flat: dict[str, Any],
                                                  models: list[dict[str, Any]]) -> None:
    path = fzc_dir / "structured.toml"
    path.write_text(fzc_document(flat, models), encoding="utf-8", errors="surrogatepass")
    cfg = fzc_load(path)
    if cfg is not None:  # accepted values must have landed typed
        assert 1 <= cfg.api.port <= 65535 and cfg.api.max_body_bytes > 0
        assert math.isfinite(cfg.election.headroom) and cfg.election.headroom >= 1.0


@fuzz_settings(300, FZC_TESTS)
@given(st.dictionaries(st.sampled_from(_KNOWN), _strings, max_size=5))
def test_fuzz_config_random_environment(values: dict[str, str]) -> None:
    env = {schema.env_name(k): v.replace("\x00", "") for k, v in values.items()}
    fzc_load(None, env=env)


@fuzz_settings(300, FZC_TESTS)
@given(st.dictionaries(st.sampled_from(_KNOWN), _scalars | st.none(), max_size=5))
def test_fuzz_config_random_flags(values: dict[str, object]) -> None:
    fzc_load(None, overrides=values)


@pytest.mark.parametrize("text", [
    '[api]\nport = ' + "9" * 5000 + "\n",  # past CPython's int-string limit
    "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n",  # deep inline tables: RecursionError
    '[api]\nmax_body_bytes = "' + "9" * 400 + 'kb"\n',  # float overflow to inf
    "[election]\nheadroom = " + "9" * 400 + "\n",  # int too large for a float
    "[election]\nheadroom = nan\n",
    '[node]\ndata_dir = "~nosuchuser-fuzz/x"\n',  # expanduser raises RuntimeError
    '[mesh]\nsecret_file = "a\\u0000b"\n',  # NUL in a path: ValueError on open
])
def test_fuzz_config_found_cases_are_config_errors(fzc_dir: Path, text: str) -> None:
    path = fzc_dir / "found.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path, env={})
