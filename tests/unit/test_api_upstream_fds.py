"""The upstream pool with every socket above descriptor 1024 (where select() cannot look)."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import trio

from mesh_node.api.upstream import Http1Transport, _Conn
from tests.support.api_servers import WAIT_S, raw_upstream, read_request_head

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
_FLOOR = 1100  # every descriptor below this is taken, so new sockets land above FD_SETSIZE


@contextmanager
def low_descriptors_taken() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = _FLOOR + 400
    assert hard == resource.RLIM_INFINITY or hard >= want, f"hard open-files limit {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    held: list[int] = []
    base = os.open(os.devnull, os.O_RDONLY)
    try:
        while not held or held[-1] < _FLOOR:
            held.append(os.dup(base))  # dup takes the lowest free descriptor
        probe = os.dup(base)
        os.close(probe)
        assert probe >= _FLOOR  # the next socket gets a descriptor above 1024
        yield
    finally:
        for fd in held:
            os.close(fd)
        os.close(base)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_upstream_keepalive_works_above_fd_1024() -> None:
    conns: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        conns.append(stream.socket.fileno())
        while await read_request_head(stream):
            await stream.send_all(OK)

    with low_descriptors_taken():
        async with raw_upstream(serve) as url, \
                httpx.AsyncClient(transport=Http1Transport(), timeout=WAIT_S) as c:
            bodies = [(await c.post(url + "/x", content=b"{}")).text for _ in range(3)]
    assert bodies == ["ok"] * 3
    assert len(conns) == 1 and conns[0] >= 1024  # one connection, reused twice


async def test_upstream_idle_check_above_fd_1024() -> None:
    """Open and quiet: reusable; closed by the peer: not (select() raised for both)."""
    with low_descriptors_taken():
        ours, theirs = trio.socket.socketpair()
        conn = _Conn(trio.SocketStream(ours), ("127.0.0.1", 1))
        try:
            assert conn.sock.fileno() >= 1024  # the transport's own socket (detached)
            assert conn.idle_usable()
            theirs.close()
            with trio.fail_after(WAIT_S):
                await trio.lowlevel.wait_readable(conn.sock)  # the close has arrived
            assert not conn.idle_usable()
        finally:
            conn.close_now()
            ours.close()
