"""Scan configured models, model dirs, the Hugging Face cache and the demo model into entries.

Never raises for a bad model: unreadable files become entries with `error` set.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import structlog

from mesh_node.catalog.demo import demo_model_path
from mesh_node.catalog.entry import CatalogEntry, gguf_entry, mlx_entry
from mesh_node.catalog.identity import SPLIT_RE, model_id_from_path
from mesh_node.catalog.mlx_meta import is_mlx_dir
from mesh_node.config.model import Config

log = structlog.get_logger(__name__)

MAX_DEPTH = 6  # model dirs are shallow; the bound keeps a mis-set dir (e.g. "/") cheap


def hf_cache_dir() -> Path:
    """HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (huggingface_hub's order)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _is_model_gguf(p: Path) -> bool:
    # mmproj files are vision projectors loaded beside a model, not models of their own
    return p.suffix.lower() == ".gguf" and not p.name.lower().startswith("mmproj")


def group_gguf(files: list[Path]) -> list[tuple[list[Path], str | None]]:
    """Group GGUF files into models: split shards `-0000k-of-0000n` form one (paths, error)."""
    singles: list[tuple[list[Path], str | None]] = []
    splits: dict[tuple[Path, str, int], dict[int, Path]] = defaultdict(dict)
    for f in sorted(files):
        m = SPLIT_RE.match(f.name[: -len(".gguf")])
        if m:
            splits[(f.parent, m.group("base"), int(m.group("total")))][int(m.group("idx"))] = f
        else:
            singles.append(([f], None))
    for (_d, _b, total), parts in sorted(splits.items()):
        ordered = [parts[i] for i in sorted(parts)]
        missing = [i for i in range(1, total + 1) if i not in parts]
        err = f"incomplete split GGUF: missing parts {missing} of {total}" if missing else None
        singles.append((ordered, err))
    return singles


def find_models(root: Path) -> tuple[list[tuple[list[Path], str | None]], list[Path]]:
    """(GGUF groups, MLX folders) under root, following symlinks, depth-bounded."""
    ggufs: list[Path] = []
    mlx: list[Path] = []
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        if len(here.parts) - root_depth >= MAX_DEPTH:
            dirnames.clear()
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if is_mlx_dir(here):
            mlx.append(here)
            dirnames.clear()  # an MLX folder's subfolders are part of it
        ggufs.extend(here / f for f in filenames if _is_model_gguf(here / f))
    return group_gguf(ggufs), mlx


def _snapshot(repo_dir: Path) -> Path | None:
    """The snapshot refs/main points at, else the newest one."""
    snaps = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        cand = snaps / ref.read_text(encoding="utf-8").strip()
        if cand.is_dir():
            return cand
    dirs = [d for d in snaps.iterdir() if d.is_dir()] if snaps.is_dir() else []
    return max(dirs, key=lambda d: d.stat().st_mtime, default=None)


def _scan_root(root: Path, ctx: int) -> list[CatalogEntry]:
    groups, mlx_dirs = find_models(root)
    several = len(groups) > 1
    out = [gguf_entry(model_id_from_path(paths[0], several_ggufs=several), paths, ctx, error=err)
           for paths, err in groups]
    out += [mlx_entry(model_id_from_path(d), d, ctx) for d in mlx_dirs]
    return out


def scan_hf_cache(cache: Path, ctx: int) -> list[CatalogEntry]:
    """Entries for every model repo in a Hugging Face hub cache (one snapshot per repo)."""
    if not cache.is_dir():
        return []
    out: list[CatalogEntry] = []
    for repo_dir in sorted(cache.glob("models--*")):
        snap = _snapshot(repo_dir)
        if snap is not None:
            out += _scan_root(snap, ctx)
    return out


def _configured(config: Config, ctx: int) -> list[CatalogEntry]:
    out: list[CatalogEntry] = []
    for m in config.models:
        aliases = (m.alias,) if m.alias else ()
        path = m.path.expanduser()
        if path.is_dir() and not is_mlx_dir(path):
            found = _scan_root(path, ctx)
            out += [e if len(found) > 1 else _with_aliases(e, aliases) for e in found]
        elif path.is_dir():
            out.append(mlx_entry(model_id_from_path(path), path, ctx, aliases))
        else:
            err = None if path.is_file() else f"not found: {path}"
            out.append(gguf_entry(model_id_from_path(path), [path], ctx, aliases, error=err))
    return out


def _with_aliases(e: CatalogEntry, aliases: tuple[str, ...]) -> CatalogEntry:
    """The entry with the configured aliases added."""
    return replace(e, aliases=e.aliases + aliases)


def scan_catalog(config: Config, hf_cache: Path | None = None) -> list[CatalogEntry]:
    """Every model this node has, configured ones first; duplicates (same file or id) dropped."""
    ctx = config.backends.llama.ctx_size
    entries = _configured(config, ctx)
    for d in config.model_dirs:
        entries += _scan_root(d.expanduser(), ctx) if d.expanduser().is_dir() else []
    if config.scan_hf_cache:
        entries += scan_hf_cache(hf_cache if hf_cache is not None else hf_cache_dir(), ctx)
    entries += store_entries(config.node.store_dir, ctx)
    if config.demo_model:
        demo = demo_model_path(config.node.data_dir)
        entries += [gguf_entry(model_id_from_path(demo), [demo], ctx)] if demo else []
    return _dedupe(entries)


def store_entries(store_dir: Path, ctx: int) -> list[CatalogEntry]:
    """Copies this node fetched earlier (issue 14), named as they were fetched, marked copied."""
    from mesh_node.transfer.store import Store  # the store's index is the transfer room's

    store = Store(store_dir, None)
    return [replace(gguf_entry(c.model, [c.path], ctx), copied=True)
            for c in sorted(store.copies.values(), key=lambda c: c.model) if c.model]


def _dedupe(entries: list[CatalogEntry]) -> list[CatalogEntry]:
    seen_paths: set[str] = set()
    seen_ids: set[str] = set()
    out: list[CatalogEntry] = []
    for e in entries:
        real = os.path.realpath(e.path)
        if real in seen_paths or e.id in seen_ids:
            log.debug("catalog_duplicate", model=e.id, path=str(e.path))
            continue
        seen_paths.add(real)
        seen_ids.add(e.id)
        out.append(e)
    for e in out:
        if e.error:
            log.warning("catalog_model_error", model=e.id, path=str(e.path), error=e.error)
    return out
