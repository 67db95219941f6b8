"""Issues 6 and 15 in the lab: the official openai, anthropic and ollama clients against a
three-node mesh, replica failover under kill -9 during a burst, and the dashboard in headless
chromium.

Real `mesh-node run` processes in network namespaces. The shared mesh: host 1 holds Gemma 3
270M (llama-server, 1 thread), host 2 a tiny generated MLX model (mlx_lm.server), host 3
nothing and must forward; every node requires the API key "lab". The failover test starts
its own mesh where hosts 1 and 2 both hold Gemma. Clients and chromium run inside host 3's
namespace (`ip netns exec`), so all traffic stays in the lab.
"""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api_lab_configs import APILAB_MLX, apilab_node_toml, apilab_place_mlx
from lab_configs import lab_node_env, lab_peer
from netlab import Lab, NodeProc, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.real]

APILAB_ROOT = Path(__file__).resolve().parents[2]
APILAB_CLIENT = APILAB_ROOT / "tests" / "support" / "apilab_client.py"
APILAB_DIALECTS = APILAB_ROOT / "tests" / "support" / "apilab_dialects.py"
APILAB_KEY = "lab"  # the key apilab_client.py sends
APILAB_OLLAMA_PORT = 11434  # h3's own Ollama listener in the shared mesh
APILAB_READY_S = 240.0  # three nodes + two llama-servers on two cores shared with other labs
APILAB_CLIENT_S = 180.0


def _apilab_start(lab: Lab, workdir: Path, replicas: int = 1,
                  mlx: bool = False) -> list[NodeProc]:
    """Nodes h1 (Gemma), h2 (Gemma, or the tiny MLX model when `mlx`) and h3 (nothing),
    seeded at h1; returned in order. With `mlx` every node requires APILAB_KEY."""
    env = lab_node_env(workdir)
    peers = [lab_peer(lab.host(1).addr)]
    mlx_dir = apilab_place_mlx(workdir) if mlx else None
    nodes = []
    for k in (1, 2, 3):
        toml = apilab_node_toml(f"h{k}", workdir / f"data{k}", demo=k == 1 or (k == 2 and not mlx),
                                peers=peers if k != 1 else (), replicas=replicas,
                                mlx_dir=mlx_dir if k == 2 else None,
                                api_key=APILAB_KEY if mlx else None,
                                ollama_port=APILAB_OLLAMA_PORT if mlx and k == 3 else None)
        nodes.append(lab.host(k).start_node(toml, env=env))
    return nodes


def _apilab_ready_hosts(st: dict[str, Any]) -> list[str]:
    """Ids of members serving a ready host of some model."""
    return sorted(m["id"] for m in st["members"] if m["status"] == "alive"
                  and any(s["role"] == "host" and s["ready"] for s in m["serving"]))


def _apilab_wait_mesh(nodes: list[NodeProc], hosts: int, models: int = 1) -> dict[str, Any]:
    """Every node sees 3 alive members, `models` placed and ready models, `hosts` ready
    hosts."""
    def ok(st: dict[str, Any]) -> bool:
        alive = sum(m["status"] == "alive" for m in st["members"])
        return (alive == 3 and len(st["placement"]) == models
                and all(p["ready"] for p in st["placement"])
                and len(_apilab_ready_hosts(st)) == hosts)
    states: list[dict[str, Any]] = [n.wait_for(ok, APILAB_READY_S, interval=1.0) for n in nodes]
    return states[-1]


def _apilab_run_client(node: NodeProc, *args: str) -> str:
    """Run the openai client script inside node's namespace; its stdout."""
    argv = ["ip", "netns", "exec", node.ns, sys.executable, str(APILAB_CLIENT), *args]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=APILAB_CLIENT_S)
    assert cp.returncode == 0, f"client failed ({cp.returncode}): {cp.stderr[-3000:]}"
    return cp.stdout


@pytest.fixture(scope="module")
def apilab_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, list[NodeProc]]]:
    """One running three-node mesh (Gemma on h1, tiny MLX on h2) shared by the client,
    dialect and dashboard tests."""
    workdir = tmp_path_factory.mktemp("apilab")
    lab = Lab(3, workdir=workdir)
    try:
        nodes = _apilab_start(lab, workdir, mlx=True)
        _apilab_wait_mesh(nodes, hosts=2, models=2)
        yield lab, nodes
    finally:
        lab.close()


def test_apilab_openai_client_at_every_node_reaches_the_elected_host(
        apilab_mesh: tuple[Lab, list[NodeProc]]) -> None:
    _, nodes = apilab_mesh
    st = nodes[2].status()
    plan = next(p for p in st["placement"] if p["model"] != APILAB_MLX)
    elected = plan["hosts"][0]["id"]
    assert plan["mode"] == "solo" and elected == nodes[0].status()["node"]["id"]
    for node in nodes:
        out = json.loads(_apilab_run_client(nodes[2], "basic", node.base_url))
        assert out["models"] == sorted(p["model"] for p in st["placement"]), out
        assert out["chat_text"].strip(), out
        assert out["stream_chunks"] >= 2 and out["stream_text"].strip(), out
        assert out["chat_served_by"] == elected and out["stream_served_by"] == elected, out


def test_apilab_every_dialect_through_a_non_host_node(
        apilab_mesh: tuple[Lab, list[NodeProc]]) -> None:
    """anthropic, ollama and openai clients at h3 (hosts nothing): the llama and the MLX
    model answer whole and streamed, named by their mesh id in every chunk; listings;
    404/400/401 in each dialect's shape; a tools request answers 200 in both tool dialects."""
    _, nodes = apilab_mesh
    st = nodes[2].status()
    ids = sorted(p["model"] for p in st["placement"])
    gemma = next(m for m in ids if m != APILAB_MLX)
    argv = ["ip", "netns", "exec", nodes[2].ns, sys.executable, str(APILAB_DIALECTS),
            nodes[2].base_url, APILAB_KEY, gemma, APILAB_MLX]
    started = time.monotonic()
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=APILAB_CLIENT_S)
    assert cp.returncode == 0, f"client failed ({cp.returncode}): {cp.stderr[-3000:]}"
    out = json.loads(cp.stdout)
    assert out["anthropic_models"] == ids and out["openai_models"] == ids
    assert out["ollama_tags"] == [f"{m}:latest" for m in ids] == out["ollama_ps"]
    for model in ids:
        a, o, oa = (out["answers"][model][d] for d in ("anthropic", "ollama", "openai"))
        assert a["model"] == model and a["stream_models"] == [model], a
        assert a["stream_events"][0] == "message_start" and a["stream_events"][-1] == "message_stop"
        assert a["output_tokens"] > 0 and a["stream_output_tokens"] > 0, a
        assert o["model"] == f"{model}:latest" and o["stream_models"] == [f"{model}:latest"], o
        assert o["done"] and o["stream_last_done"] and o["stream_eval_count"] > 0, o
        assert oa["model"] == model and oa["stream_models"] == [model], oa
        if model == gemma:  # real text (the MLX model's random weights may say nothing)
            assert a["text"].strip() and a["stream_text"].strip(), a
            assert o["text"].strip() and o["stream_text"].strip(), o
            assert o["generate_text"].strip() and oa["text"] and oa["stream_text"].strip(), o
    errs = out["errors"]
    assert {d: {k: e["status"] for k, e in v.items()} for d, v in errs.items()} == {
        d: {"unknown": 404, "bad": 400, "key": 401} for d in ("anthropic", "ollama", "openai")}
    assert errs["anthropic"]["unknown"]["body"]["error"]["type"] == "not_found_error"
    assert errs["anthropic"]["key"]["body"]["type"] == "error"
    assert "no-such-model" in errs["ollama"]["unknown"]["body"]
    assert errs["openai"]["unknown"]["body"]["code"] == "model_not_found"
    tools = out["tools"]
    # answered (200): a tool call or a message; the tiny model may talk until max_tokens
    assert tools["openai_finish"] in ("tool_calls", "stop", "length"), tools
    # one call or several (the tiny model may repeat it), each to the one tool offered
    assert (tools["openai_calls"] and set(tools["openai_calls"]) == {"get_weather"}) \
        or tools["openai_text"], tools
    assert tools["anthropic_stop"] in ("tool_use", "end_turn", "max_tokens"), tools
    assert tools["anthropic_blocks"], tools
    own = f"http://{nodes[2].address}:{APILAB_OLLAMA_PORT}"
    cp = subprocess.run(["ip", "netns", "exec", nodes[2].ns, sys.executable, "-c",
                         "import json, ollama, sys; c = ollama.Client(host=sys.argv[1], "
                         "headers={'Authorization': 'Bearer ' + sys.argv[2]}); "
                         "print(json.dumps([m.model for m in c.list().models]))",
                         own, APILAB_KEY], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert json.loads(cp.stdout) == out["ollama_tags"]  # [api] ollama_port: the same API
    print(f"dialects: {len(ids)} models x 3 clients in {time.monotonic() - started:.1f}s; "
          f"tools: openai {tools['openai_finish']}, anthropic {tools['anthropic_stop']}")


def _apilab_chromium(node: NodeProc, profile: Path, *extra: str) -> str:
    """Headless Debian chromium in node's namespace (flags of tests/support/api_chromium)."""
    argv = ["ip", "netns", "exec", node.ns, "chromium", "--headless", "--no-sandbox",
            "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--window-size=1280,900", *extra, node.base_url + "/"]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert cp.returncode == 0, f"chromium failed ({cp.returncode}): {cp.stderr[-2000:]}"
    return cp.stdout


def test_apilab_dashboard_shows_members_and_placement(
        apilab_mesh: tuple[Lab, list[NodeProc]], tmp_path: Path) -> None:
    _, nodes = apilab_mesh
    st = nodes[2].status()
    dom = _apilab_chromium(nodes[2], tmp_path / "profile", "--dump-dom")
    for name in ("h1", "h2", "h3"):
        assert f"<b>{name}</b>" in dom
    assert dom.count(">alive<") == 3
    plan = st["placement"][0]
    assert plan["reason"] and html.escape(plan["reason"], quote=False) in dom
    assert plan["model"] in dom and ">ready<" in dom and "loading…" not in dom
    assert "authenticated" in dom
    # into the test's own directory: a test run leaves the repository as it found it
    shot = tmp_path / "dashboard.png"
    _apilab_chromium(nodes[2], tmp_path / "profile2", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one


def _apilab_records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]


def _apilab_llama_pids(ns: str) -> list[int]:
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                          timeout=10).stdout.split()
    out = []
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        out += [int(pid)] if comm.startswith("llama-server") else []
    return out


def _apilab_log_events(node: NodeProc, event: str) -> int:
    return sum(f'"event": "{event}"' in line or f'"event":"{event}"' in line
               for line in node.log_text().splitlines())


def test_apilab_replica_killed_mid_burst_loses_no_request(
        lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    lab = lab_factory(3)
    nodes = _apilab_start(lab, tmp_path, replicas=2)
    st = _apilab_wait_mesh(nodes, hosts=2)
    ids = [n.status()["node"]["id"] for n in nodes]
    assert sorted(h["id"] for h in st["placement"][0]["hosts"]) == sorted(ids[:2])
    n_req, conc, kill_after = 30, 6, 6
    out = tmp_path / "burst.jsonl"
    with open(out, "wb") as f:
        proc = subprocess.Popen(["ip", "netns", "exec", nodes[2].ns, sys.executable,
                                 str(APILAB_CLIENT), "burst", nodes[2].base_url, str(n_req),
                                 str(conc)], stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: len(_apilab_records(out)) >= kill_after, APILAB_CLIENT_S,
                   what=f"{kill_after} burst requests done")
        before = len(_apilab_records(out))
        victim = nodes[0]
        assert _apilab_llama_pids(victim.ns), "no llama-server on the victim before the kill"
        os.kill(victim.proc.pid, signal.SIGKILL)  # mesh-node only: PDEATHSIG takes its child
        killed_at = time.monotonic()
        wait_until(lambda: not _apilab_llama_pids(victim.ns), 10.0,
                   what="llama-server to die with its parent")
        assert proc.wait(timeout=APILAB_CLIENT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    recs = _apilab_records(out)
    failed = [r for r in recs if not r["ok"]]
    assert len(recs) == n_req and not failed, failed
    assert before < n_req, "the burst ended before the kill"
    served = {r["served_by"] for r in recs}
    # both replicas served; after the kill the survivor, and the third node once the mesh
    # restored the `replicas = 2` floor on it (dead in ~2 s, a standby or new host loads)
    assert set(ids[:2]) <= served <= set(ids), served
    assert recs[-1]["served_by"] != ids[0]
    failovers = _apilab_log_events(nodes[2], "upstream_failed_over")
    assert failovers >= 1, nodes[2].log_tail()  # requests were in flight on the victim
    print(f"burst: {n_req} ok, {before} done before kill -9, {failovers} failed over, "
          f"{time.monotonic() - killed_at:.1f}s from kill to end")
