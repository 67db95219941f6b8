"""A small believable mesh (members, catalog, placement) for status and dashboard tests."""

from __future__ import annotations

from mesh_node.records import (
    BackendCapability,
    Load,
    MemberView,
    ModelPlacement,
    ModelSummary,
    NodeState,
    Placement,
    Serving,
    WorkerAssignment,
)

GIB = 1 << 30
LLAMA = BackendCapability("llama", "b6500", ("gguf",), True, True)
MLX_NO = BackendCapability("mlx", "", ("mlx",), False, False, "not a Mac and mlx not installed")
GEMMA = ModelSummary("gemma-3-270m-q4_k_m", "gemma-3-270m", "llama", "gguf", 253_000_000,
                     400_000_000, ("gemma",))
QWEN = ModelSummary("qwen2.5-7b-q4_k_m", "qwen2.5-7b", "llama", "gguf", 4_700_000_000,
                    6_000_000_000)


def sample_members() -> list[MemberView]:
    """Three members: a host of gemma, a split pair for qwen, one suspect."""
    a = NodeState("n1", "studio", "10.77.0.1", 9337, 9338, 16 * GIB, 12 * GIB, (LLAMA, MLX_NO),
                  (GEMMA, QWEN), (Serving(GEMMA.id, "host", "llama", True, 9337, "ready"),
                                  Serving(QWEN.id, "host", "llama", False, 9337, "starting")),
                  version="0.1.0")
    b = NodeState("n2", "laptop", "10.77.0.2", 9337, 9338, 4 * GIB, 3 * GIB, (LLAMA,), (QWEN,),
                  (Serving(QWEN.id, "worker", "llama", True, 50052, "ready"),), version="0.1.0")
    c = NodeState("n3", "old-pc", "10.77.0.3", 9337, 9338, 2 * GIB, 1 * GIB, (LLAMA,), (),
                  version="0.1.0")
    return [MemberView("n1", "alive", 3, a.address, 9338, a, 0.4, Load(inflight=2)),
            MemberView("n2", "alive", 1, b.address, 9338, b, 0.9),
            MemberView("n3", "suspect", 7, c.address, 9338, c, None)]


def sample_placement() -> Placement:
    return Placement((
        ModelPlacement(GEMMA.id, "solo", "llama", ("n1",),
                       reason="solo on studio: 12.0 GiB free >= 1.1 x 0.4 GB"),
        ModelPlacement(QWEN.id, "split", "llama", ("n1",),
                       (WorkerAssignment("n2", "10.77.0.2", 50052, 0.2),),
                       reason="split: no node has 6.6 GB alone; studio + laptop by memory"),
    ))
