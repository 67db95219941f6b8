"""Every timing constant of mesh-node, in one place, each with where its value comes from.

Protocol logic uses monotonic seconds; wall time appears only in logs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timings:
    # --- SWIM / Lifeguard (memberlist DefaultLANConfig, hashicorp/memberlist config.go) ---
    probe_interval: float = 1.0  # memberlist LAN ProbeInterval = 1 s
    probe_timeout: float = 0.5  # memberlist LAN ProbeTimeout = 500 ms
    indirect_checks: int = 3  # memberlist IndirectChecks = 3
    gossip_interval: float = 0.2  # memberlist LAN GossipInterval = 200 ms
    gossip_nodes: int = 3  # memberlist GossipNodes = 3
    retransmit_mult: int = 4  # memberlist RetransmitMult = 4
    suspicion_mult: int = 4  # memberlist SuspicionMult = 4 (min timeout = mult*log10(N)*probe)
    suspicion_max_mult: int = 6  # memberlist SuspicionMaxTimeoutMult = 6
    push_pull_interval: float = 15.0  # memberlist LAN is 30 s; halved so partitions heal faster
    dead_reclaim: float = 30.0  # a dead/left member's record is kept this long, then dropped
    awareness_max: int = 8  # Lifeguard local health multiplier cap (memberlist AwarenessMaxMultiplier)
    # --- discovery ---
    static_peer_backoff_min: float = 0.5  # first retry of an unreachable static peer
    static_peer_backoff_max: float = 30.0  # cap of the exponential backoff
    # --- election ---
    election_debounce: float = 0.3  # coalesce a burst of gossip updates (a join brings several)
    # --- backends ---
    backend_health_timeout: float = 120.0  # llama-server loads a 250 MB GGUF in ~2 s; big ones take longer
    backend_stop_grace: float = 5.0  # SIGTERM, then SIGKILL after this
    backend_restart_min: float = 0.5  # capped exponential restart backoff
    backend_restart_max: float = 30.0
    # --- routing ---
    route_retry_window: float = 20.0  # a request waits at most this long for a ready host
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 300.0  # a long generation on a CPU host
    # --- shutdown ---
    shutdown_deadline: float = 5.0  # SIGTERM to exit, leave + goodbyes + children


DEFAULT_TIMINGS = Timings()
