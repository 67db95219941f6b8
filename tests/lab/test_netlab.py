"""The lab harness itself: node handles with /api/status, pause/resume, link and cuts."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

import pytest
from netlab import Lab, LabError, ensure_prerequisites, sweep_stale

pytestmark = pytest.mark.lab

# A stand-in for `mesh-node run --config FILE`: serves /api/status on [api] port of FILE.
NETLAB_FAKE_NODE = r"""
import json, sys, tomllib, http.server
cfg = tomllib.load(open(sys.argv[1], "rb"))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"node": cfg["node"]["name"], "path": self.path}).encode()
        self.send_response(200 if self.path == "/api/status" else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
print("fake node up", flush=True)
http.server.HTTPServer(("0.0.0.0", cfg["api"]["port"]), H).serve_forever()
"""


def netlab_config(name: str, port: int = 9400) -> str:
    return f'[node]\nname = "{name}"\ndata_dir = "/tmp/x"\n\n[api]\nport = {port}\n'


def test_node_handle_status_pause_resume_and_stop(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(2)
    node = lab.host(1).start_node(netlab_config("alpha"),
                                  command=[sys.executable, "-c", NETLAB_FAKE_NODE])
    assert node.api_port == 9400 and node.address == lab.host(1).addr
    st = node.wait_for(lambda s: s.get("node") == "alpha", timeout=10.0)
    assert st["path"] == "/api/status"
    assert "fake node up" in node.log_text()
    # From another host, across the bridge.
    assert lab.http_get(2, f"{node.base_url}/api/status").json()["node"] == "alpha"
    lab.pause(1)
    with pytest.raises(LabError):
        node.status(timeout=1.0)
    lab.resume(1)
    assert node.status()["node"] == "alpha"
    with pytest.raises(AssertionError, match="condition not met"):
        node.wait_for(lambda s: False, timeout=1.0)
    assert node.stop(signal.SIGTERM, timeout=5.0) is not None
    with pytest.raises(AssertionError, match="exited"):
        node.wait_for(lambda s: True, timeout=2.0)


def test_link_down_and_one_way_block(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(3)
    node = lab.host(1).start_node(netlab_config("beta"),
                                  command=[sys.executable, "-c", NETLAB_FAKE_NODE])
    node.wait_for(lambda s: True, timeout=10.0)
    url = f"{node.base_url}/api/status"
    assert lab.http_get(2, url).status == 200
    lab.link_down(1)
    assert lab.http_get(2, url, timeout=1.0).status == 0
    lab.link_up(1)
    assert lab.http_get(2, url).status == 200
    lab.block(2, 1)  # h1 drops what h2 sends
    assert lab.http_get(2, url, timeout=1.0).status == 0
    assert lab.http_get(3, url).status == 200  # others unaffected
    lab.heal()
    assert lab.http_get(2, url).status == 200
    assert lab.http_get(1, "/nope", port=9400).status == 404  # bare path: host's own address


def test_not_root_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        ensure_prerequisites()


def test_sweeper_removes_labs_of_dead_runs_only(lab_factory: Callable[..., Lab]) -> None:
    live = lab_factory(1)
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=5)
    stale = f"mnlab-{dead.pid}-abc123-h1"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        assert stale in sweep_stale()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert stale not in listed and live.host(1).ns in listed
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True, timeout=10)
