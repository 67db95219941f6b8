"""The CLI: --version/--help, config check, status/plan over HTTP, models, run, bench."""

from __future__ import annotations

import json
import socket
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mesh_node import __version__
from mesh_node.cli.main import main
from mesh_node.config.model import Config
from tests.support.foundation_status import sample_status

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").rglob("*.toml"))


@pytest.fixture(autouse=True)
def _no_mesh_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import logging

    import structlog

    for key in [k for k in __import__("os").environ if k.startswith("MESH_NODE_")]:
        monkeypatch.delenv(key)
    handlers = list(logging.getLogger().handlers)
    yield
    structlog.reset_defaults()  # `run` configures logging; leave the process as found
    logging.getLogger().handlers[:] = handlers


# --- version and help ----------------------------------------------------------------------

def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mesh-node {__version__}"


@pytest.mark.parametrize("argv", [[], ["run"], ["config"], ["config", "check"], ["status"],
                                  ["models"], ["plan"]], ids=lambda a: " ".join(a) or "top")
def test_help_on_every_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mesh-node {' '.join(argv)}".rstrip())
    assert "--help" in out


def test_top_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "config", "status", "models", "plan", "bench"):
        assert f"    {command}" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2 and "required" in capsys.readouterr().err


# --- config check ----------------------------------------------------------------------------

def test_the_shipped_configs_are_all_checked() -> None:
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIGS}
    assert {"single-node.toml", "linux-static-peers.toml", "three-macs/studio.toml",
            "three-macs/macbook-air.toml", "three-macs/mac-mini-mlx.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_check_passes_on_every_shipped_config(
        path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The examples point secret_file at per-machine files; the test provides one through the
    # environment, which (by precedence) replaces the file's path.
    secret = tmp_path / "mesh.secret"
    secret.write_text("test-secret-value-123\n")
    monkeypatch.setenv("MESH_NODE_MESH_SECRET_FILE", str(secret))
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# effective config of {path}")
    assert "test-secret-value-123" not in out and 'secret = "***"' in out
    assert "[api]" in out and "port = " in out


def test_config_check_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[api]\nport = 9400\napi_key = "abc"\n')
    assert main(["config", "check", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["api"]["port"] == 9400 and data["api"]["api_key"] == "***"


def test_config_check_bad_file_exits_2_with_one_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[api]\nport = 70000\n")
    assert main(["config", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"{path}: api.port: expected an integer from 1 to 65535, got 70000\n"


# --- status and plan over HTTP ----------------------------------------------------------------

@dataclass
class _Server:
    url: str
    seen_auth: list[str | None]
    reply: dict[str, Any]


@pytest.fixture
def status_server() -> Iterator[_Server]:
    """A loopback HTTP server answering /api/status; 401 when the test asks for it."""
    state = _Server("", [], {"code": 200, "body": sample_status()})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.seen_auth.append(self.headers.get("Authorization"))
            body = json.dumps(state.reply["body"]).encode()
            code = state.reply["code"] if self.path == "/api/status" else 404
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_status_renders_the_mesh(status_server: _Server,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", status_server.url, "--api-key", "k1"]) == 0
    out = capsys.readouterr().out
    assert status_server.seen_auth == ["Bearer k1"]
    assert "studio" in out and "home: authenticated" in out and "suspect" in out
    assert "llama-70b" in out and "needs 44 GiB; split 3:1" in out


def test_status_takes_the_api_key_from_the_environment(
        status_server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_NODE_API_API_KEY", "envkey")
    assert main(["status", "--url", status_server.url + "/"]) == 0
    assert status_server.seen_auth == ["Bearer envkey"]


def test_status_json_is_the_raw_document(status_server: _Server,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", status_server.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == sample_status()


def test_status_unauthorized(status_server: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    status_server.reply = {"code": 401, "body": {"error": "no"}}
    assert main(["status", "--url", status_server.url]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "--api-key" in err and err.count("\n") == 1


def test_status_not_json_object(status_server: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    status_server.reply = {"code": 200, "body": [1, 2]}
    assert main(["status", "--url", status_server.url]) == 1
    assert "not a status JSON object" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_unreachable_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["status", "--url", url]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"mesh-node: cannot reach {url}/api/status: ")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_plan_from_a_running_node(status_server: _Server,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--url", status_server.url]) == 0
    out = capsys.readouterr().out
    assert "giant-405b" in out and "needs 230 GiB, mesh offers 112 GiB" in out
    assert "air:0.25" in out  # worker ids rendered as member names


def test_plan_from_a_snapshot_uses_the_planner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[Path] = []

    def plan_from_file(path: Path) -> dict[str, Any]:
        calls.append(path)
        return {"placement": sample_status()["placement"]}

    stub = types.ModuleType("mesh_node.election.planner")
    stub.plan_from_file = plan_from_file  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mesh_node.election.planner", stub)
    snap = tmp_path / "snap.json"
    assert main(["plan", "--snapshot", str(snap), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert calls == [snap] and data["placement"][0]["model"] == "llama-70b"


# --- models --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    id: str
    path: Path
    format: str
    backend: str
    size_bytes: int
    memory_bytes: int
    quantization: str | None
    key: str
    error: str | None = None


def test_models_lists_the_catalog(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Config] = []

    def scan_catalog(config: Config) -> list[_Entry]:
        seen.append(config)
        return [_Entry("gemma-3-270m", Path("/m/g.gguf"), "gguf", "llama", 253 * 2**20,
                       300 * 2**20, "Q4_K_M", "gemma-3-270m"),
                _Entry("broken", Path("/m/b.gguf"), "gguf", "llama", 0, 0, None, "b", "bad magic")]

    stub = types.ModuleType("mesh_node.catalog.scan")
    stub.scan_catalog = scan_catalog  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mesh_node.catalog.scan", stub)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gemma-3-270m" in out and "Q4_K_M" in out and "253.0 MiB" in out
    assert "ERROR: bad magic" in out and seen[0].mesh.name == "default"
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"] == "/m/g.gguf"


def test_models_without_a_catalog_says_so(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mesh_node.catalog.scan", None)  # import now fails
    assert main(["models"]) == 1
    assert "mesh_node.catalog.scan is missing" in capsys.readouterr().err


# --- run -----------------------------------------------------------------------------------------

def _stub_node(monkeypatch: pytest.MonkeyPatch, result: object) -> list[Config]:
    seen: list[Config] = []

    async def run_node(config: Config) -> object:
        seen.append(config)
        return result

    stub = types.ModuleType("mesh_node.node")
    stub.run_node = run_node  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mesh_node.node", stub)
    return seen


def test_run_passes_flags_over_config_to_run_node(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _stub_node(monkeypatch, 0)
    path = tmp_path / "c.toml"
    path.write_text('[api]\nport = 9400\n[node]\nname = "filename"\n')
    argv = ["run", "--config", str(path), "--api-port", "9999", "--gossip-port", "9998",
            "--name", "flagname", "--data-dir", str(tmp_path / "d"), "--log-level", "warning"]
    assert main(argv) == 0
    (config,) = seen
    assert (config.api.port, config.mesh.gossip_port) == (9999, 9998)
    assert config.node.name == "flagname" and config.node.data_dir == tmp_path / "d"
    assert config.log.level == "warning"


def test_run_returns_run_nodes_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    _stub_node(monkeypatch, 3)
    assert main(["run"]) == 3


def test_run_bad_config_exits_2_without_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    seen = _stub_node(monkeypatch, 0)
    assert main(["run", "--api-port", "0"]) == 2
    assert capsys.readouterr().err == (
        "command line: api.port: expected an integer from 1 to 65535, got 0\n")
    assert seen == []


def test_run_without_a_node_runtime_says_so(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mesh_node.node", None)
    monkeypatch.setitem(sys.modules, "mesh_node.node.run", None)
    assert main(["run"]) == 1
    assert "mesh_node.node.run_node is missing" in capsys.readouterr().err


# --- bench ---------------------------------------------------------------------------------------

def test_bench_hands_every_argument_to_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[list[str]] = []
    stub = types.ModuleType("mesh_node.bench.cli")
    def bench_main(args: list[str]) -> int:
        got.append(args)
        return 4

    stub.main = bench_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mesh_node.bench.cli", stub)
    assert main(["bench", "--help", "-x", "1"]) == 4
    assert got == [["--help", "-x", "1"]]


def test_bench_missing_is_a_clear_message(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mesh_node.bench.cli", None)
    assert main(["bench"]) == 1
    assert "mesh_node.bench.cli is missing" in capsys.readouterr().err
