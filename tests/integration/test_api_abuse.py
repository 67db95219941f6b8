"""API abuse against one real node on loopback (no models, api_key set, 1 MiB body limit).

Malformed JSON, wrong types, huge bodies, oversized headers, slow clients, 2,000 idle
connections and bad API keys: each gets the right answer, other clients are still served, and
the node stays up. The node runs with a soft open-files limit of 1,024 (a stock Linux login;
macOS gives 256), so the idle-connection test also checks that the node lifts its own limit.
"""

from __future__ import annotations

import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mesh_node.api.httpserver import ServerConfig
from tests.support.hostile_node import HostileNode, start_hostile_node

ABUSE_KEY = "abuse-test-key-5f1c"
ABUSE_IDLE_CONNS = 2000
ABUSE_HEALTHZ_MAX_S = 1.0  # a LAN health probe must not wait behind abusers
AUTH = {"authorization": f"Bearer {ABUSE_KEY}"}


@pytest.fixture(scope="module")
def abuse_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileNode]:
    node = start_hostile_node(tmp_path_factory.mktemp("abuse"), api_key=ABUSE_KEY,
                              secret="abuse-mesh-secret", max_body="1MiB", nofile=1024)
    yield node
    assert node.alive(), f"the node died during the abuse tests:\n{node.log_text()[-3000:]}"
    assert node.stop() == 0


def abuse_healthz_seconds(node: HostileNode) -> float:
    """Time for a fresh client to get 200 from /healthz (fails if it does not)."""
    t0 = time.monotonic()
    r = httpx.get(node.url("/healthz"), timeout=10.0, trust_env=False)
    assert r.status_code == 200
    return time.monotonic() - t0


def abuse_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert an OpenAI-shaped error with this status (and code); return its error object."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return dict(err)


def abuse_raw(node: HostileNode, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a new connection; what the server answers before closing or timeout."""
    with socket.create_connection(("127.0.0.1", node.api_port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


@pytest.mark.parametrize("headers", [
    {}, {"authorization": "Bearer wrong-key"}, {"authorization": f"Basic {ABUSE_KEY}"},
    {"authorization": f"Bearer {ABUSE_KEY}x"}, {"authorization": ABUSE_KEY},
    {"authorization": "Bearer  x"}, {"x-api-key": "wrong-key"},
    {"x-api-key": f"Bearer {ABUSE_KEY}"},  # x-api-key carries the bare key (Anthropic's habit)
])
@pytest.mark.parametrize("method,path", [("GET", "/v1/models"),
                                         ("POST", "/v1/chat/completions")])
def test_abuse_bad_api_keys_get_401_in_openai_shape(abuse_node: HostileNode, method: str,
                                                    path: str, headers: dict[str, str]) -> None:
    r = httpx.request(method, abuse_node.url(path), headers=headers, trust_env=False,
                      json={"model": "m", "messages": []} if method == "POST" else None)
    err = abuse_error(r, 401, "invalid_api_key")
    assert err["type"] == "invalid_request_error"
    assert r.headers.get("www-authenticate") == "Bearer"
    assert ABUSE_KEY not in r.text


def test_abuse_good_key_passes(abuse_node: HostileNode) -> None:
    r = httpx.get(abuse_node.url("/v1/models"), headers=AUTH, trust_env=False)
    assert r.status_code == 200 and r.json()["object"] == "list"
    r = httpx.get(abuse_node.url("/v1/models"), headers={"x-api-key": ABUSE_KEY},
                  trust_env=False)
    assert r.status_code == 200 and r.json()["object"] == "list"


@pytest.mark.parametrize("body,code,param", [
    (b"{", "invalid_json", None),
    (b"not json at all", "invalid_json", None),
    (b"\xff\xfe\x00garbage", "invalid_json", None),
    (b"[1, 2, 3]", "invalid_json", None),
    (b'"just a string"', "invalid_json", None),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json", None),  # deep nesting: RecursionError
    (b'{"model": 1' + b"0" * 5000 + b"}", "invalid_json", None),  # past the int-digit limit
    (b'{"messages": []}', "missing_required_parameter", "model"),
    (b'{"model": 5, "messages": []}', "invalid_type", "model"),
    (b'{"model": "", "messages": []}', "invalid_type", "model"),
    (b'{"model": null, "messages": []}', "invalid_type", "model"),
    (b'{"model": "m"}', "missing_required_parameter", "messages"),
    (b'{"model": "m", "messages": "x"}', "invalid_type", "messages"),
    (b'{"model": "m", "messages": [1, "a"]}', "invalid_type", "messages"),
    (b'{"model": "m", "messages": [], "stream": "yes"}', "invalid_type", "stream"),
    (b'{"model": ["m"], "messages": {}}', "invalid_type", "model"),
])
def test_abuse_malformed_and_mistyped_bodies_get_400(abuse_node: HostileNode, body: bytes,
                                                     code: str, param: str | None) -> None:
    r = httpx.post(abuse_node.url("/v1/chat/completions"), content=body, trust_env=False,
                   headers={**AUTH, "content-type": "application/json"}, timeout=10.0)
    err = abuse_error(r, 400, code)
    assert err["param"] == param


def test_abuse_unknown_model_is_404_not_a_crash(abuse_node: HostileNode) -> None:
    r = httpx.post(abuse_node.url("/v1/chat/completions"), headers=AUTH, trust_env=False,
                   json={"model": "no-such-model" * 50, "messages": []})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_abuse_declared_huge_body_gets_413_without_being_read(abuse_node: HostileNode) -> None:
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ABUSE_KEY}"
            "\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n{")
    t0 = time.monotonic()
    answer = abuse_raw(abuse_node, head.encode(), timeout=5.0)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - t0 < 3.0  # answered from the header alone: 10 GB never sent


def test_abuse_chunked_huge_body_is_cut_at_the_limit(abuse_node: HostileNode) -> None:
    """No Content-Length: the node reads up to max_body_bytes (1 MiB) and answers 413."""
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ABUSE_KEY}"
            "\r\ntransfer-encoding: chunked\r\n\r\n").encode()
    chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"  # 64 KiB per chunk
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", abuse_node.api_port), timeout=5.0) as s:
        s.sendall(head)
        while sent < 200 * len(chunk) and not answer:  # at most 12.8 MiB offered
            readable, writable, _ = select.select([s], [s], [], 5.0)
            if readable:
                answer = s.recv(65536)
            elif writable:
                try:
                    sent += s.send(chunk)
                except OSError:
                    break
        if not answer:
            answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request_too_large" in answer or b"413" in answer
    assert sent < 200 * len(chunk)  # it answered before the client gave up


@pytest.mark.parametrize("raw,expect", [
    (b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-pad: " + b"a" * 40_000,
     (b"HTTP/1.1 431", b"HTTP/1.1 400", b"")),  # an unfinished head over the server's 16 KiB cap
    (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
     (b"HTTP/1.1 400", b"")),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
     (b"HTTP/1.1 400", b"")),
    (b"GARBAGE\r\n\r\n", (b"HTTP/1.1 400", b"")),
])
def test_abuse_broken_http_is_refused(abuse_node: HostileNode, raw: bytes,
                                      expect: tuple[bytes, ...]) -> None:
    answer = abuse_raw(abuse_node, raw)
    assert any(answer.startswith(e) for e in expect if e) or (b"" in expect and not answer)
    assert abuse_healthz_seconds(abuse_node) < ABUSE_HEALTHZ_MAX_S


def _trickle(sockets: list[socket.socket], stop: threading.Event, sent: list[int]) -> None:
    """Slowloris: one header byte per connection every 0.2 s, never finishing the request."""
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 4000
    i = 0
    while not stop.is_set() and i < len(head):
        for s in sockets:
            try:
                s.send(head[i:i + 1])
            except OSError:
                pass
        sent[0] = i = i + 1
        stop.wait(0.2)


def test_abuse_slowloris_does_not_block_other_clients(abuse_node: HostileNode) -> None:
    socks = [socket.create_connection(("127.0.0.1", abuse_node.api_port)) for _ in range(200)]
    stop, sent = threading.Event(), [0]
    t = threading.Thread(target=_trickle, args=(socks, stop, sent), daemon=True)
    t.start()
    try:
        time.sleep(2.0)
        times = [abuse_healthz_seconds(abuse_node) for _ in range(10)]
        r = httpx.get(abuse_node.url("/v1/models"), headers=AUTH, trust_env=False)
        assert r.status_code == 200
    finally:
        stop.set()
        t.join(timeout=5)
        for s in socks:
            s.close()
    assert sent[0] >= 5  # the slow clients really were mid-request
    assert max(times) < ABUSE_HEALTHZ_MAX_S, times


def test_abuse_server_timeouts_bound_slow_clients() -> None:
    """The API server's idle timer starts at accept (or a response's end) and stops only when
    a whole request head has arrived, so a trickling client is cut after keep_alive_timeout;
    h11 caps the head size."""
    cfg = ServerConfig()
    assert 0 < cfg.keep_alive_timeout <= 120
    assert cfg.max_head_bytes <= 64 * 1024


@pytest.mark.slow
def test_abuse_slowloris_connection_is_closed_by_the_server(abuse_node: HostileNode) -> None:
    limit = ServerConfig().keep_alive_timeout
    with socket.create_connection(("127.0.0.1", abuse_node.api_port)) as s:
        t0 = time.monotonic()
        s.settimeout(1.0)
        closed_at = None
        for i in range(int(limit) + 20):  # one byte a second, never a whole request
            try:
                s.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: "[i:i + 1] or b"a")
                if s.recv(1024) == b"":
                    closed_at = time.monotonic() - t0
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_at = time.monotonic() - t0
                break
    assert closed_at is not None and closed_at <= limit + 5, closed_at


def test_abuse_thousands_of_idle_connections(abuse_node: HostileNode) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < ABUSE_IDLE_CONNS + 200:  # the test process holds the client ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, ABUSE_IDLE_CONNS + 500), hard))
    limits = Path(f"/proc/{abuse_node.pid}/limits").read_text()
    node_soft = int(next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
                    .split()[3])
    assert node_soft > ABUSE_IDLE_CONNS, limits  # started at 1,024: the node lifted it
    fds_before = abuse_node.open_fds()
    for _ in range(40):  # connections of earlier tests may still be closing: wait it out
        time.sleep(0.5)
        fds_before, settled = abuse_node.open_fds(), fds_before
        if fds_before == settled:
            break
    socks: list[socket.socket] = []
    try:
        for _ in range(ABUSE_IDLE_CONNS):
            socks.append(socket.create_connection(("127.0.0.1", abuse_node.api_port), timeout=5))
        held, deadline = 0, time.monotonic() + 15.0
        while held < ABUSE_IDLE_CONNS and time.monotonic() < deadline:  # accepted, not queued
            time.sleep(0.5)
            held = abuse_node.open_fds() - fds_before
        times = [abuse_healthz_seconds(abuse_node) for _ in range(10)]
    finally:
        for s in socks:
            s.close()
    print(f"idle connections: {len(socks)}; node fds +{held}; "
          f"healthz max {max(times) * 1000:.0f} ms, median {sorted(times)[5] * 1000:.0f} ms")
    assert held >= ABUSE_IDLE_CONNS  # every one accepted and held open by the node
    assert max(times) < ABUSE_HEALTHZ_MAX_S, times
    assert abuse_node.alive()


def test_abuse_node_still_serves_after_everything(abuse_node: HostileNode) -> None:
    assert abuse_healthz_seconds(abuse_node) < ABUSE_HEALTHZ_MAX_S
    st = httpx.get(abuse_node.url("/api/status"), trust_env=False, timeout=10).json()
    assert st["node"]["id"]
    assert "request_crashed" not in abuse_node.log_text()
