"""The node: one root nursery that wires config, catalog, backends, gossip, discovery,
election and the API together (`run.run_node`)."""
