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
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hop_latency import read_request  # noqa: E402


def main() -> None:
    port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    idle: list[trio.SocketStream] = []

    async def connection(client: trio.SocketStream) -> None:
        buf = b""
        try:
            while (got := await read_request(client, buf)) is not None:
                body, buf = got
                json.loads(body)
                up = idle.pop() if idle else await trio.open_tcp_stream("127.0.0.1",
                                                                        upstream_port)
                await up.send_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: up\r\n"
                                  b"content-type: application/json\r\n"
                                  b"content-length: %d\r\n\r\n" % len(body) + body)
                answered = await read_request(up, b"")  # the answer's head: same framing
                if answered is None:
                    return
                idle.append(up)
                await client.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                      b"content-length: %d\r\n\r\n" % len(answered[0])
                                      + answered[0])
        except trio.BrokenResourceError:
            return

    trio.run(partial(trio.serve_tcp, connection, port, host="127.0.0.1"))


if __name__ == "__main__":
    main()
