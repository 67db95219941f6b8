"""`/api/status` answers 200 from the first moment the API port accepts connections (issue 11).

A probe (tests/lab/status_probe.py) runs inside the node's namespace before the node starts,
connects every 5 ms and, from the first accepted connection on, sends `GET /api/status` on a
fresh connection each time until the node's start-up is over (`node_ready` logged, plus a
margin). Every answer must be 200: the status document must not depend on a part of the node
that is started after the API (mDNS, the election). Once with mDNS on (the default of
`make run`, the longest start-up after the API), once with static peers only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from lab_configs import LAB_API_PORT, lab_node_env, lab_node_toml
from netlab import Lab

from tests.support.gossiplab_observe import event_time, log_events

pytestmark = pytest.mark.lab

PROBE = Path(__file__).resolve().parent / "status_probe.py"
STARTUP_WAIT_S = 90.0  # process start to API listening: imports on 2 loaded, shared cores
STARTUP_HOLD_S = 8.0  # probing after the first connect: API up -> node_ready is ~1 s here


@pytest.mark.parametrize("mdns", [True, False], ids=["mdns", "static"])
def test_api_status_is_200_from_the_first_accepted_connection(
        lab_factory: Callable[..., Lab], mdns: bool) -> None:
    lab = lab_factory(1)
    host = lab.host(1)
    probe = subprocess.Popen(
        ["ip", "netns", "exec", host.ns, sys.executable, str(PROBE), host.addr,
         str(LAB_API_PORT), str(STARTUP_WAIT_S), str(STARTUP_HOLD_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert probe.stdout is not None
        assert probe.stdout.readline().strip() == "polling", probe.stderr.read() if probe.stderr else ""
        toml = lab_node_toml("h1", lab.workdir / "data-h1", mdns=mdns)
        node = host.start_node(toml, env=lab_node_env(lab.workdir))
        out, err = probe.communicate(timeout=STARTUP_WAIT_S + STARTUP_HOLD_S + 30)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait(timeout=10)
    assert probe.returncode == 0, f"probe failed: {out} {err}\n{node.log_tail()}"
    doc = json.loads(out)
    answers = [(float(t), int(s)) for t, s in doc["answers"]]
    bad = [(t, s) for t, s in answers if s != 200]
    ready = [event_time(ev) for ev in log_events(node.log_text()) if ev.get("event") == "node_ready"]
    print(f"\n/api/status from the first connect ({'mDNS' if mdns else 'static peers'}): "
          f"first answer {doc['first']} after {doc['attempts']} connect attempts; "
          f"{len(answers)} answers in {STARTUP_HOLD_S:g} s, {len(bad)} not 200"
          + (f"; node_ready {ready[0] - doc['first_at']:.2f} s after the first connect"
             if ready else ""))
    assert doc["first"] == 200, f"first answer {doc['first']}; not 200: {bad[:10]}\n" \
                                + node.log_tail(30)
    assert not bad, f"answers not 200 (s after first connect, status): {bad[:10]}\n" \
                    + node.log_tail(30)
    # the probe covered the whole start-up: the node said it was ready while we still polled
    assert ready and ready[0] <= doc["first_at"] + STARTUP_HOLD_S, \
        f"node_ready not within the probe's window: {ready}\n{node.log_tail(30)}"
    assert node.proc.poll() is None, node.log_tail(30)
