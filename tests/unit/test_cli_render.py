"""Pure CLI rendering: tables, sizes, durations, status/placement/catalog/config screens."""

from __future__ import annotations

from typing import Any

from mesh_node.cli.render import (
    fmt_bytes,
    fmt_duration,
    render_catalog,
    render_config,
    render_placement,
    render_status,
    table,
)
from tests.support.foundation_status import AIR_ID, STUDIO_ID, sample_status


def test_table_aligns_columns() -> None:
    out = table(("A", "LONGER"), [("xxxx", 1), ("y", None)])
    assert out.splitlines() == ["A     LONGER", "xxxx  1", "y"]


def test_sizes_and_durations() -> None:
    assert fmt_bytes(512) == "512 B" and fmt_bytes(1536) == "1.5 KiB"
    assert fmt_bytes(96 * 2**30) == "96.0 GiB" and fmt_bytes(None) == "-"
    assert fmt_bytes(True) == "-"
    assert fmt_duration(3725) == "1h 02m" and fmt_duration(59) == "0m 59s"
    assert fmt_duration(2 * 86400 + 3600) == "2d 01h" and fmt_duration("x") == "-"


def test_status_screen_has_node_mesh_members_and_placement() -> None:
    out = render_status(sample_status())
    lines = out.splitlines()
    assert lines[0].startswith("Node     studio (id a1a1a1a1), version 0.1.0, up 1h 02m")
    assert "address 10.0.0.5, api port 9337, gossip port 9338" in lines[1]
    assert lines[2] == "Mesh     home: authenticated"
    member_air = next(line for line in lines if line.startswith("air "))
    for cell in ("b2b2b2b2", "suspect", "5", "10.0.0.7", "llama:split", "16.0 GiB", "15.0 GiB"):
        assert cell in member_air
    member_studio = next(line for line in lines if line.startswith("studio "))
    assert "mlx:off(not installed)" in member_studio and "llama-70b(host,ready)" in member_studio
    row = next(line for line in lines if line.startswith("llama-70b"))
    for cell in ("split", "llama", "studio", "air:0.25", "yes", "needs 44 GiB; split 3:1"):
        assert cell in row
    unservable = next(line for line in lines if line.startswith("giant-405b"))
    assert "unservable" in unservable and " no " in unservable
    assert lines[-1] == "Counters forwarded=3, requests=12"


def test_unauthenticated_mesh_is_loud() -> None:
    status = sample_status()
    status["mesh"] = {"name": "default", "authenticated": False,
                      "warning": "no mesh secret: anyone on the LAN can join"}
    out = render_status(status)
    assert "default: UNAUTHENTICATED (trusted-LAN mode)" in out
    assert "Warning  no mesh secret: anyone on the LAN can join" in out


def test_status_tolerates_missing_and_odd_keys() -> None:
    assert "Members (0)" in render_status({})
    odd: dict[str, Any] = {"members": [{"name": "x"}, {"capabilities": ["llama:split"],
                                                       "serving": ["m"]}],
                           "placement": [{"model": "m", "workers": [{}]}], "counters": {}}
    out = render_status(odd)
    assert "Members (2)" in out and "llama:split" in out and "m" in out


def test_placement_names_hosts_and_falls_back_to_id_prefixes() -> None:
    placement = sample_status()["placement"]
    assert "studio" in render_placement(placement, sample_status()["members"])
    bare = render_placement(placement)
    assert STUDIO_ID[:8] in bare and f"{AIR_ID[:8]}:0.25" in bare and STUDIO_ID not in bare
    assert render_placement([]) == "(no models placed)"


def test_catalog_table() -> None:
    out = render_catalog([{"id": "m1", "backend": "mlx", "format": "mlx", "size_bytes": 2**30,
                           "memory_bytes": 2 * 2**30, "quantization": None, "path": "/m/m1"}])
    assert "m1" in out and "1.0 GiB" in out and "/m/m1" in out
    assert render_catalog([]) == "(no models found)"


def test_config_rendering_is_toml_like_and_skips_unset() -> None:
    out = render_config({"demo_model": True, "model_dirs": ["/m"], "node": {"name": "n",
                         "memory_bytes": None}, "backends": {"llama": {"threads": 4}},
                         "models": [{"path": "/a.gguf", "alias": None}]})
    assert out.splitlines() == [
        "demo_model = true", 'model_dirs = ["/m"]', "", "[node]", 'name = "n"', "",
        "[backends.llama]", "threads = 4", "", "[[models]]", 'path = "/a.gguf"']
