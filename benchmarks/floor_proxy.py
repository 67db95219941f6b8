"""The floor: the least a trio proxy can do for one request, as a reference row.

    .venv/bin/python benchmarks/floor_proxy.py PORT UPSTREAM_PORT

Reads a request head and its Content-Length body, parses the JSON (any router must read the
model name), sends the request to the upstream over a kept-alive connection, reads the answer
(the synthetic upstream's Content-Length SSE answer) and writes it back. No validation, no
auth, no routing, no metrics, no chunked framing: it is not a server, only a measure of what
Python and trio cost per proxied request on this machine, so the mesh's own cost can be told
apart from the runtime's (hop_nginx.py runs it beside nginx and the mesh).
"""

from __future__ import annotations

import json
import sys
from functools import partial

import trio

_READ = 65536


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def _read_message(stream: trio.SocketStream, buf: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, body, what follows) of the next message after `buf`; EOFError at a close."""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(_READ)
        if not data:
            raise EOFError
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    n = _length(head)
    while len(buf) < n:
        data = await stream.receive_some(_READ)
        if not data:
            raise EOFError
        buf += data
    return head, buf[:n], buf[n:]


def main() -> None:
    port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    idle: list[trio.SocketStream] = []

    async def connection(client: trio.SocketStream) -> None:
        buf = b""
        try:
            while True:
                _head, body, buf = await _read_message(client, buf)
                json.loads(body)
                up = idle.pop() if idle else await trio.open_tcp_stream("127.0.0.1",
                                                                        upstream_port)
                await up.send_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: up\r\n"
                                  b"content-type: application/json\r\n"
                                  b"content-length: %d\r\n\r\n" % len(body) + body)
                _uhead, answer, _ = await _read_message(up, b"")
                idle.append(up)
                await client.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                      b"content-length: %d\r\n\r\n" % len(answer) + answer)
        except (EOFError, trio.BrokenResourceError):
            return

    trio.run(partial(trio.serve_tcp, connection, port, host="127.0.0.1"))


if __name__ == "__main__":
    main()
