"""A sample /api/status document (the shape `mesh-node status` renders) for CLI tests."""

from __future__ import annotations

from typing import Any

STUDIO_ID = "a1" * 16
AIR_ID = "b2" * 16


def sample_status() -> dict[str, Any]:
    """Two members, one split model, one unservable model."""
    return {
        "node": {"id": STUDIO_ID, "name": "studio", "version": "0.1.0", "uptime_s": 3725,
                 "address": "10.0.0.5", "api_port": 9337, "gossip_port": 9338},
        "mesh": {"name": "home", "authenticated": True, "warning": None},
        "members": [
            {"id": STUDIO_ID, "name": "studio", "status": "alive", "incarnation": 2,
             "address": "10.0.0.5",
             "capabilities": [{"name": "llama", "splittable": True, "available": True, "reason": ""},
                              {"name": "mlx", "splittable": False, "available": False,
                               "reason": "not installed"}],
             "memory_offered": 96 * 2**30, "memory_free": 60 * 2**30,
             "serving": [{"model": "llama-70b", "role": "host", "ready": True}]},
            {"id": AIR_ID, "name": "air", "status": "suspect", "incarnation": 5,
             "address": "10.0.0.7",
             "capabilities": [{"name": "llama", "splittable": True, "available": True}],
             "memory_offered": 16 * 2**30, "memory_free": 15 * 2**30, "serving": []},
        ],
        "catalog": [],
        "placement": [
            {"model": "llama-70b", "mode": "split", "backend": "llama", "hosts": [STUDIO_ID],
             "workers": [{"node": AIR_ID, "weight": 0.25}], "reason": "needs 44 GiB; split 3:1",
             "ready": True},
            {"model": "giant-405b", "mode": "unservable", "backend": "llama", "hosts": [],
             "workers": [], "reason": "needs 230 GiB, mesh offers 112 GiB", "ready": False},
        ],
        "counters": {"requests": 12, "forwarded": 3},
    }
