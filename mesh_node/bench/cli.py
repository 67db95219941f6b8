"""`mesh-node bench`: flags and/or a JSON spec -> targets -> runs -> table, JSON, PNG.

Exit codes: 0 every target ran, 1 a target failed (or a level had no successful request),
2 bad usage, bad spec, or a pair whose comparison keys differ (without --force).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import trio

from mesh_node.bench import report
from mesh_node.bench.harness import all_ok, run_targets
from mesh_node.bench.pairing import check_pair, pair_targets
from mesh_node.bench.runner import Progress
from mesh_node.bench.spec import (
    BenchSpec,
    Kind,
    Pair,
    Settings,
    SpecError,
    Target,
    parse_concurrency,
    parse_spec,
    unique_labels,
)
from mesh_node.logs import LEVELS, configure_logging


def build_parser() -> argparse.ArgumentParser:
    """The `mesh-node bench` flags (see docs/benchmarks.md)."""
    p = argparse.ArgumentParser(
        prog="mesh-node bench", description="Compare LLM backends: local llama.cpp or MLX, "
        "any OpenAI-compatible URL, or a mesh node. Runs targets one after another.")
    t = p.add_argument_group("targets (any number, run in this order: spec, pairs, llama, mlx, url, mesh)")
    t.add_argument("--llama", action="append", default=[], metavar="MODEL.gguf",
                   help="start llama-server on this GGUF")
    t.add_argument("--mlx", action="append", default=[], metavar="MODEL_DIR",
                   help="start mlx_lm.server on this MLX folder")
    t.add_argument("--url", metavar="URL", help="a running OpenAI-compatible server (needs --model)")
    t.add_argument("--mesh", metavar="URL", help="a running mesh node's API (needs --model)")
    t.add_argument("--model", metavar="NAME", help="model name for --url / --mesh")
    t.add_argument("--api-key", metavar="KEY", help="bearer token for --url / --mesh")
    t.add_argument("--pair", nargs=2, action="append", default=[], metavar=("LLAMA.gguf", "MLX_DIR"),
                   help="paired exports of one model: checked by comparison key, both run")
    t.add_argument("--force", action="store_true", help="run pairs whose keys do not match")
    t.add_argument("--spec", metavar="FILE.json", help="a JSON spec (targets, pairs, settings)")
    s = p.add_argument_group("settings (override the spec's)")
    s.add_argument("--concurrency", metavar="1,4,8", help="concurrency levels (default 1,4,8)")
    s.add_argument("--iterations", type=int, metavar="N", help="batches per level (default 3)")
    s.add_argument("--warmup", type=int, metavar="N", help="warm-up requests per target (default 1)")
    s.add_argument("--max-tokens", type=int, metavar="N", help="max tokens per request (default 64)")
    s.add_argument("--prompt", metavar="TEXT", help="the user message")
    s.add_argument("--threads", type=int, metavar="N", help="llama-server threads (default: all cores)")
    s.add_argument("--timeout", type=float, metavar="S", help="per-request timeout (default 300)")
    o = p.add_argument_group("output")
    o.add_argument("--json-out", metavar="FILE", help="write the results as JSON")
    o.add_argument("--chart-out", metavar="FILE.png", help="write a PNG chart")
    o.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    o.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    o.add_argument("--log-level", default="warning", choices=sorted(LEVELS),
                   help="node log level on stderr (default warning: backend output hidden)")
    return p


def _settings(args: argparse.Namespace, base: Settings) -> Settings:
    """The spec's settings with every flag given on the command line applied."""
    out = base
    if args.concurrency is not None:
        out = replace(out, concurrency=parse_concurrency(args.concurrency))
    for flag, key, low in (("iterations", "iterations", 1), ("warmup", "warmup", 0),
                           ("max_tokens", "max_tokens", 1), ("threads", "threads", 1)):
        value = getattr(args, flag)
        if value is not None:
            if value < low:
                raise SpecError(f"--{flag.replace('_', '-')}: must be >= {low}, got {value}")
            out = replace(out, **{key: value})
    if args.prompt is not None:
        if not args.prompt.strip():
            raise SpecError("--prompt: must not be empty")
        out = replace(out, prompt=args.prompt)
    if args.timeout is not None:
        if args.timeout <= 0:
            raise SpecError(f"--timeout: must be > 0, got {args.timeout}")
        out = replace(out, request_timeout=args.timeout)
    return out


def _flag_targets(args: argparse.Namespace) -> list[Target]:
    targets = [Target(kind="llama", model=m) for m in args.llama]
    targets += [Target(kind="mlx", model=m) for m in args.mlx]
    remote: tuple[tuple[Kind, str | None], ...] = (("url", args.url), ("mesh", args.mesh))
    for kind, url in remote:
        if url is None:
            continue
        if not args.model:
            raise SpecError(f"--{kind} needs --model NAME (the model to request)")
        if not url.startswith(("http://", "https://")):
            raise SpecError(f"--{kind}: want an http(s):// URL, got {url!r}")
        targets.append(Target(kind=kind, model=args.model, url=url, api_key=args.api_key))
    return targets


def load_spec_file(path: Path) -> BenchSpec:
    """Read and validate a JSON spec file; SpecError with the file name on any problem."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not JSON: {exc}") from exc
    try:
        return parse_spec(doc)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from exc


def resolve(args: argparse.Namespace) -> tuple[Settings, tuple[Target, ...]]:
    """Settings and the final target list, pairs checked (SpecError when refused)."""
    spec = load_spec_file(Path(args.spec)) if args.spec else BenchSpec()
    settings = _settings(args, spec.settings)
    pairs = [*spec.pairs, *(Pair(g, m, args.force) for g, m in args.pair)]
    targets: list[Target] = list(spec.targets)
    for pair in pairs:
        check = check_pair(Path(pair.llama).expanduser(), Path(pair.mlx).expanduser())
        why = check.refusal()
        if why is not None and not (pair.force and not check.problems):
            raise SpecError(f"pair {pair.llama} + {pair.mlx}: {why}")
        targets.extend(pair_targets(pair, check))
    targets += _flag_targets(args)
    if not targets:
        raise SpecError("nothing to benchmark: give --llama, --mlx, --url, --mesh, --pair or --spec")
    return settings, unique_labels(tuple(targets))


def _progress(quiet: bool) -> Progress:
    def emit(line: str) -> None:
        if not quiet:
            print(f"[bench] {line}", file=sys.stderr, flush=True)
    return emit


def main(argv: list[str]) -> int:
    """Run the harness with `argv` (the arguments after `bench`); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings, targets = resolve(args)
    except SpecError as exc:
        print(f"mesh-node bench: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, "auto", "bench")
    started = datetime.now(UTC)  # the report's date is when the run began
    with tempfile.TemporaryDirectory(prefix="mesh-node-bench-") as tmp:
        results = trio.run(run_targets, targets, settings, Path(tmp), _progress(args.quiet))
    print(report.render_table(results, markdown=args.markdown))
    if args.json_out:
        report.write_json(Path(args.json_out), report.to_json(results, settings, started))
    if args.chart_out:
        report.write_chart(Path(args.chart_out), results)
    return 0 if all_ok(results) else 1
