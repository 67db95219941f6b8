"""Cost of node-to-node forward auth: sign + verify per forward, and replay-cache memory.

    .venv/bin/python benchmarks/forward_auth.py [--rate 3000] [--seconds 60]

Feeds `--rate` signed forwards per simulated second (injected `now`) through one
ForwardVerifier for `--seconds`, and prints the CPU per forward, the live cache entries and the
cache's traced memory at the end (tracemalloc), and how many were refused (cap) or replayed.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

from mesh_node.api.meshauth import AUTH, ForwardVerifier, forward_headers

KEY = b"k" * 32
BODY = json.dumps({"model": "gemma", "messages": [{"role": "user", "content": "hi" * 200}]}
                  ).encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=3000)
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()
    verifier = ForwardVerifier(KEY, "node-b", 0.0)
    refused: dict[str, int] = {}
    t0 = 1_800_000_000.0
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    cpu = time.process_time()
    for second in range(args.seconds):
        now = t0 + second
        for i in range(args.rate):
            auth = forward_headers(KEY, "node-a", "node-b", f"r{i}", "POST",
                                   "/v1/chat/completions", BODY, now)[AUTH]
            got = verifier.check(auth, "node-a", f"r{i}", "POST", "/v1/chat/completions", BODY,
                                 now)
            if got is not None:
                refused[got.reason] = refused.get(got.reason, 0) + 1
    cpu = time.process_time() - cpu
    mem = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    n = args.rate * args.seconds
    print(json.dumps({"forwards": n, "rate_per_s": args.rate,
                      "sign_plus_verify_us": round(cpu / n * 1e6, 1),
                      "cache_entries": len(verifier.cache), "cache_buckets": verifier.cache.buckets,
                      "cache_mib": round(mem / 2**20, 2), "refused": refused}))


if __name__ == "__main__":
    main()
