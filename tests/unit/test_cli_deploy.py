"""deploy/: rollout.sh (dry run and with fake ssh/scp), the launchd and systemd templates."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLLOUT = REPO / "deploy" / "rollout.sh"


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# the lab\nstudio.local macos\n\nadmin@gpu-box-1 linux  # rack 2\n"
                     "air.local macos\n")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "studio.toml").write_text("[node]\nname = \"studio\"\n")
    (configs / "gpu-box-1.toml").write_text("[node]\nname = \"gpu\"\n")
    (configs / "mesh-node.toml").write_text("")
    return hosts, configs


def _rollout(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROLLOUT), *args], capture_output=True, text=True,
                          timeout=30, env=env, stdin=subprocess.DEVNULL)


def test_dry_run_prints_the_commands_per_host(tmp_path: Path) -> None:
    hosts, configs = _setup(tmp_path)
    result = _rollout("--dry-run", str(hosts), str(configs))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("+ ") for line in lines)
    # host-specific config where present, the shared one otherwise
    assert f"+ scp {configs}/studio.toml studio.local:.mesh-node/config.toml" in lines
    assert f"+ scp {configs}/mesh-node.toml air.local:.mesh-node/config.toml" in lines
    assert f"+ scp {configs}/gpu-box-1.toml admin@gpu-box-1:.mesh-node-rollout/config.toml" in lines
    mac = [line for line in lines if line.startswith("+ ssh studio.local")]
    assert any("launchctl bootstrap gui/$(id -u)" in line for line in mac)
    assert any("~/Library/LaunchAgents/com.mesh-node.agent.plist" in line for line in mac)
    linux = [line for line in lines if line.startswith("+ ssh admin@gpu-box-1")]
    assert any("/etc/systemd/system/mesh-node.service" in line for line in linux)
    assert any("systemctl restart mesh-node.service" in line for line in linux)
    assert "dry run, 3 host(s), nothing was changed" in result.stderr


def test_real_run_reaches_every_host_even_when_ssh_reads_stdin(tmp_path: Path) -> None:
    hosts, configs = _setup(tmp_path)
    fake_bin, log = tmp_path / "bin", tmp_path / "calls.log"
    fake_bin.mkdir()
    for tool in ("ssh", "scp"):  # like the real ssh, drain stdin
        script = fake_bin / tool
        script.write_text(f'#!/usr/bin/env bash\ncat >/dev/null\necho "{tool} $*" >> "{log}"\n')
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    result = _rollout(str(hosts), str(configs), env=env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    for host in ("studio.local", "admin@gpu-box-1", "air.local"):
        assert any(c.startswith(f"ssh {host} ") for c in calls), host
    assert len(calls) == 5 * 3  # 2 ssh + 2 scp + 1 ssh per macOS host; 3 ssh + 2 scp per Linux


@pytest.mark.parametrize(("hosts_text", "message"), [
    ("box freebsd\n", "os must be macos or linux, got 'freebsd'"),
    ("box\n", "os must be macos or linux, got ''"),
    ("box linux extra\n", "expected '<host> <macos|linux>'"),
    ("# nothing\n", "lists no hosts"),
])
def test_bad_hosts_file(tmp_path: Path, hosts_text: str, message: str) -> None:
    _hosts, configs = _setup(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text(hosts_text)
    result = _rollout("--dry-run", str(bad), str(configs))
    assert result.returncode == 1 and message in result.stderr


def test_missing_config_for_a_host(tmp_path: Path) -> None:
    hosts, configs = _setup(tmp_path)
    (configs / "mesh-node.toml").unlink()
    result = _rollout("--dry-run", str(hosts), str(configs))
    assert result.returncode == 1 and "no config for air.local" in result.stderr


def test_usage_errors() -> None:
    assert _rollout().returncode == 2
    assert _rollout("--bogus", "a", "b").returncode == 2
    help_ = _rollout("--help")
    assert help_.returncode == 0 and "Usage: deploy/rollout.sh" in help_.stdout


def test_rollout_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (apt-get install shellcheck)"
    result = subprocess.run([shellcheck, str(ROLLOUT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_launchd_template_is_a_valid_plist() -> None:
    data = plistlib.loads((REPO / "deploy/launchd/com.mesh-node.agent.plist").read_bytes())
    assert data["Label"] == "com.mesh-node.agent"
    assert data["ProgramArguments"] == ["@MESH_NODE@", "run", "--config", "@CONFIG@"]
    assert data["RunAtLoad"] is True and data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["StandardErrorPath"].startswith("@LOG_DIR@/")
    assert data["ExitTimeOut"] > 5  # above the node's shutdown deadline


def test_systemd_unit_restarts_and_stops_cleanly() -> None:
    unit = (REPO / "deploy/systemd/mesh-node.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["ExecStart"] == "@MESH_NODE@ run --config @CONFIG@"
    assert settings["Restart"] == "on-failure" and settings["KillSignal"] == "SIGTERM"
    assert int(settings["TimeoutStopSec"]) > 5
    assert "PrivateNetwork" not in settings and "IPAddressDeny" not in settings
    assert "AF_INET" in settings["RestrictAddressFamilies"]
