"""Settings that load but cannot work together: an API on loopback in a mesh of machines."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh_node.cli.main import main
from mesh_node.config.advice import api_unreachable
from mesh_node.config.load import load_config
from mesh_node.config.model import Config


def _cfg(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return load_config(path, env={})


def test_loopback_api_with_peers_and_a_lan_address_is_flagged(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, '[mesh]\nmdns = false\npeers = ["10.0.0.2:9338"]\n'
                         '[api]\nhost = "127.0.0.1"\nport = 9400\n')
    said = api_unreachable(cfg, "10.0.0.1")
    assert said is not None and "10.0.0.1:9400" in said and '"0.0.0.0"' in said
    assert api_unreachable(cfg, "127.0.0.1") is None  # nodes on one machine: reachable


@pytest.mark.parametrize("text", [
    '[mesh]\nmdns = false\n[api]\nhost = "127.0.0.1"\n',  # alone: nobody forwards to it
    '[mesh]\nmdns = true\n[api]\nhost = "0.0.0.0"\n',  # listens on the LAN
    '[mesh]\nmdns = true\n[api]\nhost = "10.0.0.1"\n',
])
def test_no_advice_when_peers_can_reach_the_api(tmp_path: Path, text: str) -> None:
    assert api_unreachable(_cfg(tmp_path, text), "10.0.0.1") is None


def test_localhost_and_ipv6_loopback_count_as_loopback(tmp_path: Path) -> None:
    for host in ("localhost", "::1", "127.0.0.2"):
        cfg = _cfg(tmp_path, f'[mesh]\nmdns = true\n[api]\nhost = "{host}"\n')
        assert api_unreachable(cfg, "192.168.1.5") is not None, host


def test_config_check_prints_the_advice_on_stderr(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nadvertise_address = "10.9.9.9"\n[mesh]\nmdns = true\n'
                    '[api]\nhost = "127.0.0.1"\n')
    assert main(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("warning: [api] host = '127.0.0.1'") and "10.9.9.9:9337" in err
    assert "# effective config" in out and "warning" not in out
