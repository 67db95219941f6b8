"""Pure text rendering for the CLI: status, placement, catalog and config. Tolerant of missing keys."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Row = Sequence[object]


def table(headers: Row, rows: Iterable[Row]) -> str:
    """Left-aligned columns separated by two spaces; cells rendered with str()."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def fmt_bytes(n: object) -> str:
    """1536 -> "1.5 KiB"; non-numbers -> "-"."""
    if not isinstance(n, int | float) or isinstance(n, bool):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "-"  # unreachable


def fmt_duration(seconds: object) -> str:
    """3725 -> "1h 02m"; non-numbers -> "-"."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "-"
    s = int(seconds)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h:02d}h"
    return f"{h}h {m:02d}m" if h else f"{m}m {s % 60:02d}s"


def _get(d: object, key: str, default: Any = None) -> Any:
    return d.get(key, default) if isinstance(d, Mapping) else default


def _list(d: object, key: str) -> list[Any]:
    v = _get(d, key)
    return list(v) if isinstance(v, list | tuple) else []


def _short(node_id: object) -> str:
    return str(node_id)[:8] if node_id else "-"


def _capabilities(caps: list[Any]) -> str:
    out = []
    for c in caps:
        if isinstance(c, str):
            out.append(c)
            continue
        name = _get(c, "name", "?")
        if _get(c, "available", True):
            out.append(f"{name}:{'split' if _get(c, 'splittable') else 'solo'}")
        else:
            out.append(f"{name}:off({_get(c, 'reason') or 'unavailable'})")
    return " ".join(out) or "-"


def _serving(items: list[Any]) -> str:
    out = []
    for s in items:
        if isinstance(s, str):
            out.append(s)
        else:
            state = "ready" if _get(s, "ready") else (_get(s, "state") or "starting")
            out.append(f"{_get(s, 'model', '?')}({_get(s, 'role', 'host')},{state})")
    return " ".join(out) or "-"


def render_members(members: list[Any]) -> str:
    """The members table of a status dict."""
    rows = [(_get(m, "name", "?"), _short(_get(m, "id")), _get(m, "status", "?"),
             _get(m, "incarnation", "-"), _get(m, "address", "-"),
             _capabilities(_list(m, "capabilities")), fmt_bytes(_get(m, "memory_offered")),
             fmt_bytes(_get(m, "memory_free")), _serving(_list(m, "serving")))
            for m in members]
    return table(("NAME", "ID", "STATUS", "INC", "ADDRESS", "CAPABILITIES", "OFFERED", "FREE",
                  "SERVING"), rows)


def render_placement(placement: list[Any], members: list[Any] | None = None) -> str:
    """The placement table: model, mode, backend, hosts, workers, readiness and the reason."""
    names = {str(_get(m, "id")): str(_get(m, "name")) for m in members or [] if _get(m, "id")}

    def who(x: object) -> str:
        if isinstance(x, dict):  # /api/status gives {"id", "name"}
            return str(x.get("name") or who(x.get("id", "?")))
        return names.get(str(x), _short(x) if len(str(x)) == 32 else str(x))

    rows = []
    for p in placement:
        workers = " ".join(f"{who(_get(w, 'name') or _get(w, 'id') or _get(w, 'node'))}:{float(_get(w, 'weight', 0)):.2f}"
                           for w in _list(p, "workers")) or "-"
        rows.append((_get(p, "model", "?"), _get(p, "mode", "-"), _get(p, "backend", "-"),
                     ",".join(who(h) for h in _list(p, "hosts")) or "-", workers,
                     "yes" if _get(p, "ready") else "no", _get(p, "reason", "")))
    if not rows:
        return "(no models placed)"
    return table(("MODEL", "MODE", "BACKEND", "HOSTS", "WORKERS", "READY", "REASON"), rows)


def render_status(status: Mapping[str, Any]) -> str:
    """The whole `mesh-node status` screen from the /api/status dict."""
    node, mesh = _get(status, "node", {}), _get(status, "mesh", {})
    members = _list(status, "members")
    auth = "authenticated" if _get(mesh, "authenticated") else "UNAUTHENTICATED (trusted-LAN mode)"
    lines = [
        f"Node     {_get(node, 'name', '?')} (id {_short(_get(node, 'id'))}), "
        f"version {_get(node, 'version', '?')}, up {fmt_duration(_get(node, 'uptime_s'))}",
        f"         address {_get(node, 'address', '-')}, api port {_get(node, 'api_port', '-')}, "
        f"gossip port {_get(node, 'gossip_port', '-')}",
        f"Mesh     {_get(mesh, 'name', '?')}: {auth}",
    ]
    if _get(mesh, "warning"):
        lines.append(f"Warning  {_get(mesh, 'warning')}")
    lines += ["", f"Members ({len(members)})", render_members(members) if members else "(none)",
              "", "Models", render_placement(_list(status, "placement"), members)]
    from mesh_node.cli.pull import render_transfers  # pull imports this module

    if extra := render_transfers(_list(status, "transfers"), _list(status, "moves")):
        lines.append(extra)
    counters = _get(status, "counters")
    if isinstance(counters, Mapping) and counters:
        lines += ["", "Counters " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items()))]
    return "\n".join(lines)


def render_catalog(entries: list[Any]) -> str:
    """The local catalog table (`mesh-node models`)."""
    if not entries:
        return "(no models found)"
    rows = [(_get(e, "id", "?"), _get(e, "backend", "-"), _get(e, "format", "-"),
             _get(e, "quantization") or "-", fmt_bytes(_get(e, "size_bytes")),
             fmt_bytes(_get(e, "memory_bytes")),
             f"ERROR: {_get(e, 'error')}" if _get(e, "error") else _get(e, "path", ""))
            for e in entries]
    return table(("ID", "BACKEND", "FORMAT", "QUANT", "SIZE", "MEMORY", "PATH"), rows)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v) if isinstance(v, str) else str(v)


def render_config(d: Mapping[str, Any]) -> str:
    """A TOML-like rendering of a (masked) config dict; unset (None) keys are left out."""
    return "\n".join(_config_lines(d, "")).strip("\n")


def _config_lines(d: Mapping[str, Any], prefix: str) -> list[str]:
    out = [f"{k} = {_toml_value(v)}" for k, v in d.items()
           if not isinstance(v, Mapping) and k != "models" and v is not None]
    for k, v in d.items():
        if isinstance(v, Mapping):
            if any(not isinstance(x, Mapping) for x in v.values()):
                out += ["", f"[{prefix}{k}]"]
            out += _config_lines(v, f"{prefix}{k}.")
    for m in d.get("models") or []:
        out += ["", "[[models]]", *_config_lines(m, "")]
    return out
