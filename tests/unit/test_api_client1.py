"""The pure HTTP/1.1 client codec (api/client1.py): heads, framings, caps, junk, splits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_node.api import client1
from mesh_node.api.client1 import ProtocolError, parse_head, request_bytes


def decode(pieces: list[bytes], head_request: bool = False, eof: bool = True
           ) -> tuple[client1.Head, bytes]:
    """What the transport does: heads until a final one, then the body, read by read."""
    buf, out, it = b"", [], iter(pieces)
    while True:
        got = parse_head(buf, head_request) if buf else None
        if got is None:
            piece = next(it, None)
            if piece is None:
                raise ProtocolError("closed before the head")
            buf += piece
            continue
        head, end = got
        buf = buf[end:]
        if not head.informational:
            break
    body = head.body
    out.append(body.feed(buf) if buf else b"")
    for piece in it:
        out.append(body.feed(piece))
    if eof and not body.done:
        body.end()
    return head, b"".join(out)


def splits(data: bytes, *cuts: int) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n"
           b"5;name=value;q=\"x\"\r\nhello\r\n6\r\n world\r\n"
           b"A \r\n, and more\r\n0\r\nX-Trailer: t\r\nOther: u\r\n\r\n")
BODY = b"hello world, and more"


def test_chunked_split_at_every_byte_boundary() -> None:
    for cut in range(1, len(CHUNKED)):
        head, body = decode(splits(CHUNKED, cut), eof=False)
        assert body == BODY and head.body.done and head.keep_alive, cut


def test_chunked_split_at_every_pair_of_boundaries_and_byte_by_byte() -> None:
    start = CHUNKED.index(b"\r\n\r\n") + 4
    for a in range(start, len(CHUNKED)):
        for b in range(a + 1, len(CHUNKED)):
            assert decode(splits(CHUNKED, a, b), eof=False)[1] == BODY
    head, body = decode([CHUNKED[i:i + 1] for i in range(len(CHUNKED))], eof=False)
    assert body == BODY and head.body.done and head.body.reusable


def test_chunked_piece_per_read_and_bare_lf() -> None:
    head, _ = decode([CHUNKED[:CHUNKED.index(b"\r\n\r\n") + 4]], eof=False)
    body = head.body
    assert body.feed(b"3\r\nabc\r\n4\r\ndefg\r\n") == b"abcdefg"  # one piece per read
    assert body.feed(b"2\nhi\n0\n\n") == b"hi" and body.done


def test_head_fields() -> None:
    head, body = decode([b"HTTP/1.1 201 Created\r\nX-A:  spaced \t\r\nx-b: 2\r\n"
                         b"Content-Length: 3\r\n\r\nabc"], eof=False)
    assert (head.status, head.reason, body) == (201, b"Created", b"abc")
    assert head.headers[0] == (b"X-A", b"x-a", b"spaced")
    assert head.keep_alive and head.body.done
    head, _ = decode([b"HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n"])
    assert head.reason == b"" and head.body.done


def test_content_length_and_close_delimited() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789"
    for cut in range(1, len(raw)):
        head, body = decode(splits(raw, cut), eof=False)
        assert body == b"0123456789" and head.body.done and head.keep_alive
    head, body = decode([b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the close"])
    assert body == b"until the close" and head.body.done and not head.keep_alive


def test_informational_then_final() -> None:
    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
           b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    for cut in range(1, len(raw)):
        head, body = decode(splits(raw, cut), eof=False)
        assert (head.status, body) == (200, b"ok")


@pytest.mark.parametrize("raw,head_request", [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", True),
    (b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n", False),
    (b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n", False),
])
def test_no_body(raw: bytes, head_request: bool) -> None:
    head, body = decode([raw], head_request, eof=False)
    assert body == b"" and head.body.done and head.keep_alive


@pytest.mark.parametrize("raw", [
    b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
])
def test_not_keep_alive(raw: bytes) -> None:
    head, _ = decode([raw], eof=False)
    assert not head.keep_alive


def test_stray_bytes_after_the_body_forbid_reuse() -> None:
    head, body = decode([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1"], eof=False)
    assert body == b"ok" and head.body.done and not head.body.reusable
    head, body = decode([CHUNKED + b"x"], eof=False)
    assert body == BODY and not head.body.reusable


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: 1\r\n",
])
def test_close_mid_body_is_an_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError, match="complete message body"):
        decode([raw])


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nname : v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx: a\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx: a\rb\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 099 OK\r\n\r\n",
    b"http/1.1 200 OK\r\n\r\n",
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 1e3\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 1234567890123456789\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
])
def test_malformed_heads(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode([raw])


@pytest.mark.parametrize("chunks", [
    b"0x5\r\nhello\r\n", b"-5\r\n", b"\r\n", b"g\r\n", b"5 5\r\nhello\r\n",
    b"1000000000000000\r\n",  # 16 hex digits
    b"2\r\nabc\r\n",  # data longer than its size
    b"0\r\nnot a trailer\r\n\r\n",
    b"5;" + b"e" * client1.MAX_LINE + b"\r\n",
    b"5;" + b"e" * (client1.MAX_LINE + 10),  # too long before its LF arrives
    b"0\r\n" + b"x-t: v\r\n" * (client1.MAX_TRAILERS // 8 + 1) + b"\r\n",
])
def test_malformed_chunks(chunks: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode([b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", chunks])


def test_chunked_extensions_tolerate_spaces_and_uppercase_hex() -> None:
    head, body = decode([b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n",
                         b"A ; ext\r\n0123456789\r\n0;last\r\n\r\n"], eof=False)
    assert body == b"0123456789" and head.body.done


def test_head_caps() -> None:
    with pytest.raises(ProtocolError, match="too large"):
        parse_head(b"HTTP/1.1 200 OK\r\nx: " + b"a" * client1.MAX_HEAD)
    with pytest.raises(ProtocolError, match="too large"):
        parse_head(b"HTTP/1.1 200 OK\r\nx: " + b"a" * client1.MAX_HEAD + b"\r\n\r\n")
    many = b"".join(b"x%d: v\r\n" % i for i in range(client1.MAX_HEADERS + 1))
    with pytest.raises(ProtocolError, match="too many"):
        parse_head(b"HTTP/1.1 200 OK\r\n" + many + b"\r\n")
    assert parse_head(b"HTTP/1.1 200 OK\r\n" + many[:many.index(b"x128")] + b"\r\n")
    assert parse_head(b"HTTP/1.1 200 OK\r\nx: 1\r\n") is None  # incomplete


def test_request_bytes() -> None:
    raw = request_bytes(b"POST", b"/v1/x?q=1", [(b"Host", b"host", b"h:1"),
                                                (b"Content-Length", b"content-length", b"9"),
                                                (b"Transfer-Encoding", b"transfer-encoding",
                                                 b"chunked")], b"{}")
    assert raw == (b"POST /v1/x?q=1 HTTP/1.1\r\nHost: h:1\r\ncontent-length: 2\r\n\r\n{}")
    assert (request_bytes(b"GET", b"/", [(b"Host", b"host", b"h")], b"")
            == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    for bad in ([(b"x", b"x", b"a\r\nInjected: 1")], [(b"x\n", b"x\n", b"a")],
                [(b"x", b"x", b"a\rb")], [(b"x", b"x", b"a\x00")]):
        with pytest.raises(ValueError):
            request_bytes(b"POST", b"/", bad, b"")


VALID = [CHUNKED, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
         b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil close",
         b"HTTP/1.1 204 No Content\r\nx: y\r\n\r\n"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 300), st.binary(max_size=4)),
                                        max_size=4),
       st.lists(st.integers(0, 300), max_size=4), st.booleans())
def test_fuzz_mutated_responses_raise_only_protocol_errors(
        raw: bytes, edits: list[tuple[int, bytes]], cuts: list[int], head_request: bool) -> None:
    for pos, repl in edits:  # overwrite, insert or delete a few bytes
        pos %= len(raw) + 1
        raw = raw[:pos] + repl + raw[pos + (len(repl) or 1):]
    try:
        decode(splits(raw, *(c % (len(raw) + 1) for c in cuts)), head_request)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_fuzz_random_bytes_raise_only_protocol_errors(raw: bytes, head_request: bool) -> None:
    for prefix in (b"", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"):
        try:
            decode(splits(prefix + raw, len(prefix) // 2, len(prefix) + len(raw) // 2),
                   head_request)
        except ProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.data())
def test_fuzz_chunked_roundtrip(pieces: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(b"%x;e=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nt: 1\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + wire
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=6))
    head, body = decode(splits(raw, *cuts), eof=False)
    assert body == b"".join(pieces) and head.body.done and head.body.reusable
