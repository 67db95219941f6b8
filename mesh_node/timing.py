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
    push_pull_timeout: float = 5.0  # one TCP exchange on a LAN; a stuck peer must not pin a task
    push_pull_header_timeout: float = 1.0  # a real peer sends its 4-byte length at once
    # A dead/left record (tombstone) is kept this long, then dropped. Longer than two push-pull
    # rounds plus the longest suspicion (6 x 4 s at N < 10), so every peer has declared the death
    # before anyone forgets it and stale news cannot bring the member back.
    dead_reclaim: float = 60.0
    # a member declared dead is still gossiped to this long, so a false death (lost
    # refutations under loss) is heard and refuted (memberlist LAN GossipToTheDeadTime = 30 s)
    gossip_to_the_dead: float = 30.0
    state_fetch_retry: float = 1.0  # a record announced by digest is pulled again this often
    # a sealed datagram/frame older (or newer) than this is a replay: the node-to-node HTTP
    # window; LAN clocks under NTP agree within seconds (gossip/replay.py)
    gossip_freshness: float = 30.0
    awareness_max: int = 8  # Lifeguard local health multiplier cap (memberlist AwarenessMaxMultiplier)
    # --- LAN evidence (issue 16; not in memberlist, which has only the TCP fallback ping) ---
    # A probe that goes unacked for probe_timeout is also tried over TCP to the member's gossip
    # port, as memberlist's fallback ping does (state.go probeNode); its connect gets this long.
    tcp_probe_timeout: float = 0.5
    # A suspicion heard from a peer is checked with our own TCP connect to the suspect; one
    # that fails within this long backs it here too, so a standby need not wait standby_after
    # (election/standby.py). A LAN connect completes in about a millisecond, and a lost SYN is
    # resent only after 1 s (RFC 6298), so 0.2 s tells "answers" from "does not" either way.
    tcp_check_timeout: float = 0.2
    # Local evidence that nothing listens at a member's gossip port (our own TCP connect
    # refused, or ICMP port-unreachable from that host for our own datagram) is only believed
    # together with a missed ack (a stranger cannot forge an ack away), and then the suspicion
    # timeout is at most this: one probe interval, long enough for the suspicion to reach the
    # suspect (gossip every 200 ms, each update sent >= 4 times) and its refutation to come
    # back, while a live member never produces the evidence at all. SWIM's timer still
    # declares the death; the evidence only shortens it (as Lifeguard's confirmations do).
    suspicion_evidence: float = 1.0
    evidence_window: float = 2.0  # evidence older than two probe intervals is stale
    # --- standby (pre-warm) ---
    # While a host is suspect, the holder that the plan would elect if it died starts loading
    # (a standby visible in its serving record); SWIM's timer still decides the death. A
    # suspicion must have lasted this long first, so the refutations that follow most false
    # suspicions under loss (one gossip round + a round trip) start nothing (control-loop sim,
    # 120 seeded runs at 0-20 % loss: 51 standby starts, 144 with no gate).
    standby_after: float = 0.5
    # --- discovery ---
    static_peer_backoff_min: float = 0.5  # first retry of an unreachable static peer
    static_peer_backoff_max: float = 30.0  # cap of the exponential backoff
    # --- election ---
    election_debounce: float = 0.3  # coalesce a burst of gossip updates (a join brings several)
    election_recheck: float = 2.0  # re-plan at least this often (worker readiness, cool-downs)
    # A node carries out no plan before its first push-pull with a peer, or, alone, before this
    # window ends: mDNS answers in about 1 s on a LAN (FIELD-NOTES) and the first static-peer dial
    # goes out at once, so 3 s lets a newcomer learn the incumbents before it starts anything.
    join_window: float = 3.0
    # At start-up a node with static peers waits at most this long for its first push-pull
    # before importing and starting its API (~0.35 s of imports that hold the trio loop): a
    # LAN push-pull takes milliseconds, so the join is not queued behind the imports.
    join_head_start: float = 0.5
    failed_cooldown: float = 60.0  # a failed host keeps saying so, so it is not re-elected at once
    load_publish: float = 1.0  # volatile load (in flight) is gossiped at most this often
    # --- demand-driven placement (election/demand.py) ---
    # A request for a model that is not loaded waits this long for a host ([election]
    # load_timeout): a 70B Q4 GGUF (~40 GB) read from a Mac's SSD at ~2 GB/s and mapped takes
    # about a minute; 5 minutes leaves room for a slow disk or an MLX conversion warm-up.
    load_timeout: float = 300.0
    # Smoothed in-flight load: rises with this time constant (a burst of 32 requests passes one
    # host's 4 slots within a second, so a replica is asked for within ~2 s)...
    demand_rise: float = 2.0
    # ...and falls with this one: 30 s of quiet halves it about twice, so a replica added for
    # a burst stays through a pause between bursts and leaves in about a minute after the last.
    demand_fall: float = 30.0
    # New demand (the first open request for a model through this node) is published at once
    # rather than on the load_publish timer; at most this often, so a burst costs one datagram.
    demand_publish_min: float = 0.05
    # --- backends ---
    # llama-server answers 503 while loading (~2.3 s for Gemma 3 270M here); a failover waits
    # on the poll that sees it ready, so 0.1 s (was 0.25: ~0.08 s more on average); a localhost
    # GET that answers 503 at once costs about a millisecond
    health_poll: float = 0.1
    health_probe_timeout: float = 2.0  # one probe; a healthy local server answers in milliseconds
    capability_probe_timeout: float = 30.0  # a cold `import mlx_lm` on a slow disk takes seconds
    backend_health_timeout: float = 120.0  # llama-server loads a 250 MB GGUF in ~2 s; big ones take longer
    backend_stop_grace: float = 5.0  # SIGTERM, then SIGKILL after this
    backend_restart_min: float = 0.5  # capped exponential restart backoff
    backend_restart_max: float = 30.0
    # --- routing ---
    route_retry_window: float = 20.0  # a request waits at most this long for a ready host
    # A LAN connect takes < 1 ms; Linux resends a lost SYN after 1 s (RFC 6298 initial RTO),
    # so 1.5 s survives one lost SYN. A failed connect is retried (routes re-read), so a host
    # that vanished costs 1.5 s per attempt, not 5 s (was 5.0 s).
    upstream_connect_timeout: float = 1.5
    upstream_read_timeout: float = 300.0  # a long generation on a CPU host
    # --- model transfer (issue 14) ---
    # no byte of a range answer for this long: the holder is gone or stuck. A 16 MiB chunk takes
    # 0.15 s at 1 Gbit/s and 3 s over 50 Mbit/s Wi-Fi; 20 s is well past both.
    transfer_stall_timeout: float = 20.0
    transfer_connect_timeout: float = 5.0  # a LAN peer accepts in ms; a dead one never does
    transfer_retry_min: float = 0.5  # capped exponential backoff while no holder answers
    # kill -9 of a holder is declared dead in 5-8 s (README figures); retrying every 4 s at most
    # picks the same holder up again within one period of its return
    transfer_retry_max: float = 4.0
    transfer_progress_publish: float = 0.5  # progress (bytes, rate, ETA) into status/events
    transfer_rate_window: float = 5.0  # rate over the last 5 s: steady, yet follows a new holder
    store_touch_interval: float = 60.0  # LRU use times of hosted copies written at most this often
    # --- status ---
    sse_keepalive: float = 15.0  # SSE comment line; lets proxies keep and clients check the stream
    cli_http_timeout: float = 5.0  # a LAN node answers /api/status in ms; 5 s means it is gone
    # --- shutdown ---
    shutdown_deadline: float = 5.0  # SIGTERM to exit, leave + goodbyes + children


DEFAULT_TIMINGS = Timings()
