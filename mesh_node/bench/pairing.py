"""Paired exports: a GGUF and an MLX folder of one model, matched by catalog comparison key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mesh_node.bench.spec import Pair, Target
from mesh_node.catalog.entry import gguf_entry, mlx_entry
from mesh_node.catalog.identity import model_id_from_path


@dataclass(frozen=True)
class PairCheck:
    llama_id: str
    mlx_id: str
    llama_key: str
    mlx_key: str
    problems: tuple[str, ...] = ()  # unreadable files; a key mismatch is not listed here

    @property
    def keys_match(self) -> bool:
        return self.llama_key == self.mlx_key

    def refusal(self) -> str | None:
        """Why the pair must not run (without --force), or None when it may."""
        if self.problems:
            return "; ".join(self.problems)
        if not self.keys_match:
            return (f"not paired exports of one model: {self.llama_id!r} has comparison key "
                    f"{self.llama_key!r} but {self.mlx_id!r} has {self.mlx_key!r} "
                    "(use --force to benchmark them anyway)")
        return None


def check_pair(gguf: Path, mlx_dir: Path) -> PairCheck:
    """Read both exports through the catalog and compare their comparison keys."""
    problems = []
    g = gguf_entry(model_id_from_path(gguf), [gguf], 0)
    m = mlx_entry(model_id_from_path(mlx_dir), mlx_dir, 0)
    if not gguf.is_file():
        problems.append(f"{gguf}: not a file")
    elif g.error:
        problems.append(f"{gguf}: {g.error}")
    if not mlx_dir.is_dir():
        problems.append(f"{mlx_dir}: not a folder")
    elif m.error:
        problems.append(f"{mlx_dir}: {m.error}")
    return PairCheck(g.id, m.id, g.key, m.key, tuple(problems))


def pair_targets(pair: Pair, check: PairCheck) -> tuple[Target, Target]:
    """The two targets of a pair, named by backend and shared key so the report lines up."""
    return (Target(kind="llama", model=pair.llama, name=f"llama:{check.llama_id}"),
            Target(kind="mlx", model=pair.mlx, name=f"mlx:{check.mlx_id}"))
