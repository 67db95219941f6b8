"""Run every target in turn under one supervisor and collect its results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio

from mesh_node.backends.supervisor import Supervisor
from mesh_node.bench.runner import Progress, run_sweep
from mesh_node.bench.spec import Settings, Target
from mesh_node.bench.stats import TargetResult
from mesh_node.bench.targets import TargetError, open_target


async def bench_target(target: Target, settings: Settings, supervisor: Supervisor,
                       data_dir: Path, progress: Progress) -> TargetResult:
    """Start (or reach) one target and sweep it; a target that cannot start is a failed result."""
    progress(f"{target.name}: starting" if target.kind in ("llama", "mlx")
             else f"{target.name}: using {target.url}")
    try:
        async with open_target(target, settings, supervisor, data_dir) as ep:
            if ep.startup_s is not None:
                progress(f"{target.name}: ready in {ep.startup_s:.2f}s")
            levels = await run_sweep(ep, settings, progress)
            return TargetResult(target.name, target.kind, target.model, ep.startup_s,
                                tuple(levels))
    except (TargetError, trio.TooSlowError) as exc:
        why = str(exc) or "backend did not become healthy in time"
        progress(f"{target.name}: FAILED: {why}")
        return TargetResult(target.name, target.kind, target.model, None, error=why)


async def run_targets(targets: Sequence[Target], settings: Settings, data_dir: Path,
                      progress: Progress) -> list[TargetResult]:
    """Benchmark targets one after another (never together: they would share the CPU)."""
    results = []
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor().run)
        for t in targets:
            results.append(await bench_target(t, settings, supervisor, data_dir, progress))
        nursery.cancel_scope.cancel()
    return results


def all_ok(results: Sequence[TargetResult]) -> bool:
    """True when every target ran and every level had at least one successful request."""
    return all(r.error is None and r.levels and all(lv.requests > 0 for lv in r.levels)
               for r in results)
