"""local_roles: the pure diff from a placement to what this node must run."""

from mesh_node.election.roles import local_roles
from mesh_node.records import ModelPlacement, NodeState, Placement, Serving, WorkerAssignment


def _state(node_id: str, serving: tuple[Serving, ...] = ()) -> NodeState:
    return NodeState(node_id=node_id, name=node_id, address=f"10.0.0.{len(node_id)}", api_port=9337,
                     gossip_port=9338, memory_offered=1, memory_free=1, serving=serving)


SPLIT = ModelPlacement(model="big", mode="split", backend="llama", hosts=("a",),
                       workers=(WorkerAssignment("b", "10.0.0.2", 50052, 0.5),
                                WorkerAssignment("c", "10.0.0.3", 50052, 0.25)),
                       reason="split")


def test_host_of_split_waits_for_unready_workers() -> None:
    ready_b = Serving("big", "worker", "llama", True, 50052, "ready")
    states = {"a": _state("a"), "b": _state("b", (ready_b,)), "c": _state("c")}
    roles = local_roles("a", Placement((SPLIT,)), states)
    assert [h.model for h in roles.hosts] == ["big"]
    assert roles.hosts[0].waiting_for == ("c",)
    assert not roles.hosts[0].startable


def test_host_starts_once_every_worker_is_ready() -> None:
    ready = lambda: (Serving("big", "worker", "llama", True, 50052, "ready"),)  # noqa: E731
    states = {"a": _state("a"), "b": _state("b", ready()), "c": _state("c", ready())}
    roles = local_roles("a", Placement((SPLIT,)), states)
    assert roles.hosts[0].startable


def test_worker_role_and_nothing_else() -> None:
    roles = local_roles("b", Placement((SPLIT,)), {})
    assert roles.hosts == ()
    assert roles.worker_for == ("big",)


def test_unservable_and_served_as_give_no_roles() -> None:
    p = Placement((
        ModelPlacement("m1", "unservable", "mlx", reason="too big"),
        ModelPlacement("m2", "solo", "mlx", hosts=("a",), served_as="m2-gguf", reason="x"),
    ))
    roles = local_roles("a", p, {})
    assert roles.hosts == () and roles.worker_for == ()


def test_host_key_changes_with_workers() -> None:
    a = local_roles("a", Placement((SPLIT,)), {}).hosts[0]
    fewer = ModelPlacement(model="big", mode="split", backend="llama", hosts=("a",),
                           workers=SPLIT.workers[:1], reason="split")
    b = local_roles("a", Placement((fewer,)), {}).hosts[0]
    assert a.key != b.key
