"""Issue 12 in the lab: the API key holds through real nodes, with and without a mesh secret.

Three hosts: h1 holds Gemma 3 270M (llama-server, 1 thread), h2 holds nothing and forwards,
h3 runs no node and plays the stranger. Both nodes set `api_key`. The stranger reads the node
ids from the public /api/status and forges `x-mesh-forwarded` + `x-mesh-auth` under the HMAC
key derived from the public mesh name (all it can compute); with no secret that key is the real
one. Every forged request gets 401; a client with the key gets its completion through h2, and
a raw packet capture on h2's eth0 of that forward (h2 <-> h1 TCP) shows the prompt and the key
in clear without a secret, and neither with one (sealed bodies).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_lab_configs import apilab_node_toml
from lab_configs import LAB_MESH, LAB_SECRET, lab_node_env, lab_peer
from netlab import Lab, NodeProc

from mesh_node.api.meshauth import forward_headers
from mesh_node.security import derive_keys

pytestmark = [pytest.mark.lab, pytest.mark.real]

API_KEY = "sk-lab-forward-auth-7Qm2"
READY_S = 240.0  # two nodes + one llama-server on two cores shared with other labs
PATH = "/v1/chat/completions"

# Runs inside the stranger's namespace: one POST, prints {"status", "body", "served_by"}.
_POST = """
import json, sys, httpx
a = json.load(sys.stdin)
r = httpx.post(a["url"], content=a["body"].encode(), headers=a["headers"], timeout=120)
print(json.dumps({"status": r.status_code, "body": r.text,
                  "served_by": r.headers.get("x-mesh-served-by")}))
"""


# Runs inside the forwarder's namespace: a raw packet socket on eth0 writes every TCP packet
# between the two node addresses (IP header on) to a file until terminated (bounded by argv[3]).
_CAPTURE = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("eth0", 0))
s.settimeout(0.2)
nodes, end = {sys.argv[1], sys.argv[2]}, time.monotonic() + float(sys.argv[3])
with open(sys.argv[4], "wb") as out:
    print("ready", flush=True)
    while time.monotonic() < end:
        try:
            pkt = s.recv(65535)
        except socket.timeout:
            continue
        ip = pkt[14:]
        if pkt[12:14] == b"\\x08\\x00" and ip[9] == 6 and \\
                {socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])} == nodes:
            out.write(ip)
            out.flush()
"""


def _capturing(ns: str, a: str, b: str, path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _CAPTURE, a, b,
                             "120", str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _post(ns: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    arg = json.dumps({"url": url, "body": body.decode(), "headers": headers})
    cp = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _POST], input=arg,
                        capture_output=True, text=True, timeout=180)
    assert cp.returncode == 0, cp.stderr[-2000:]
    out: dict[str, Any] = json.loads(cp.stdout)
    return out


def _start(lab: Lab, workdir: Path, secret: str | None) -> list[NodeProc]:
    env = lab_node_env(workdir)
    nodes = []
    for k in (1, 2):
        toml = apilab_node_toml(f"h{k}", workdir / f"data{k}", demo=k == 1,
                                peers=[lab_peer(lab.host(1).addr)] if k == 2 else (),
                                secret=secret)  # type: ignore[arg-type]
        toml = toml.replace("[api]\n", f'[api]\napi_key = "{API_KEY}"\n', 1)
        nodes.append(lab.host(k).start_node(toml, env=env))
    return nodes


def _ready(st: dict[str, Any]) -> bool:
    return (sum(m["status"] == "alive" for m in st["members"]) == 2
            and len(st["placement"]) == 1 and bool(st["placement"][0]["ready"]))


@pytest.mark.parametrize("secret", [LAB_SECRET, None], ids=["secret", "no-secret"])
def test_forged_forward_gets_401_through_real_nodes(
        lab_factory: Callable[..., Lab], tmp_path: Path, secret: str | None) -> None:
    lab = lab_factory(3)
    h1, h2 = _start(lab, tmp_path, secret)
    st = [n.wait_for(_ready, READY_S, interval=1.0) for n in (h1, h2)][0]
    id1, id2 = (n.status()["node"]["id"] for n in (h1, h2))
    model = st["placement"][0]["model"]
    assert st["placement"][0]["hosts"][0]["id"] == id1
    stranger = lab.host(3).ns
    body = json.dumps({"model": model, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()
    canary = "lab-capture-canary-prompt-Zebra-42"
    canary_body = json.dumps({"model": model, "max_tokens": 8,
                              "messages": [{"role": "user", "content": canary}]}).encode()
    public_key = derive_keys(None, LAB_MESH).http_key
    ctype = {"content-type": "application/json"}

    def forged(target: str) -> dict[str, str]:
        return {**ctype, **forward_headers(public_key, id2, target, "req_forged", "POST", PATH,
                                           body, time.time())}

    results = {
        "plain": _post(stranger, h1.base_url + PATH, body, ctype),
        "forged_to_host": _post(stranger, h1.base_url + PATH, body, forged(id1)),
        "forged_to_forwarder": _post(stranger, h2.base_url + PATH, body, forged(id2)),
        "keyless_client": _post(stranger, h2.base_url + PATH, body, ctype),
    }
    capture = tmp_path / "h1-h2.bin"
    sniffer = _capturing(lab.host(2).ns, lab.host(1).addr, lab.host(2).addr, capture)
    try:
        results["client_with_key"] = _post(stranger, h2.base_url + PATH, canary_body,
                                           {**ctype, "authorization": f"Bearer {API_KEY}"})
    finally:
        sniffer.terminate()
        sniffer.wait(timeout=10)
    print(json.dumps({"secret": secret is not None,
                      **{k: v["status"] for k, v in results.items()}}))
    for name in ("plain", "forged_to_host", "forged_to_forwarder", "keyless_client"):
        assert results[name]["status"] == 401, (name, results[name], h1.log_tail())
    code = json.loads(results["forged_to_host"]["body"])["error"]["code"]
    assert code == ("mesh_auth_failed" if secret else "invalid_api_key")
    ok = results["client_with_key"]
    assert ok["status"] == 200, (ok, h2.log_tail(), h1.log_tail())
    assert ok["served_by"] == id1  # forwarded h2 -> h1 over the node-to-node path
    assert json.loads(ok["body"])["choices"][0]["message"]["content"] is not None
    if secret is None:
        assert "api_key_without_mesh_secret" in h1.log_text()
    # What a sniffer on the bridge saw between the two nodes during that forward.
    wire = capture.read_bytes()
    answer = json.loads(ok["body"])["choices"][0]["message"]["content"] or ""
    assert b"x-mesh-auth" in wire, "the capture missed the node-to-node request"
    print(json.dumps({"secret": secret is not None, "captured_bytes": len(wire),
                      "prompt_seen": canary.encode() in wire,
                      "api_key_seen": API_KEY.encode() in wire,
                      "answer_seen": len(answer) >= 8 and answer.encode() in wire}))
    if secret is None:  # the clear hop: documented, and proof the capture reads payloads
        assert canary.encode() in wire and API_KEY.encode() in wire
    else:
        assert canary.encode() not in wire and API_KEY.encode() not in wire
        assert b"x-mesh-sealed: 1" in wire
        if len(answer) >= 8:
            assert answer.encode() not in wire
