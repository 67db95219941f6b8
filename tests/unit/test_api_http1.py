"""api/http1.py, the API server's pure HTTP/1.1 core: smuggling and splitting refused, the
keep-alive and framing rules, a differential test against h11 (same method, target, headers
and body for valid requests; never more lenient than h11 on mutated ones), and a fuzz test
(hostile bytes raise ProtocolError only)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_node.api import http1
from mesh_node.api.http1 import ChunkedDecoder, ProtocolError, Request, parse_request
from tests.support.hostile_fuzz import fuzz_settings

GET = b"GET /v1/models HTTP/1.1\r\nhost: x"


def _split(raw: bytes) -> tuple[Request, bytes]:
    """Parse a whole request (head and body) with http1, as the server does."""
    end = raw.index(b"\r\n\r\n")
    req, rest = parse_request(raw[:end]), bytearray(raw[end + 4:])
    if not req.chunked:
        return req, bytes(rest[:req.content_length])
    dec = ChunkedDecoder()
    body = dec.feed(rest)
    assert dec.done
    return req, body


def _h11(raw: bytes) -> tuple[h11.Request, bytes] | None:
    """The same request through h11; None if h11 refuses it."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    try:
        req = conn.next_event()
        if not isinstance(req, h11.Request):
            return None
        body = b""
        while isinstance(event := conn.next_event(), h11.Data):
            body += event.data
    except h11.RemoteProtocolError:
        return None
    return req, body


@pytest.mark.parametrize("head,status", [
    (GET + b"\r\ncontent-length: 5\r\ntransfer-encoding: chunked", 400),  # CL.TE
    (GET + b"\r\ntransfer-encoding: chunked\r\ncontent-length: 5", 400),  # TE.CL
    (GET + b"\r\ncontent-length: 5\r\ncontent-length: 6", 400),  # double CL
    (GET + b"\r\ncontent-length: 5\r\ncontent-length: 5", 400),  # even equal (as nginx)
    (GET + b"\r\ncontent-length: 5, 5", 400),
    (GET + b"\r\ncontent-length: +5", 400),
    (GET + b"\r\ncontent-length: 0x10", 400),
    (GET + b"\r\ncontent-length: " + b"9" * 20, 400),
    (GET + b"\r\ntransfer-encoding: gzip", 501),
    (GET + b"\r\ntransfer-encoding: gzip, chunked", 501),
    (GET + b"\r\ntransfer-encoding: chunked, chunked", 501),
    (GET + b"\r\ntransfer-encoding: identity", 501),
    (GET + b"\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked", 400),
    (GET + b"\r\ntransfer-encoding : chunked", 400),  # space before the colon
    (GET + b"\r\ntransfer-encoding:\x0bchunked", 400),
    (b"GET / HTTP/1.0\r\ntransfer-encoding: chunked", 400),
    (GET + b"\r\nx-a: 1\r\n folded", 400),  # obs-fold
    (GET + b"\r\nx-a: 1\r\n\tfolded", 400),
    (GET + b"\r\nx-a: 1\nx-b: 2", 400),  # bare LF
    (GET + b"\r\nx-a: 1\rx-b: 2", 400),  # bare CR
    (b"GET / HTTP/1.1\nhost: x", 400),
    (GET + b"\r\nx-a: a\x00b", 400),  # NUL
    (GET + b"\r\nx-a: a\x7fb", 400),
    (GET + b"\r\nx(a): 1", 400),  # not a token
    (GET + b"\r\n: 1", 400),
    (b"GET / HTTP/1.1\r\nx-a: 1", 400),  # no Host on 1.1
    (GET + b"\r\nhost: y", 400),  # two Hosts
    (b"GET / HTTP/2.0\r\nhost: x", 505),
    (b"GET / HTTP/1.2\r\nhost: x", 505),
    (b"GET / HTTP/11\r\nhost: x", 400),
    (b"GET  / HTTP/1.1\r\nhost: x", 400),
    (b"GET /a b HTTP/1.1\r\nhost: x", 400),
    (b"GET /\xff HTTP/1.1\r\nhost: x", 400),
    (b"\r\nGET / HTTP/1.1\r\nhost: x", 400),
    (b"GARBAGE", 400),
    (GET + b"\r\nx: y" * http1.MAX_FIELDS, 431),
])
def test_api_http1_refuses(head: bytes, status: int) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_request(head)
    assert err.value.status == status


def test_api_http1_keep_alive_and_expect() -> None:
    assert parse_request(GET).keep_alive
    assert not parse_request(GET + b"\r\nconnection: Close").keep_alive
    assert not parse_request(GET + b"\r\nconnection: upgrade, close").keep_alive
    assert not parse_request(b"GET / HTTP/1.0").keep_alive
    assert parse_request(b"GET / HTTP/1.0\r\nconnection: Keep-Alive").keep_alive
    assert parse_request(GET + b"\r\nexpect: 100-Continue").expect_continue
    assert not parse_request(b"GET / HTTP/1.0\r\nexpect: 100-continue").expect_continue


def _head(req: bytes, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[
        bytes, http1.Framing]:
    return http1.response_head(status, headers, b"OK", parse_request(req), b"D")


def test_api_http1_response_framing() -> None:
    cl = [(b"content-length", b"3")]
    head, f = _head(GET, 200, cl)
    assert head == b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ndate: D\r\n\r\n"
    assert (f.length, f.chunked, f.body, f.keep_alive) == (3, False, True, True)
    head, f = _head(GET, 200, [(b"transfer-encoding", b"gzip")])  # the server frames
    assert head.count(b"transfer-encoding") == 1 and f.chunked
    _, f = _head(b"GET / HTTP/1.0", 200, [])  # close-delimited
    assert not f.chunked and f.length is None and not f.keep_alive
    head, f = _head(b"GET / HTTP/1.0\r\nconnection: keep-alive", 200, cl)
    assert head.endswith(b"connection: keep-alive\r\n\r\n") and f.keep_alive
    head, f = _head(GET, 200, [*cl, (b"connection", b"close")])
    assert head.endswith(b"connection: close\r\n\r\n") and not f.keep_alive
    head, f = _head(GET + b"\r\nconnection: close", 200, cl)
    assert head.endswith(b"connection: close\r\n\r\n") and not f.keep_alive
    _, f = _head(b"HEAD / HTTP/1.1\r\nhost: x", 200, cl)
    assert not f.body and f.keep_alive
    for status in (204, 304):
        head, f = _head(GET, status, [])
        assert not f.body and not f.chunked and b"transfer-encoding" not in head


@pytest.mark.parametrize("headers", [
    [(b"x-a", b"1\r\nset-cookie: evil")], [(b"x-a", b"1\nx: y")], [(b"x-a", b"a\rb")],
    [(b"x-a", b"a\x00b")], [(b"x-a\r\nx-b", b"1")], [(b"x a", b"1")], [(b"", b"1")],
    [(b"x:a", b"1")], [(b"content-length", b"1\r\n")], [(b"content-length", b"-1")],
])
def test_api_http1_response_splitting_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ValueError):
        _head(GET, 200, headers)


def test_api_http1_bad_status_refused() -> None:
    for status in (100, 101, 199, 1000, "200"):
        with pytest.raises(ValueError):
            _head(GET, status, [])  # type: ignore[arg-type]


def test_api_http1_chunked_bounds() -> None:
    dec = ChunkedDecoder()
    buf = bytearray(b"5;name=value\r\nhello\r\n0\r\nx-trailer: t\r\n\r\nGET")
    assert dec.feed(buf) == b"hello" and dec.done and buf == b"GET"  # pipelined bytes kept
    for bad, status in [(b"1" * 17 + b"\r\n", 400), (b"g\r\n", 400), (b"\r\n", 400),
                        (b"1\r\nabc", 400), (b"1" * 2000, 400),
                        (b"0\r\n" + b"x: y\r\n" * 2000, 431), (b"0\r\nbad trailer\r\n", 400)]:
        with pytest.raises(ProtocolError) as err:
            ChunkedDecoder().feed(bytearray(bad))
        assert err.value.status == status, bad
    dec, buf, got = ChunkedDecoder(), bytearray(), b""
    for byte in b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n":  # one byte at a time
        buf.append(byte)
        got += dec.feed(buf)
    assert got == b"abcde" and dec.done and not buf


CORPUS = [  # heads as real clients send them (curl, httpx/openai SDK, a browser), and bodies
    b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nAccept-Encoding: gzip, "
    b"deflate\r\nConnection: keep-alive\r\nAccept: application/json\r\nContent-Type: "
    b"application/json\r\nUser-Agent: OpenAI/Python 1.54.0\r\nX-Stainless-Lang: python\r\n"
    b"Authorization: Bearer sk-x\r\nContent-Length: 16\r\n\r\n{\"model\": \"m\"}  ",
    b"GET /api/status?x=1&y=%20 HTTP/1.1\r\nHost: mesh\r\nAccept-Language: fr-CH, fr;q=0.9\r\n"
    b"Cookie: a=b; c=d\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\r\n",
    b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4\r\nWiki\r\n5;ext=\"q\"\r\npedia\r\n0\r\nExpires: never\r\n\r\n",
    b"HEAD /healthz HTTP/1.0\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Pad:   spaced\t value \t\r\n\r\n",
]


@pytest.mark.parametrize("raw", CORPUS)
def test_api_http1_corpus_agrees_with_h11(raw: bytes) -> None:
    ours, body = _split(raw)
    theirs = _h11(raw)
    assert theirs is not None
    req, their_body = theirs
    assert (ours.method, ours.target, ours.http_version, ours.headers, body) == (
        req.method, req.target, req.http_version, list(req.headers), their_body)


_TOKEN = st.text("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                 min_size=1, max_size=12).map(str.encode)
_VALUE = st.binary(max_size=20).map(
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7f).strip(b" "))
_OWS = st.sampled_from([b"", b" ", b"\t", b"  "])
_SPECIAL = {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect"}


@st.composite
def valid_requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"PATCH"]) | _TOKEN)
    target = b"/" + draw(st.text("abc/%?=&.-_~:@!$'()*+,;09AZ", max_size=30)).encode()
    fields = [(n, v) for n, v in draw(st.lists(st.tuples(_TOKEN, _VALUE), max_size=8))
              if n.lower() not in _SPECIAL]
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    if version == b"1.1" or draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), (b"Host", b"example"))
    body = draw(st.binary(max_size=64))
    chunked = version == b"1.1" and draw(st.booleans())
    if chunked:
        fields.append((b"Transfer-Encoding", b"chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts if p)
        framed += b"0\r\n" + (b"x-t: 1\r\n" if draw(st.booleans()) else b"") + b"\r\n"
    else:
        fields.append((b"Content-Length", b"%d" % len(body)))
        framed = body
    lines = [b"%s %s HTTP/%s" % (method, target, version)]
    lines += [b"%s:%s%s%s" % (n, draw(_OWS), v, draw(_OWS)) for n, v in fields]
    return b"\r\n".join(lines) + b"\r\n\r\n" + framed


@given(valid_requests())
@fuzz_settings(300)
def test_api_http1_agrees_with_h11(raw: bytes) -> None:
    ours, body = _split(raw)
    theirs = _h11(raw)
    assert theirs is not None, raw
    req, their_body = theirs
    assert (ours.method, ours.target, ours.http_version) == (
        req.method, req.target, req.http_version)
    assert ours.headers == list(req.headers)
    assert body == their_body


@st.composite
def mutated_heads(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(valid_requests()).partition(b"\r\n\r\n")[0])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        kind = draw(st.integers(0, 2))
        byte = draw(st.sampled_from(b"\r\n\t \x00\x7f\x80:,;\x0b") | st.integers(0, 255))
        if kind == 0:
            raw.insert(at, byte)
        elif kind == 1 and at < len(raw):
            del raw[at]
        elif at < len(raw):
            raw[at] = byte
    return bytes(raw)


@given(mutated_heads())
@fuzz_settings(500)
def test_api_http1_never_more_lenient_than_h11(head: bytes) -> None:
    try:
        ours = parse_request(head)
    except ProtocolError as exc:
        assert exc.status in (400, 431, 501, 505)
        return
    theirs = _h11(head + b"\r\n\r\n")
    assert theirs is not None, head  # we took a head h11 refuses
    req = theirs[0]
    assert (ours.method, ours.target) == (req.method, req.target)
    assert ours.headers == list(req.headers)


@given(st.binary(max_size=300) | mutated_heads())
@fuzz_settings(500)
def test_api_http1_fuzz_raises_only_its_own_error(data: bytes) -> None:
    try:
        parse_request(data)
    except ProtocolError:
        pass
    try:
        ChunkedDecoder().feed(bytearray(data))
    except ProtocolError:
        pass


@pytest.mark.parametrize("blank", [b"\t", b" ", b" \t", b"a\t\t"])
def test_http1_refusing_a_blank_run_is_linear_not_quadratic(blank: bytes) -> None:
    """A field of 16 KiB of blanks that ends in a control byte was refused after 0.9 s of
    regex backtracking (an all-blank value's run could be split between the leading and the
    trailing whitespace every way): one request held the node's event loop that long. The
    work must grow with the head, not its square: 8x the bytes may cost at most ~3x the
    linear share (a quadratic pattern costs 64x)."""
    import time

    def cost(n: int) -> float:
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX:" + blank * (n // len(blank)) + b"\x7f"
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            with pytest.raises(http1.ProtocolError):
                http1.parse_request(head)
            best = min(best, time.perf_counter() - t)
        return best

    small, large = cost(2_000), cost(16_000)
    assert large < 24 * small + 0.002, (small, large)
