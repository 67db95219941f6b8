"""explain.py: readable JSON, the terminal table, planning from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh_node.election.explain import (
    load_snapshot_file,
    placement_to_json,
    plan_from_file,
    render_placement,
)
from mesh_node.election.planner import plan, snapshot_from_states
from mesh_node.records import BackendCapability, ModelSummary, NodeState, Placement
from mesh_node.testing.carry import carry_out

GIB = 1024**3
LLAMA = BackendCapability("llama", "b1", ("gguf",), True, True)
MLX = BackendCapability("mlx", "0.2", ("mlx",), False, True)


def _explain_states() -> list[NodeState]:
    big = ModelSummary("big", "g", "llama", "gguf", 3 * GIB, 3 * GIB)
    small = ModelSummary("small", "s", "llama", "gguf", GIB // 2, GIB // 2)
    tiny_mlx = ModelSummary("q", "q", "mlx", "mlx", 5 * GIB, 5 * GIB)
    return [
        NodeState("id-a", "studio", "10.0.0.1", 9337, 9338, 5 * GIB // 2, 0, (LLAMA, MLX),
                  (big, small, tiny_mlx), preload=("big", "small", "q")),
        NodeState("id-b", "mini", "10.0.0.2", 9337, 9338, 2 * GIB, 2 * GIB, (LLAMA,)),
    ]


def _explain_placement() -> Placement:
    return plan(snapshot_from_states(_explain_states()))


def test_json_names_nodes_and_host_share() -> None:
    items = placement_to_json(_explain_placement(), {"id-a": "studio", "id-b": "mini"})
    split = next(i for i in items if i["mode"] == "split")
    assert split["hosts"] == [{"id": "id-a", "name": "studio"}]
    assert split["workers"][0]["name"] == "mini" and split["workers"][0]["rpc_port"] == 50052
    assert abs(split["host_weight"] + split["workers"][0]["weight"] - 1.0) < 1e-9


def test_render_table_has_rows_and_reasons() -> None:
    text = render_placement(_explain_placement(), {"id-a": "studio", "id-b": "mini"})
    lines = text.splitlines()
    assert lines[0].split() == ["MODEL", "MODE", "BACKEND", "HOSTS", "WORKERS", "MEMORY"]
    assert any(line.startswith("big") and "mini:50052" in line for line in lines)
    assert "  why: MLX cannot split; needs 5.0 GiB x1.1" in text
    assert render_placement(Placement(), {}).endswith("(no models wanted: no live node offers any)\n")


def test_plan_from_file_rebuilds_previous_from_serving_records(tmp_path: Path) -> None:
    states = carry_out(_explain_states(), _explain_placement())
    names = {"id-a": "studio", "id-b": "mini"}
    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"nodes": [s.to_wire() for s in states]}))
    out = plan_from_file(path)
    by_model = {p["model"]: p for p in out["placement"]}
    assert by_model["big"]["mode"] == "split"
    assert by_model["big"]["reason"].startswith("kept split (incumbent)")
    assert out["nodes"] == names
    snap, _ = load_snapshot_file(path)
    assert snap.previous is not None
    kept = snap.previous.for_model("big")
    assert kept is not None and kept.mode == "split" and kept.hosts == ("id-a",)


def test_plan_from_file_bare_list_applies_far_peers(tmp_path: Path) -> None:
    path = tmp_path / "bare.json"
    nodes = [s.to_wire() for s in _explain_states()]
    nodes[1]["far"] = ["id-a"]  # mini measured studio beyond its max_rtt_ms
    path.write_text(json.dumps({"nodes": nodes}))
    by_model = {p["model"]: p for p in plan_from_file(path)["placement"]}
    assert by_model["big"]["mode"] == "unservable"
    assert "skipped mini (round trip to studio above the max_rtt_ms limit)" in \
        by_model["big"]["reason"]
    bare = tmp_path / "list.json"
    bare.write_text(json.dumps([s.to_wire() for s in _explain_states()]))
    assert {p["model"] for p in plan_from_file(bare)["placement"]} == {"big", "small", "q"}


def test_plan_from_file_names_the_bad_record(tmp_path: Path) -> None:
    path = tmp_path / "inf.json"
    nodes = [s.to_wire() for s in _explain_states()]
    nodes[0]["mo"] = 1e400  # inf: the same decoder as gossip refuses it
    path.write_text(json.dumps({"nodes": nodes}).replace("Infinity", "1e400"))
    with pytest.raises(ValueError, match=r"node record 0: .*\$\.mo"):
        plan_from_file(path)


def test_planner_module_plans_files_and_rejects_garbage(tmp_path: Path) -> None:
    from mesh_node.election import planner

    good = tmp_path / "good.json"
    good.write_text(json.dumps([s.to_wire() for s in _explain_states()]))
    out = planner.plan_from_file(good)
    assert out["members"] == [{"id": "id-a", "name": "studio"}, {"id": "id-b", "name": "mini"}]
    bad = tmp_path / "bad.json"
    for text in ('[{"n": "no id"}]', '{"nodes": 3}', "not json"):
        bad.write_text(text)
        with pytest.raises(ValueError):
            planner.plan_from_file(bad)
