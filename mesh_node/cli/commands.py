"""The CLI commands. Each takes the parsed arguments and returns an exit code.

Modules other rooms own (node, catalog, planner, bench) are imported lazily, so the CLI works
(and says clearly what is missing) in a tree where one of them does not exist yet.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from mesh_node.cli.render import render_catalog, render_config, render_placement, render_status
from mesh_node.config.advice import api_unreachable
from mesh_node.config.load import load_config, mask, plain
from mesh_node.security import API_KEY_WITHOUT_SECRET
from mesh_node.timing import DEFAULT_TIMINGS

HTTP_TIMEOUT = DEFAULT_TIMINGS.cli_http_timeout


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _optional(module: str) -> ModuleType | None:
    """Import `module`, or None when it (not something it imports) does not exist."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            return None
        raise


def _config_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def run(args: argparse.Namespace) -> int:
    """`mesh-node run`: load the config, set up logs, run the node until it stops."""
    overrides = {"api.port": args.api_port, "mesh.gossip_port": args.gossip_port,
                 "node.name": args.name, "node.data_dir": args.data_dir,
                 "log.level": args.log_level}
    config = load_config(_config_path(args.config), overrides=overrides)
    from mesh_node.logs import configure_logging

    configure_logging(config.log.level, config.log.format, config.node.name)
    run_node = _run_node()
    if run_node is None:
        _err("mesh-node run: this build has no node runtime (mesh_node.node.run_node is missing)")
        return 1
    import trio

    try:
        result = trio.run(run_node, config)
    except KeyboardInterrupt:  # run_node handles SIGINT itself; this is a second Ctrl-C
        return 130
    return result if isinstance(result, int) else 0


def _run_node() -> Any:
    """mesh_node.node.run_node, or mesh_node.node.run.run_node where the package keeps it."""
    for module in ("mesh_node.node", "mesh_node.node.run"):
        found = _optional(module)
        if found is not None and hasattr(found, "run_node"):
            return found.run_node
    return None


def config_check(args: argparse.Namespace) -> int:
    """`mesh-node config check FILE`: validate and print the effective config, secrets masked."""
    config = load_config(Path(args.file))
    if config.api.api_key is not None and not config.mesh.secret:
        _err(f"warning: {API_KEY_WITHOUT_SECRET}")
    from mesh_node.node.run import advertise_address  # the node's own choice, not a copy

    if (unreachable := api_unreachable(config, advertise_address(config))) is not None:
        _err(f"warning: {unreachable}")
    effective = mask(config)
    source = effective.pop("source", None)
    if args.json:
        print(json.dumps(effective, indent=2))
    else:
        print(f"# effective config of {source} (environment applied, secrets masked)")
        print(render_config(effective))
    return 0


def _api_key(args: argparse.Namespace) -> str | None:
    return getattr(args, "api_key", None) or os.environ.get("MESH_NODE_API_API_KEY") or None


def fetch_status(url: str, api_key: str | None) -> dict[str, Any] | None:
    """GET url/api/status; on any failure print one line to stderr and return None."""
    import httpx

    target = url.rstrip("/") + "/api/status"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        # trust_env off: a desktop's HTTP(S)_PROXY must not capture calls to LAN addresses.
        r = httpx.get(target, headers=headers, timeout=HTTP_TIMEOUT, trust_env=False)
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        _err(f"mesh-node: cannot reach {target}: {reason}")
        return None
    if r.status_code in (401, 403):
        _err(f"mesh-node: {target}: HTTP {r.status_code}, not authorized "
             "(pass --api-key or set MESH_NODE_API_API_KEY)")
        return None
    if r.status_code != 200:
        _err(f"mesh-node: {target}: HTTP {r.status_code}")
        return None
    try:
        data = r.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        _err(f"mesh-node: {target}: the answer is not a status JSON object")
        return None
    return data


def status(args: argparse.Namespace) -> int:
    """`mesh-node status`: a running node's view of the mesh."""
    data = fetch_status(args.url, _api_key(args))
    if data is None:
        return 1
    print(json.dumps(data, indent=2) if args.json else render_status(data))
    return 0


def models(args: argparse.Namespace) -> int:
    """`mesh-node models`: the models this node's catalog finds."""
    config = load_config(_config_path(args.config))
    scan = _optional("mesh_node.catalog.scan")
    if scan is None:
        _err("mesh-node models: this build has no model catalog (mesh_node.catalog.scan is missing)")
        return 1
    entries = [plain(e) for e in scan.scan_catalog(config)]
    print(json.dumps(entries, indent=2, default=str) if args.json else render_catalog(entries))
    return 0


def plan(args: argparse.Namespace) -> int:
    """`mesh-node plan`: the placement with its reasons, live or from a snapshot file."""
    if args.snapshot:
        planner = _optional("mesh_node.election.planner")
        if planner is None:
            _err("mesh-node plan: this build has no planner (mesh_node.election.planner is missing)")
            return 1
        try:
            data = planner.plan_from_file(Path(args.snapshot))
        except (OSError, ValueError) as e:
            _err(f"mesh-node plan: {args.snapshot}: {e}")
            return 1
    else:
        data = fetch_status(args.url, _api_key(args))
        if data is None:
            return 1
    data = plain(data)
    placement = _placement_of(data)
    members = data.get("members") if isinstance(data, dict) else None
    if args.json:
        print(json.dumps({"placement": placement, "members": members or []}, indent=2))
    else:
        print(render_placement(placement, members if isinstance(members, list) else None))
    return 0


def _placement_of(data: object) -> list[Any]:
    """The placement list, whether given as {"placement": [...]}, {"models": [...]} or a list."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("placement", "models"):
            inner = data.get(key)
            if isinstance(inner, dict) and "models" in inner:
                inner = inner["models"]
            if isinstance(inner, list):
                return inner
    return []


def run_bench(argv: list[str]) -> int:
    """`mesh-node bench ...`: hand the arguments to mesh_node.bench.cli:main."""
    bench = _optional("mesh_node.bench.cli")
    if bench is None:
        _err("mesh-node bench: this build has no benchmark suite (mesh_node.bench.cli is missing)")
        return 1
    result = bench.main(argv)
    return result if isinstance(result, int) else 0
