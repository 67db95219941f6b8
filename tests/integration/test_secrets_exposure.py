"""The API key and the mesh secret never leave the node: not in its logs (debug level, stdout
and stderr), /api/status, /metrics, the dashboard, /v1/models, error answers, its mDNS TXT
record, or `mesh-node config check`.

The node runs in a network namespace of its own lab (real mDNS multicast needs an interface
with multicast; loopback has none), and a second namespace browses its advert.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))  # netlab lives there

from netlab import Lab, NodeProc  # noqa: E402

from mesh_node.discovery.txt import Advert, decode_txt  # noqa: E402
from mesh_node.security import derive_keys  # noqa: E402
from tests.support.hostile_node import MESH_NODE, hostile_toml  # noqa: E402

pytestmark = pytest.mark.lab  # namespaces: root, like the lab

SX_SECRET = "sx-MESH-secret-Zq81xV"
SX_KEY = "sx-API-key-Wm27pK"
SX_ROGUE = Path(__file__).resolve().parents[1] / "support" / "hostile_rogue.py"
SX_KEYS = derive_keys(SX_SECRET, "hostile-mesh")
# the strings themselves and what is derived from them that must stay private too
SX_FORBIDDEN = {"mesh secret": SX_SECRET, "api key": SX_KEY,
                "gossip key": SX_KEYS.gossip_key.hex(), "http key": SX_KEYS.http_key.hex(),
                "seal key": SX_KEYS.seal_key.hex()}


def sx_assert_clean(where: str, text: str) -> None:
    for what, value in SX_FORBIDDEN.items():
        assert value not in text, f"the {what} appears in {where}"
        assert value.lower() not in text.lower(), f"the {what} appears (case-folded) in {where}"


class SxNode:
    def __init__(self, lab: Lab, node: NodeProc) -> None:
        self.lab, self.node = lab, node

    def curl(self, path: str, *args: str) -> tuple[int, str]:
        """curl from inside host 1; (status, headers + body)."""
        cp = self.lab.host(1).exec(["curl", "-sS", "-m", "5", "-i", *args,
                                    self.node.base_url + path], timeout=15)
        status = int(cp.stdout.split(" ", 2)[1]) if cp.stdout.startswith("HTTP/") else 0
        return status, cp.stdout


@pytest.fixture(scope="module")
def sx_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SxNode]:
    workdir = tmp_path_factory.mktemp("secrets")
    lab = Lab(2, workdir=workdir)
    try:
        addr = lab.host(1).addr
        toml = hostile_toml(workdir / "data", 9337, 9338, api_key=SX_KEY, secret=SX_SECRET,
                            log_level="debug", address=addr, mdns=True,
                            peers=(f"{lab.host(2).addr}:9338",))  # debug lines: seed retries
        node = lab.host(1).start_node(toml, env={"HF_HUB_CACHE": str(workdir / "empty-hf")})
        node.wait_for(lambda st: "node" in st, 60.0)
        yield SxNode(lab, node)
    finally:
        lab.close()


def test_secrets_not_in_http_answers(sx_node: SxNode) -> None:
    auth = ["-H", f"authorization: Bearer {SX_KEY}"]
    answers: dict[str, tuple[int, str]] = {
        "/v1/models": sx_node.curl("/v1/models", *auth),
        "/v1/models bad key": sx_node.curl("/v1/models", "-H", f"authorization: Bearer {SX_KEY}x"),
        "chat": sx_node.curl("/v1/chat/completions", *auth, "-H", "content-type: application/json",
                             "-d", json.dumps({"model": "nope", "messages": []})),
        "chat bad json": sx_node.curl("/v1/chat/completions", *auth, "-d", "{"),
        "/api/status": sx_node.curl("/api/status"),
        "/metrics": sx_node.curl("/metrics"),
        "/": sx_node.curl("/"),
        "/readyz": sx_node.curl("/readyz"),
        "/healthz": sx_node.curl("/healthz"),
        "unknown path": sx_node.curl("/v1/" + SX_KEY[:4]),
    }
    expected = {"/v1/models": 200, "/v1/models bad key": 401, "chat": 404, "chat bad json": 400,
                "/api/status": 200, "/metrics": 200, "/": 200, "/healthz": 200}
    for name, (status, text) in answers.items():
        if name in expected:
            assert status == expected[name], (name, text[:300])
        sx_assert_clean(name, text)
    status_doc = json.loads(answers["/api/status"][1].split("\n\n", 1)[1])
    assert status_doc["node"]["id"]  # a real document, not an error page
    assert "<html" in answers["/"][1].lower()


def test_secrets_not_in_the_mdns_advert(sx_node: SxNode) -> None:
    cp = sx_node.lab.host(2).exec([sys.executable, str(SX_ROGUE), "browse", "--address",
                                   sx_node.lab.host(2).addr, "--seconds", "4"], timeout=60)
    instances: dict[str, dict[str, Any]] = json.loads(cp.stdout.strip().splitlines()[-1])[
        "instances"]
    assert len(instances) == 1, instances  # the node's own advert was seen and resolved
    (name, props), = instances.items()
    sx_assert_clean("the mDNS instance name", name)
    sx_assert_clean("the mDNS TXT record", json.dumps(props))
    advert = decode_txt({str(k): None if v is None else str(v) for k, v in props.items()})
    assert isinstance(advert, Advert), advert
    assert advert.mesh_digest == SX_KEYS.mesh_digest  # what it does publish: the public digest


def test_secrets_not_in_config_check(sx_node: SxNode) -> None:
    out = subprocess.run([str(MESH_NODE), "config", "check", str(sx_node.node.config_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "***" in out.stdout  # both secrets are there, masked
    sx_assert_clean("`mesh-node config check`", out.stdout + out.stderr)


def test_secrets_not_in_logs_or_command_line(sx_node: SxNode) -> None:
    node = sx_node.node
    assert node.proc.poll() is None, node.log_tail()
    cmdline = Path(f"/proc/{node.proc.pid}/cmdline").read_bytes().decode(errors="replace")
    sx_assert_clean("the command line", cmdline)
    node.stop()  # shutdown lines too (leave, goodbyes)
    text = node.log_text()  # stdout and stderr of the node, debug level
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) >= 8 and any('"level": "debug"' in ln for ln in lines), text
    sx_assert_clean("the node's log", text)
