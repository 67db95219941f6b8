"""Idle push-pull connections from many addresses: how long a join through the crowded peer takes.

Four lab hosts (network namespaces, root): h1 and h2 run real nodes with the mesh secret, h3 is
the rogue with `--sources` extra addresses on its eth0, h4 a new node (mDNS off) whose only
peer is h1. The rogue holds `--count` idle TCP connections to h1's gossip port from those
addresses in turn, re-opening what h1 closes (`--reopen-per-s`); then h4 starts. One inbound
push-pull per source address means N addresses can hold min(N, 8) of h1's 8 inbound slots, each
for the 1 s header timeout. The single-address case is a lab test
(tests/lab/test_hostile_replay_lab.py); this measures the many-address one.

    sudo .venv/bin/python benchmarks/lab_idle_sources.py [--sources 16] [--reopen-per-s 1000]

Prints one JSON line: join time, h1's refused and timed-out counts, h4's push-pull counters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
sys.path.insert(0, str(ROOT))

from lab_configs import lab_node_env, lab_node_toml, lab_peer  # noqa: E402
from netlab import Lab, wait_until  # noqa: E402
from test_hostile_lab import HLAB_ROGUE_SCRIPT, HlabMesh, hlab_delta  # noqa: E402

from tests.support.gossiplab_observe import (  # noqa: E402
    member_states,
    own_id,
    sees_alive_with_record,
)


def run(sources: int, count: int, reopen_per_s: int, bound_s: float) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="lab-idle-sources-"))
    with Lab(4, workdir=work) as lab:
        mesh = HlabMesh(lab)
        mesh.start()
        h3, h1 = lab.host(3), lab.host(1)
        addrs = [f"10.77.{lab.subnet}.{100 + i}" for i in range(sources)]
        for a in addrs:
            subprocess.run(["ip", "-n", h3.ns, "addr", "add", f"{a}/24", "dev", "eth0"],
                           check=True)
        ready, stop, out = (h3.workdir / f"idle.{x}" for x in ("ready", "stop", "out"))
        before = mesh.counters()
        proc = h3.run([sys.executable, str(HLAB_ROGUE_SCRIPT), "idle", "--targets",
                       lab_peer(h1.addr), "--count", str(count), "--seconds", str(bound_s + 60),
                       "--reopen-per-s", str(reopen_per_s), "--ready", str(ready),
                       "--stop", str(stop), "--sources", ",".join(addrs)], stdout_path=out)
        try:
            wait_until(ready.exists, 60.0, what="the rogue's connections")
            t0 = time.monotonic()
            n4 = lab.host(4).start_node(
                lab_node_toml("h4", work / "data-h4", mdns=False, peers=[lab_peer(h1.addr)]),
                env=lab_node_env(work))
            id4 = own_id(n4.wait_for(lambda st: "node" in st, 60.0))
            api_s = time.monotonic() - t0
            joined = None
            while time.monotonic() - t0 < bound_s:
                if all(sees_alive_with_record(mesh.nodes[k].status(), [id4]) for k in (1, 2)):
                    joined = round(time.monotonic() - t0, 1)
                    break
                time.sleep(0.25)
            during = mesh.counters()
            members_ok = all(member_states(mesh.status(k)).get(mesh.ids[3 - k]) == "alive"
                             for k in (1, 2))
            h4_counters = {k: v for k, v in n4.status()["counters"].items() if "pushpull" in k}
        finally:
            stop.touch()
            proc.wait(timeout=30)
        return {"sources": sources, "count": count, "reopen_per_s": reopen_per_s,
                "api_up_s": round(api_s, 1), "join_s": joined, "bound_s": bound_s,
                "rogue": json.loads(out.read_text().strip().splitlines()[-1]),
                "h1_refused": hlab_delta(before, during, "gossip_pushpull_refused")[1],
                "h1_timed_out": hlab_delta(before, during, "gossip_pushpull_failed")[1],
                "h4": h4_counters, "h1_h2_alive_to_each_other": members_ok,
                "h2_pushpull_failed": hlab_delta(before, during, "gossip_pushpull_failed")[2]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=16)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--reopen-per-s", type=int, default=1000)
    ap.add_argument("--bound", type=float, default=45.0, help="give up on the join after this")
    a = ap.parse_args(argv)
    print(json.dumps(run(a.sources, a.count, a.reopen_per_s, a.bound)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
