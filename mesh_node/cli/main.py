"""`mesh-node`: the command-line entry point (argparse), dispatching to `commands`."""

from __future__ import annotations

import argparse
import sys

from mesh_node import __version__
from mesh_node.cli import commands
from mesh_node.cli.pull import add_pull
from mesh_node.config.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:9337"


def build_parser() -> argparse.ArgumentParser:
    """The full parser: run, config check, status, models, plan, bench."""
    p = argparse.ArgumentParser(
        prog="mesh-node",
        description="Pool the computers on a LAN into one OpenAI-compatible LLM service.")
    p.add_argument("--version", action="version", version=f"mesh-node {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(sub)
    cfg = sub.add_parser("config", help="work with config files",
                         description="Work with config files.")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = cfg_sub.add_parser("check", help="validate a config file and print the effective config",
                               description="Validate FILE (with MESH_NODE_* environment applied) "
                               "and print the effective config, secrets masked. Exit 2 if bad.")
    check.add_argument("file", metavar="FILE", help="the TOML config file")
    check.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    check.set_defaults(func=commands.config_check)
    _add_status(sub)
    add_pull(sub, DEFAULT_URL)  # issue 14
    models = sub.add_parser("models", help="list the models this node's catalog finds",
                            description="Scan the models this node would offer and list them.")
    models.add_argument("--config", metavar="FILE", help="config file (default: built-in)")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=commands.models)
    _add_plan(sub)
    bench = sub.add_parser("bench", help="run the benchmarks (mesh_node.bench)", add_help=False,
                           description="Run the benchmark suite; arguments go to it.")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark suite")
    return p


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run a node (until SIGINT/SIGTERM)",
                         description="Run a mesh node: discover peers, elect hosts, serve the API.")
    run.add_argument("--config", metavar="FILE", help="config file (default: the built-in one)")
    run.add_argument("--api-port", type=int, metavar="N", help="API port (api.port)")
    run.add_argument("--gossip-port", type=int, metavar="N", help="gossip port (mesh.gossip_port)")
    run.add_argument("--name", metavar="NAME", help="node name (node.name)")
    run.add_argument("--data-dir", metavar="DIR", help="data folder (node.data_dir)")
    run.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error")
    run.set_defaults(func=commands.run)


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser("status", help="show a running node's view of the mesh",
                        description="GET URL/api/status and show the node, members and placement.")
    st.add_argument("--url", default=DEFAULT_URL, help=f"node API URL (default {DEFAULT_URL})")
    st.add_argument("--api-key", help="API key (default: $MESH_NODE_API_API_KEY)")
    st.add_argument("--json", action="store_true", help="print the raw status JSON")
    st.set_defaults(func=commands.status)


def _add_plan(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = sub.add_parser("plan", help="show which node hosts which model, and why",
                          description="Show the placement with reasons, from a running node "
                          "(--url) or computed from a saved snapshot (--snapshot).")
    src = plan.add_mutually_exclusive_group()
    src.add_argument("--url", default=None, help=f"node API URL (default {DEFAULT_URL})")
    src.add_argument("--snapshot", metavar="FILE", help="plan from a snapshot file, offline")
    plan.add_argument("--api-key", help="API key (default: $MESH_NODE_API_API_KEY)")
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.set_defaults(func=commands.plan)


def _cli_logging() -> None:
    """Logs of a one-shot command go to stderr, warnings and up: stdout is the result alone,
    so `mesh-node models --json > models.json` stays valid JSON (structlog's default logger
    would print to stdout)."""
    from mesh_node.logs import configure_logging

    configure_logging("warning", "auto", "mesh-node")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 bad usage or config)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # everything after `bench` is the suite's, even "--help"
        return commands.run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "plan" and args.url is None and args.snapshot is None:
        args.url = DEFAULT_URL
    if args.command != "run":  # `run` sets its own level and format from the config
        _cli_logging()
    try:
        code: int = args.func(args)
    except ConfigError as e:  # a bad config is the user's to fix: the message, no traceback
        print(str(e), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mesh-node plan --json | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    return code
