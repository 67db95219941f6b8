"""Results out: a terminal table, a JSON document and a PNG chart (matplotlib, `bench` extra)."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh_node.bench.spec import Settings
from mesh_node.bench.stats import LevelStats, TargetResult

COLUMNS = ("target", "conc", "startup s", "TTFT s", "total s", "batch wall s", "decode tok/s",
           "overall tok/s", "batch tok/s", "ok/err")


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _row(r: TargetResult, lv: LevelStats, first: bool) -> tuple[str, ...]:
    return (r.name if first else "", str(lv.concurrency), _num(r.startup_s) if first else "",
            _num(lv.avg_ttft, 3), _num(lv.avg_total), _num(lv.avg_batch_wall),
            _num(lv.avg_decode_tps, 1), _num(lv.avg_overall_tps, 1), _num(lv.avg_batch_tps, 1),
            f"{lv.requests}/{lv.errors}")


def rows(results: Sequence[TargetResult]) -> list[tuple[str, ...]]:
    """Table rows: one per target and concurrency level (failed targets are listed apart)."""
    out: list[tuple[str, ...]] = []
    for r in results:
        if r.error is None:
            out.extend(_row(r, lv, i == 0) for i, lv in enumerate(r.levels))
    return out


def failures(results: Sequence[TargetResult]) -> list[str]:
    """One line per target that could not be benchmarked at all."""
    return [f"{r.name}: FAILED: {r.error}" for r in results if r.error is not None]


def render_table(results: Sequence[TargetResult], markdown: bool = False) -> str:
    """Aligned plain-text table (or a Markdown one for docs), then any failed targets."""
    body = rows(results)
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
    else:
        widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(COLUMNS)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

        lines = [line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in body]
    return "\n".join(lines + failures(results))


def machine() -> dict[str, Any]:
    """Where the figures were taken: CPU count and model, OS, Python."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "system": platform.platform(),
            "python": platform.python_version()}


def to_json(results: Sequence[TargetResult], settings: Settings,
            when: datetime | None = None) -> dict[str, Any]:
    """The JSON document: date, machine, settings and every target's levels."""
    s = asdict(settings)
    s["concurrency"] = list(settings.concurrency)
    return {"date": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
            "machine": machine(), "settings": s, "results": [r.to_json() for r in results]}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write the JSON document (pretty, trailing newline)."""
    path.write_text(json.dumps(doc, indent=2) + "\n")


CHART_PANELS = (("avg_ttft", "avg TTFT (s)"), ("avg_decode_tps", "avg decode tok/s"),
                ("avg_overall_tps", "avg overall tok/s"), ("avg_batch_tps", "avg batch overall tok/s"))


def write_chart(path: Path, results: Sequence[TargetResult], title: str = "mesh-node bench") -> None:
    """A 2x2 PNG: TTFT and the three throughputs against concurrency, one line per target."""
    try:
        import matplotlib
    except ImportError as exc:  # the `bench` extra is optional
        raise RuntimeError("the PNG chart needs matplotlib: pip install -e '.[bench]'") from exc
    matplotlib.use("Agg")  # no display on a server
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (attr, label) in zip(axes.flat, CHART_PANELS, strict=True):
        for r in results:
            pts = [(lv.concurrency, getattr(lv, attr)) for lv in r.levels
                   if getattr(lv, attr) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=r.name)
        ax.set_title(label)
        ax.set_xlabel("concurrency")
        ax.grid(True, alpha=0.3)
        ax.set_xticks(sorted({lv.concurrency for r in results for lv in r.levels}) or [1])
    axes.flat[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
