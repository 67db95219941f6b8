"""Poll a node's API port from before the node starts; GET /api/status on every connection.

Run inside a lab namespace (`ip netns exec NS python status_probe.py ADDR PORT WAIT HOLD`):
prints `polling` once it runs, then tries to connect every few milliseconds for up to WAIT
seconds. From the first successful connect on, each connection sends one
`GET /api/status` and records the HTTP status, for HOLD seconds. Prints one JSON document:
{"first": status of the first answered connection, "answers": [[t, status], ...] with t in
seconds after the first connect, "attempts": connects tried before the first success,
"first_at": wall-clock time of the first connect, "error": why it gave up}. Plain sockets: no client library may hide a 500 behind a retry.
"""

from __future__ import annotations

import json
import socket
import sys
import time

PROBE_INTERVAL_S = 0.005  # between refused connects: far below any start-up step of a node
PROBE_IO_TIMEOUT_S = 5.0  # one connection's request and answer


def status_once(addr: str, port: int) -> int | None:
    """One connection: None if refused; else the HTTP status of GET /api/status (0: no answer)."""
    try:
        sock = socket.create_connection((addr, port), timeout=PROBE_IO_TIMEOUT_S)
    except OSError:
        return None
    with sock:
        try:
            sock.sendall(f"GET /api/status HTTP/1.1\r\nHost: {addr}:{port}\r\n"
                         "Connection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
        except OSError:
            return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


def main(argv: list[str]) -> int:
    addr, port, wait_s, hold_s = argv[0], int(argv[1]), float(argv[2]), float(argv[3])
    print("polling", flush=True)
    deadline = time.monotonic() + wait_s
    attempts, first = 0, None
    while first is None:
        if time.monotonic() > deadline:
            print(json.dumps({"first": None, "answers": [], "attempts": attempts,
                              "error": f"port {port} never accepted within {wait_s} s"}))
            return 1
        attempts += 1
        first = status_once(addr, port)
        if first is None:
            time.sleep(PROBE_INTERVAL_S)
    t0, wall0 = time.monotonic(), time.time()
    answers = [[0.0, first]]
    while time.monotonic() - t0 < hold_s:
        got = status_once(addr, port)
        answers.append([round(time.monotonic() - t0, 4), -1 if got is None else got])
        time.sleep(PROBE_INTERVAL_S)
    print(json.dumps({"first": first, "answers": answers, "attempts": attempts,
                      "first_at": wall0, "error": ""}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
