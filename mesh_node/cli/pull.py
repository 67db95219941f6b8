"""`mesh-node pull MODEL`: fetch a model from a peer into a running node ahead of time, with a
progress bar on stderr and the result on stdout; and the transfers section of `status`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from mesh_node.cli.render import fmt_bytes, table
from mesh_node.timing import DEFAULT_TIMINGS

BAR_WIDTH = 30
FINAL = ("verified", "present")


def progress_line(t: Mapping[str, Any]) -> str:
    """'[#####.....]  40%  101.2 MiB / 241.4 MiB  95.1 MiB/s  ETA 1.5 s  from studio'."""
    total, done = int(t.get("total") or 0), int(t.get("bytes") or 0)
    frac = done / total if total else 0.0
    filled = int(frac * BAR_WIDTH)
    eta = t.get("eta_s")
    return (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {100 * frac:3.0f}%  "
            f"{fmt_bytes(done)} / {fmt_bytes(total)}  {fmt_bytes(t.get('rate_bps', 0))}/s  "
            f"ETA {'-' if eta is None else f'{eta:.1f} s'}  {t.get('state', '')}"
            f"{'  from ' + str(t['source']) if t.get('source') else ''}")


def render_transfers(transfers: list[Any], moves: list[Any]) -> str:
    """The transfers section of `mesh-node status` ('' when there is nothing to show)."""
    lines = []
    if moves:
        lines += ["", "Moves", table(("MODEL", "TARGET", "REASON"),
                                     [(str(m.get("model")), str(m.get("target", ""))[:8],
                                       str(m.get("reason"))) for m in moves])]
    if transfers:
        lines += ["", "Transfers"] + [f"{t.get('model')}  {progress_line(t)}" for t in transfers]
    return "\n".join(lines)


def _transfer(status: Mapping[str, Any], digest: str) -> Mapping[str, Any] | None:
    return next((t for t in status.get("transfers", []) if t.get("digest") == digest), None)


def pull(args: argparse.Namespace) -> int:
    """POST /mesh/v1/pull, then follow the transfer in /api/status until it ends."""
    import httpx

    from mesh_node.cli.commands import _api_key, _err, fetch_status

    key = _api_key(args)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = args.url.rstrip("/")
    try:
        r = httpx.post(url + "/mesh/v1/pull", json={"model": args.model}, headers=headers,
                       timeout=DEFAULT_TIMINGS.cli_http_timeout, trust_env=False)
    except httpx.HTTPError as e:
        _err(f"mesh-node: cannot reach {url}: {e}")
        return 1
    if r.status_code != 200:
        _err(f"mesh-node: pull {args.model}: HTTP {r.status_code} {r.text[:300]}")
        return 1
    started: dict[str, Any] = r.json()
    t0 = time.monotonic()
    last: Mapping[str, Any] = started
    while str(last.get("state", "")) not in FINAL and not str(last.get("state")).startswith(
            "failed") and time.monotonic() - t0 < args.timeout:
        time.sleep(DEFAULT_TIMINGS.transfer_progress_publish)
        st = fetch_status(url, key)
        found = _transfer(st, str(started.get("digest"))) if st else None
        if found is not None:
            last = found
            if sys.stderr.isatty():
                print("\r" + progress_line(found), end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    ok = str(last.get("state")) in FINAL
    doc = {"model": args.model, "digest": started.get("digest"), "state": last.get("state"),
           "bytes": last.get("bytes"), "seconds": round(time.monotonic() - t0, 2),
           "source": last.get("source")}
    print(json.dumps(doc) if args.json else
          f"{args.model}: {doc['state']}" + (f", {fmt_bytes(doc['bytes'])} from {doc['source']}"
                                             if doc.get("source") else ""))
    return 0 if ok else 1


def add_pull(sub: argparse._SubParsersAction[argparse.ArgumentParser], default_url: str) -> None:
    p = sub.add_parser("pull", help="copy a model from a peer into a running node now",
                       description="Fetch MODEL (id or alias) from a peer that holds it into "
                                   "the node's model store, verified; progress on stderr.")
    p.add_argument("model")
    p.add_argument("--url", default=default_url, help=f"node API URL (default {default_url})")
    p.add_argument("--api-key", help="API key (default: $MESH_NODE_API_API_KEY)")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after (s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=pull)
