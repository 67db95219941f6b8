"""Load the configuration: flags > environment > file > embedded default.toml > dataclass defaults.

Each layer is flattened to dotted keys ("api.port") remembering where each value came from, so
an error names the file (or environment variable, or flag) that set the bad value. Validation
follows the one table in `schema.py`. Pure apart from reading the config and secret files.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mesh_node.config import schema
from mesh_node.config.errors import ConfigError
from mesh_node.config.kinds import Invalid, show
from mesh_node.config.model import (
    ApiConfig,
    BackendsConfig,
    Config,
    ElectionConfig,
    LlamaConfig,
    LogConfig,
    MeshConfig,
    MlxConfig,
    ModelConfig,
    NodeConfig,
)

__all__ = ["ConfigError", "load_config", "mask", "plain", "DEFAULT_LABEL"]

DEFAULT_LABEL = "<embedded default.toml>"
ENV_RANK, FLAG_RANK = 2, 3


@dataclass(frozen=True)
class _Setting:
    value: object
    origin: str  # what ConfigError.file shows
    base: Path | None  # folder that relative paths resolve against
    textual: bool  # from an env var or flag: parse text before checking
    rank: int  # 0 default, 1 file, 2 environment, 3 flag


def load_config(path: Path | None, env: Mapping[str, str] = os.environ,
                overrides: Mapping[str, object] | None = None) -> Config:
    """Build the effective Config; raise ConfigError naming the source and key of any problem."""
    settings: dict[str, _Setting] = {}
    flat, models = _flatten(_parse(_default_text(), DEFAULT_LABEL), DEFAULT_LABEL)
    _add(settings, flat, DEFAULT_LABEL, None, 0)
    model_src: tuple[object, str, Path | None] = (models or [], DEFAULT_LABEL, None)
    if path is not None:
        label, base = str(path), Path(path).expanduser().absolute().parent
        flat, models = _flatten(_parse(_read(Path(path), label), label), label)
        _add(settings, flat, label, base, 1)
        if models is not None:
            model_src = (models, label, base)
    for dotted in schema.FIELDS:
        text = env.get(schema.env_name(dotted), "")
        if text.strip():  # an empty variable means unset, as shells make clearing awkward
            settings[dotted] = _Setting(text, f"environment ({schema.env_name(dotted)})",
                                        Path.cwd(), True, ENV_RANK)
    for dotted, value in (overrides or {}).items():
        _add_override(settings, dotted, value)
    values = {dotted: _convert(dotted, s) for dotted, s in settings.items()}
    _resolve_secret(values, settings)
    _check_tls(values, settings)
    model_list = _models(*model_src)
    if settings["demo_model"].rank == 0 and (model_list or values.get("model_dirs")):
        values["demo_model"] = False  # the default demo is for a node with nothing else to serve
    source = Path(path).expanduser().resolve() if path is not None else None
    return _build(values, model_list, source)


def _default_text() -> str:
    return resources.files("mesh_node.config").joinpath("default.toml").read_text("utf-8")


def _read(path: Path, label: str) -> str:
    try:
        return path.expanduser().read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(label, None, "a readable config file",
                          message=f"cannot read the config file: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(label, None, "UTF-8 text", message="not UTF-8 text") from None


def _parse(text: str, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # its message carries "(at line L, column C)"
        raise ConfigError(label, None, "valid TOML", message=f"invalid TOML: {e}") from None
    except (ValueError, RecursionError) as e:  # an int over 4,300 digits; inline tables nested deep
        raise ConfigError(label, None, "valid TOML",
                          message=f"unreadable TOML: {type(e).__name__}") from None


def _unknown(label: str, dotted: str, leaf: str, prefix: str) -> ConfigError:
    if prefix and leaf in schema.siblings(""):  # TOML puts keys after [table] inside it
        return ConfigError(label, dotted, "a known key", message=f'unknown key; "{leaf}" is a '
                           'top-level key: put it above the first [table]')
    hint = schema.suggest(leaf, schema.siblings(prefix))
    if hint:
        hint = hint.replace('"', '"' + (prefix + "." if prefix else ""), 1)
    return ConfigError(label, dotted, "a known key", message=f"unknown key{hint}")


def _flatten(doc: dict[str, Any], label: str) -> tuple[dict[str, object], object | None]:
    """Dotted key -> raw value for one TOML document, plus its raw `models` array (or None)."""
    flat: dict[str, object] = {}
    models: list[object] = []

    def walk(table: dict[str, Any], prefix: str) -> None:
        for key, value in table.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if dotted in schema.FIELDS:
                flat[dotted] = value
            elif dotted in schema.SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(label, dotted, "a table", show(value))
                walk(value, dotted)
            elif dotted == "models":
                models.append(value)
            else:
                raise _unknown(label, dotted, key, prefix)

    walk(doc, "")
    return flat, (models[0] if models else None)


def _add(settings: dict[str, _Setting], flat: dict[str, object], label: str,
         base: Path | None, rank: int) -> None:
    for dotted, value in flat.items():
        settings[dotted] = _Setting(value, label, base, False, rank)


def _add_override(settings: dict[str, _Setting], dotted: str, value: object) -> None:
    if dotted not in schema.FIELDS:
        prefix, _, leaf = dotted.rpartition(".")
        raise _unknown("command line", dotted, leaf, prefix)
    if value is None:  # an argparse flag that was not given
        return
    text = str(value) if isinstance(value, Path) else value
    settings[dotted] = _Setting(text, "command line", Path.cwd(), isinstance(text, str), FLAG_RANK)


def _convert(dotted: str, s: _Setting) -> object:
    kind = schema.FIELDS[dotted]
    raw = kind.parse_text(s.value) if s.textual and isinstance(s.value, str) else s.value
    try:
        value = kind.check(raw)
    except Invalid as e:
        raise ConfigError(s.origin, dotted, e.expected, show(e.got)) from None
    if dotted in schema.RELATIVE_TO_FILE:
        return _rebase(value, s.base)
    if kind.is_path:  # binaries: a bare name stays bare (PATH lookup), "./bin/x" is rebased
        assert isinstance(value, Path)
        return _rebase(value, s.base) if len(value.parts) > 1 else value
    return value


def _rebase(value: object, base: Path | None) -> object:
    if isinstance(value, tuple):
        return tuple(_rebase(v, base) for v in value)
    assert isinstance(value, Path)
    return value if value.is_absolute() or base is None else base / value


def _resolve_secret(values: dict[str, object], settings: dict[str, _Setting]) -> None:
    """mesh.secret_file -> mesh.secret; both in one layer is an error, else the higher wins."""
    if "mesh.secret" in values and "mesh.secret_file" in values:
        s, f = settings["mesh.secret"], settings["mesh.secret_file"]
        if s.rank == f.rank:
            raise ConfigError(f.origin, "mesh.secret_file", "only one of mesh.secret and "
                              "mesh.secret_file", message="mesh.secret and mesh.secret_file "
                              "are both set; keep one")
        del values["mesh.secret_file" if s.rank > f.rank else "mesh.secret"]
    path = values.get("mesh.secret_file")
    if path is None:
        return
    assert isinstance(path, Path)
    origin = settings["mesh.secret_file"].origin
    try:
        secret = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or "not UTF-8 text"
        raise ConfigError(origin, "mesh.secret_file", "a readable file holding the mesh secret",
                          f"{path} ({why})") from None
    if not secret:
        raise ConfigError(origin, "mesh.secret_file", "a file holding a non-empty secret",
                          f"{path} (empty)")
    values["mesh.secret"] = secret


def _check_tls(values: dict[str, object], settings: dict[str, _Setting]) -> None:
    """api.tls_cert and api.tls_key: both or neither, each a readable PEM file."""
    cert, key = values.get("api.tls_cert"), values.get("api.tls_key")
    if (cert is None) != (key is None):
        missing = "api.tls_key" if key is None else "api.tls_cert"
        other = "api.tls_cert" if key is None else "api.tls_key"
        raise ConfigError(settings[other].origin, missing, f"set together with {other}",
                          message=f"{other} is set but {missing} is not: set both for HTTPS, "
                                  "or neither")
    for dotted, what in (("api.tls_cert", "CERTIFICATE"), ("api.tls_key", "PRIVATE KEY")):
        path = values.get(dotted)
        if path is None:
            continue
        assert isinstance(path, Path)
        try:
            text = path.read_text("utf-8", errors="replace")
        except OSError as e:
            raise ConfigError(settings[dotted].origin, dotted, "a readable PEM file",
                              f"{path} ({e.strerror or e})") from None
        if "-----BEGIN" not in text or what not in text:
            raise ConfigError(settings[dotted].origin, dotted, f"a PEM file with a {what}",
                              f"{path}")


def _models(raw: object, label: str, base: Path | None) -> tuple[ModelConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(label, "models", "an array of tables ([[models]])", show(raw))
    out: list[ModelConfig] = []
    for i, item in enumerate(raw):
        out.append(_model(item, f"models[{i}]", label, base))
    seen: set[str] = set()
    for i, m in enumerate(out):
        if m.alias and m.alias in seen:  # reported where it repeats, the later entry
            raise ConfigError(label, f"models[{i}].alias", "a unique alias", show(m.alias))
        seen.add(m.alias or "")
    return tuple(out)


def _model(item: object, where: str, label: str, base: Path | None) -> ModelConfig:
    if not isinstance(item, dict):
        raise ConfigError(label, where, "a table with a path", show(item))
    kw: dict[str, Any] = {}
    for key, value in item.items():
        kind = schema.MODEL_FIELDS.get(key)
        if kind is None:
            hint = schema.suggest(key, sorted(schema.MODEL_FIELDS))
            raise ConfigError(label, f"{where}.{key}", "a known key", message=f"unknown key{hint}")
        try:
            kw[key] = kind.check(value)
        except Invalid as e:
            raise ConfigError(label, f"{where}.{key}", e.expected, show(e.got)) from None
    if "path" not in kw:
        raise ConfigError(label, f"{where}.path", "a model path", message="missing required key")
    kw["path"] = _rebase(kw["path"], base)
    return ModelConfig(**kw)


def _section(values: dict[str, object], prefix: str) -> dict[str, Any]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in values.items() if k.startswith(prefix + ".") and "." not in k[n:]}


def _build(values: dict[str, object], models: tuple[ModelConfig, ...],
           source: Path | None) -> Config:
    node = _section(values, "node")
    node.setdefault("name", socket.gethostname().split(".")[0] or "node")
    node.setdefault("data_dir", Path("~/.mesh-node").expanduser())
    top: dict[str, Any] = {k: values[k] for k in ("model_dirs", "demo_model", "scan_hf_cache")
                           if k in values}
    return Config(
        node=NodeConfig(**node),
        mesh=MeshConfig(**_section(values, "mesh")),
        api=ApiConfig(**_section(values, "api")),
        backends=BackendsConfig(llama=LlamaConfig(**_section(values, "backends.llama")),
                                mlx=MlxConfig(**_section(values, "backends.mlx"))),
        models=models,
        election=ElectionConfig(**_section(values, "election")),
        log=LogConfig(**_section(values, "log")),
        source=source,
        **top,
    )


def mask(config: Config) -> dict[str, Any]:
    """The effective config as plain data (paths as strings), secrets shown as "***"."""
    out = plain(config)
    assert isinstance(out, dict)
    for dotted in schema.SECRETS:
        section, key = dotted.split(".")
        if out[section].get(key) is not None:
            out[section][key] = "***"
    return out


def plain(value: object) -> object:
    """Dataclasses to dicts, tuples to lists, paths to strings (JSON-ready)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
