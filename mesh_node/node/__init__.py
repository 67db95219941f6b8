"""The node: one root nursery that wires config, catalog, backends, gossip, discovery,
election and the API together (`run.run_node`)."""

from mesh_node.node.run import run_node

__all__ = ["run_node"]
