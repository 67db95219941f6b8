"""The benchmark spec: settings plus targets, from a JSON document or CLI flags. Pure.

Schema (documented in docs/benchmarks.md): an object with optional `settings` (see
`Settings`), `targets` (a list of target objects, `kind` one of llama, mlx, url, mesh) and
`pairs` (a list of `{"llama": GGUF, "mlx": DIR, "force": bool}`). Every error names the
JSON path of the bad value, so a user can fix the file without reading this code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

Kind = Literal["llama", "mlx", "url", "mesh"]
KINDS: tuple[Kind, ...] = ("llama", "mlx", "url", "mesh")
DEFAULT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


class SpecError(ValueError):
    """The spec (file or flags) is invalid; the message says where and why."""


@dataclass(frozen=True)
class Settings:
    concurrency: tuple[int, ...] = (1, 4, 8)
    iterations: int = 3  # measured batches per concurrency level
    warmup: int = 1  # unmeasured single requests per target before the sweep
    max_tokens: int = 64
    prompt: str = DEFAULT_PROMPT
    temperature: float = 0.0
    ignore_eos: bool = True  # llama-server decodes max_tokens; servers without it ignore the key
    threads: int | None = None  # local llama only; None: all cores
    ctx_size: int = 4096  # local llama only
    request_timeout: float = 300.0  # one request, seconds (a long CPU generation)
    startup_timeout: float = 180.0  # a local backend until /health is 200


@dataclass(frozen=True)
class Target:
    kind: Kind
    model: str  # GGUF path, MLX folder, or the model name for url/mesh
    url: str | None = None  # url/mesh: base URL (with or without /v1)
    name: str = ""  # label in the report; derived when empty
    threads: int | None = None  # overrides Settings.threads for this llama target
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Pair:
    llama: str
    mlx: str
    force: bool = False


@dataclass(frozen=True)
class BenchSpec:
    settings: Settings = Settings()
    targets: tuple[Target, ...] = ()
    pairs: tuple[Pair, ...] = ()


def parse_concurrency(text: str) -> tuple[int, ...]:
    """'1,4,8' -> (1, 4, 8); every level a positive integer."""
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SpecError(f"concurrency: {text!r} is not a comma-separated list of integers") from None
    return _check_levels(levels, "concurrency")


def _check_levels(levels: tuple[int, ...], where: str) -> tuple[int, ...]:
    if not levels or any(c < 1 for c in levels):
        raise SpecError(f"{where}: needs one or more integers >= 1, got {list(levels)}")
    return levels


def _typed(value: object, want: type | tuple[type, ...], where: str) -> Any:
    """value if it is of type `want` (bools are not numbers here), else SpecError."""
    if isinstance(value, bool) and want is not bool and bool not in _as_tuple(want):
        raise SpecError(f"{where}: expected {_tname(want)}, got a boolean")
    if not isinstance(value, want):
        raise SpecError(f"{where}: expected {_tname(want)}, got {type(value).__name__}")
    return value


def _as_tuple(want: type | tuple[type, ...]) -> tuple[type, ...]:
    return want if isinstance(want, tuple) else (want,)


def _tname(want: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in _as_tuple(want))


def _object(value: object, where: str, allowed: set[str]) -> dict[str, Any]:
    obj: dict[str, Any] = _typed(value, dict, where)
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return obj


def _positive(value: object, where: str, *, zero_ok: bool = False) -> int:
    n: int = _typed(value, int, where)
    if n < (0 if zero_ok else 1):
        raise SpecError(f"{where}: must be >= {0 if zero_ok else 1}, got {n}")
    return n


_SETTING_TYPES: dict[str, type | tuple[type, ...]] = {
    "prompt": str, "temperature": (int, float), "ignore_eos": bool,
    "request_timeout": (int, float), "startup_timeout": (int, float),
}


def parse_settings(value: object, where: str = "settings") -> Settings:
    """A `settings` object -> Settings; omitted keys keep their defaults."""
    obj = _object(value, where, {f.name for f in fields(Settings)})
    out: dict[str, Any] = {}
    for key, raw in obj.items():
        at = f"{where}.{key}"
        if key == "concurrency":
            items = _typed(raw, list, at)
            out[key] = _check_levels(tuple(_positive(c, f"{at}[{i}]") for i, c in enumerate(items)), at)
        elif key in ("iterations", "max_tokens", "ctx_size"):
            out[key] = _positive(raw, at)
        elif key == "warmup":
            out[key] = _positive(raw, at, zero_ok=True)
        elif key == "threads":
            out[key] = None if raw is None else _positive(raw, at)
        else:
            out[key] = _typed(raw, _SETTING_TYPES[key], at)
            if key.endswith("timeout") and out[key] <= 0:
                raise SpecError(f"{at}: must be > 0, got {out[key]}")
    if isinstance(out.get("prompt"), str) and not out["prompt"].strip():
        raise SpecError(f"{where}.prompt: must not be empty")
    return replace(Settings(), **out)


def parse_target(value: object, where: str) -> Target:
    """One target object -> Target (url and mesh need `url`; every kind needs `model`)."""
    obj = _object(value, where, {f.name for f in fields(Target)})
    kind = obj.get("kind")
    if kind not in KINDS:
        raise SpecError(f"{where}.kind: must be one of {list(KINDS)}, got {kind!r}")
    if "model" not in obj:
        raise SpecError(f"{where}.model: missing ({_model_help(kind)})")
    model: str = _typed(obj["model"], str, f"{where}.model")
    url = obj.get("url")
    if kind in ("url", "mesh"):
        url = _typed(url, str, f"{where}.url") if url is not None else None
        if not url or not url.startswith(("http://", "https://")):
            raise SpecError(f"{where}.url: a {kind} target needs an http(s):// URL, got {url!r}")
    elif url is not None:
        raise SpecError(f"{where}.url: only url and mesh targets take a URL")
    threads = obj.get("threads")
    if threads is not None:
        if kind != "llama":
            raise SpecError(f"{where}.threads: only llama targets take threads")
        threads = _positive(threads, f"{where}.threads")
    name: str = _typed(obj.get("name", ""), str, f"{where}.name")
    key = obj.get("api_key")
    api_key = None if key is None else _typed(key, str, f"{where}.api_key")
    return Target(kind=kind, model=model, url=url, name=name, threads=threads, api_key=api_key)


def _model_help(kind: str) -> str:
    return {"llama": "a .gguf file", "mlx": "an MLX model folder"}.get(kind, "the model name")


def parse_pair(value: object, where: str) -> Pair:
    """One pair object -> Pair."""
    obj = _object(value, where, {"llama", "mlx", "force"})
    for key in ("llama", "mlx"):
        if key not in obj:
            raise SpecError(f"{where}.{key}: missing")
    return Pair(llama=_typed(obj["llama"], str, f"{where}.llama"),
                mlx=_typed(obj["mlx"], str, f"{where}.mlx"),
                force=_typed(obj.get("force", False), bool, f"{where}.force"))


def parse_spec(doc: object) -> BenchSpec:
    """A decoded JSON document -> BenchSpec; SpecError names the first bad value."""
    obj = _object(doc, "spec", {"settings", "targets", "pairs"})
    settings = parse_settings(obj["settings"]) if "settings" in obj else Settings()
    targets = tuple(parse_target(t, f"targets[{i}]")
                    for i, t in enumerate(_typed(obj.get("targets", []), list, "targets")))
    pairs = tuple(parse_pair(p, f"pairs[{i}]")
                  for i, p in enumerate(_typed(obj.get("pairs", []), list, "pairs")))
    if not targets and not pairs:
        raise SpecError("spec: needs at least one entry in `targets` or `pairs`")
    return BenchSpec(settings=settings, targets=targets, pairs=pairs)


def label(target: Target) -> str:
    """The report name of a target: its `name`, else kind and model (file name only)."""
    if target.name:
        return target.name
    model = target.model.rstrip("/").rsplit("/", 1)[-1] if target.kind in ("llama", "mlx") \
        else target.model
    return f"{target.kind}:{model}"


def unique_labels(targets: tuple[Target, ...]) -> tuple[Target, ...]:
    """Targets with distinct report names (a repeated name gets #2, #3...)."""
    seen: dict[str, int] = {}
    out = []
    for t in targets:
        base = label(t)
        seen[base] = seen.get(base, 0) + 1
        out.append(replace(t, name=base if seen[base] == 1 else f"{base}#{seen[base]}"))
    return tuple(out)
