"""The upstream transport's HTTP/1.1 on loopback: streaming, truncation, reuse, 1xx, timeouts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
import trio

from mesh_node.api.upstream import Http1Transport, _Conn
from tests.support.api_servers import WAIT_S, raw_upstream, read_request_head

Handler = Callable[[trio.SocketStream], Awaitable[None]]
SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def _client(timeout: float = WAIT_S) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Http1Transport(), timeout=timeout)


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_sse_chunk_is_yielded_before_the_next_is_sent() -> None:
    next_wanted = [trio.Event() for _ in range(3)]

    async def serve(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(SSE_HEAD + _frame(b"data: 0\n\n"))
        for i in range(1, 3):
            await next_wanted[i].wait()  # only once the client has seen chunk i-1
            await stream.send_all(_frame(b"data: %d\n\n" % i)[:5])  # a frame split in two
            await trio.sleep(0.01)
            await stream.send_all(_frame(b"data: %d\n\n" % i)[5:])
        await stream.send_all(b"0\r\n\r\n")

    got = []
    with trio.fail_after(WAIT_S):
        async with raw_upstream(serve) as url, _client() as c, \
                c.stream("POST", url + "/x", content=b"{}") as r:
            async for piece in r.aiter_raw():
                got.append(piece)
                n = b"".join(got).count(b"\n\n")
                if n < 3 and b"".join(got).endswith(b"\n\n"):
                    next_wanted[n].set()
    assert b"".join(got) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial",
    SSE_HEAD + _frame(b"data: 0\n\n") + b"5\r\nab",
    SSE_HEAD + _frame(b"data: 0\n\n"),
])
async def test_a_close_mid_body_is_an_error_not_a_truncation(answer: bytes) -> None:
    async def serve(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(answer)
        await stream.aclose()

    async with raw_upstream(serve) as url, _client() as c:
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await c.post(url + "/x", content=b"{}")


async def _conns_for(answers: list[bytes], read_all: list[bool]) -> int:
    """Connections the transport opened for one request per answer (read whole or not)."""
    conns: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        conns.append(1)
        with trio.move_on_after(WAIT_S):
            for answer in answers[len(conns) - 1:]:
                if not await read_request_head(stream):
                    return
                await stream.send_all(answer)
            await trio.sleep_forever()

    async with raw_upstream(serve) as url, _client() as c:
        for whole in read_all:
            async with c.stream("POST", url + "/x", content=b"{}") as r:
                if whole:
                    await r.aread()
                else:
                    await r.aiter_raw().__anext__()
            await trio.sleep(0.02)
    return len(conns)


async def test_keepalive_reuse_only_after_a_complete_body() -> None:
    sse = SSE_HEAD + _frame(b"data: 0\n\n")
    assert await _conns_for([OK] * 3, [True] * 3) == 1
    assert await _conns_for([sse + b"0\r\n\r\n"] * 2, [True, True]) == 1
    assert await _conns_for([sse] * 2, [False, False]) == 2  # left mid-stream: closed
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    assert await _conns_for([closing] * 2, [True, True]) == 2
    assert await _conns_for([b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"] * 2,
                            [True, True]) == 2


async def test_informational_head_and_no_content_answers() -> None:
    answers = [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + OK,
               b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n",  # to a HEAD
               b"HTTP/1.1 204 No Content\r\n\r\n", OK]
    conns: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        conns.append(1)
        for answer in answers:
            await read_request_head(stream)
            await stream.send_all(answer)
        await trio.sleep(WAIT_S)

    async with raw_upstream(serve) as url, _client() as c:
        first = await c.post(url + "/x", content=b"{}")
        head = await c.head(url + "/x")
        empty = await c.post(url + "/x", content=b"{}")
        last = await c.post(url + "/x", content=b"{}")
    assert (first.status_code, first.text, first.headers["content-length"]) == (200, "ok", "2")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "50")
    assert (empty.status_code, empty.content, last.text) == (204, b"", "ok")
    assert len(conns) == 1


@pytest.mark.parametrize("answer", [b"SSH-2.0-x\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad\r\n\r\n",
                                    SSE_HEAD + b"zz\r\n"])
async def test_junk_is_a_remote_protocol_error(answer: bytes) -> None:
    async def serve(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(answer)
        await trio.sleep(WAIT_S)

    async with raw_upstream(serve) as url, _client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post(url + "/x", content=b"{}")


async def test_read_timeout_is_per_read() -> None:
    async def drip(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(SSE_HEAD)
        for i in range(6):  # 0.6 s in all, each read within 0.1 s of the last
            await trio.sleep(0.1)
            await stream.send_all(_frame(b"%d" % i))
        await stream.send_all(b"0\r\n\r\n")
        await trio.sleep(0.5)  # a stall past the timeout, then the next answer
        await read_request_head(stream)

    async with raw_upstream(drip) as url, _client(timeout=0.3) as c:
        assert (await c.post(url + "/x", content=b"{}")).content == b"012345"
        with pytest.raises(httpx.ReadTimeout):
            await c.post(url + "/x", content=b"{}")


async def test_a_reset_idle_connection_is_replaced() -> None:
    conns: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        conns.append(1)
        await read_request_head(stream)
        await stream.send_all(OK)
        if len(conns) == 1:  # the next request finds its pooled socket dead
            await read_request_head(stream)
            stream.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER,
                                     b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
            await stream.aclose()

    transport = Http1Transport()
    async with raw_upstream(serve) as url, httpx.AsyncClient(transport=transport) as c:
        assert (await c.post(url + "/x", content=b"{}")).text == "ok"
        assert (await c.post(url + "/x", content=b"{}")).text == "ok"
    assert len(conns) == 2


async def test_request_header_injection_is_refused() -> None:
    async with _client() as c:
        with pytest.raises(httpx.LocalProtocolError):
            await c.post("http://127.0.0.1:1/x", content=b"{}", headers={"x": "a\r\nb: c"})


async def test_an_idle_socket_with_junk_waiting_is_not_reused() -> None:
    ours, theirs = trio.socket.socketpair()
    conn = _Conn(trio.SocketStream(ours), ("127.0.0.1", 1))
    try:
        assert conn.idle_usable()
        await theirs.send(b"HTTP/1.1 200 OK\r\n")  # an answer nobody asked for
        with trio.fail_after(WAIT_S):
            await trio.lowlevel.wait_readable(conn.sock)
        assert not conn.idle_usable() and not conn.idle_usable()  # a peek consumes nothing
    finally:
        conn.close_now()
        theirs.close()


async def test_response_headers_are_httpx_headers() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nx-u: caf\xc3\xa9\r\ncontent-length: 0\r\n\r\n"]

    async def serve(stream: trio.SocketStream) -> None:
        for answer in answers:
            await read_request_head(stream)
            await stream.send_all(answer)
        await trio.sleep(WAIT_S)

    async with raw_upstream(serve) as url, _client() as c:
        plain = await c.post(url + "/x", content=b"{}")
        utf8 = await c.post(url + "/x", content=b"{}")
    assert plain.headers["x-a"] == "1, 2" and plain.headers.get_list("X-A") == ["1", "2"]
    assert list(plain.headers.raw)[0] == (b"X-A", b"1") and "content-length" in plain.headers
    assert plain.extensions["reason_phrase"] == b"OK"
    assert utf8.headers["x-u"] == "café"  # not ascii: httpx picks the encoding itself
