"""A strict, pure HTTP/1.1 server core: request heads in, response heads out (RFC 9112).

No I/O, no clock: `parse_request(head)` takes the bytes before a head's blank line and returns
a `Request` or raises `ProtocolError` (with the status to answer: 400, 431, 501 or 505);
`ChunkedDecoder` turns a chunked body into its data with bounds; `response_head` writes a
status line and headers for what the app gave and picks the framing.

Why not h11 (benchmarks/hop_profile.py, issue 16): h11 validated each header with a regex call
of its own and walked its state machine per event, ~21 % of a mesh hop's CPU. Here the whole
head is checked by one compiled regex (`fullmatch`), its fields are taken by one `findall`,
and only the framing headers are looked at in Python.

What is refused (as h11 does, and stricter where smuggling needs it):
- 400: a malformed request line or field line: obs-fold (a line starting with SP/HTAB), a bare
  CR or LF, NUL or other controls, a name that is not a token, space before the colon; a
  missing or repeated Host on HTTP/1.1; a Content-Length that is not 1-19 digits, given
  twice (even with the same value: nginx refuses it too) or beside Transfer-Encoding;
  Transfer-Encoding twice or on HTTP/1.0; a bad chunk size line or a chunk without its CRLF.
- 501: a Transfer-Encoding other than exactly `chunked` (h11's answer too): gzip, identity,
  `gzip, chunked` are codings this server does not implement, so the body cannot be framed.
- 505: HTTP/x.y other than 1.0 and 1.1.
- 431: a head over the cap, more than `MAX_FIELDS` fields, trailers over their cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_FIELDS = 100  # fields per head; h11 has no count cap, nginx none below its size cap
MAX_CHUNK_LINE = 1024  # a chunk-size line with its (ignored) extensions
MAX_TRAILER_BYTES = 8 * 1024  # trailers are read and dropped, up to this much
_MAX_CL_DIGITS = 19  # fits an int64, as nginx's off_t (h11 allows 20)

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"  # RFC 9110 5.6.2 token
_VCHAR = rb"[\x21-\x7e\x80-\xff]"  # field-vchar: VCHAR / obs-text (RFC 9110 5.5)
# A field value and the whitespace after it: the trailing whitespace belongs to a non-empty
# value only, so a run of SP/HTAB can be split one way alone. `:[ \t]*<value>?[ \t]*` could
# split an all-blank value's run anywhere, and a refused 16 KiB head of tabs then took 0.9 s
# of backtracking (a CPU hold of the event loop from one request): now linear.
_VALUE = rb"%s(?:[ \t\x21-\x7e\x80-\xff]*%s)?[ \t]*" % (_VCHAR, _VCHAR)
_FIELD_NC = rb"%s+:[ \t]*(?:%s)?\r\n" % (_TCHAR, _VALUE)
# The whole head in one pass: request-line CRLF *( field-line CRLF ), target as h11's (VCHAR)
_HEAD = re.compile(rb"(%s+) ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])\r\n((?:%s)*)"
                   % (_TCHAR, _FIELD_NC))
_FIELD = re.compile(rb"(%s+):[ \t]*(%s)?\r\n" % (_TCHAR, _VALUE))  # value: trailing blanks kept
_FIELDS = re.compile(rb"(?:%s)*" % _FIELD_NC)
_DIGITS = re.compile(rb"[0-9]{1,%d}" % _MAX_CL_DIGITS)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")
_BAD_OUT = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # controls a response field may not hold
_TOKEN = re.compile(rb"%s+" % _TCHAR)
_NO_BODY = frozenset((204, 304))


class ProtocolError(Exception):
    """A request this server will not take; `status` is the answer (then the connection
    closes)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Request:
    """One parsed request head. Names are lowercased, values stripped (as h11 gives them)."""

    method: bytes
    target: bytes
    http_version: bytes  # b"1.1" or b"1.0"
    headers: list[tuple[bytes, bytes]]
    content_length: int  # 0 when the body is chunked or absent
    chunked: bool
    keep_alive: bool  # what the client asked for (the response may still close)
    expect_continue: bool


def _tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",")}


def parse_request(head: bytes, max_fields: int = MAX_FIELDS) -> Request:
    """`head`: the bytes up to (not including) the CRLF CRLF that ends a request head."""
    if head.count(b"\n") > max_fields:  # before any regex: a count is all it takes
        raise ProtocolError(431, "too many header fields")
    m = _HEAD.fullmatch(head + b"\r\n")
    if m is None:
        raise ProtocolError(400, "malformed request line or header field")
    method, target, version, fields = m.groups()
    if version != b"1.1" and version != b"1.0":
        raise ProtocolError(505, "HTTP version not supported")
    headers = [(n.lower(), v.rstrip(b" \t")) for n, v in _FIELD.findall(fields)]
    if len(headers) > max_fields:
        raise ProtocolError(431, "too many header fields")
    length: bytes | None = None
    te: bytes | None = None
    hosts = 0
    connection: set[bytes] = set()
    expect = False
    for name, value in headers:
        if name == b"content-length":
            if length is not None or _DIGITS.fullmatch(value) is None:
                raise ProtocolError(400, "bad or repeated Content-Length")
            length = value
        elif name == b"transfer-encoding":
            if te is not None:
                raise ProtocolError(400, "repeated Transfer-Encoding")
            te = value
        elif name == b"host":
            hosts += 1
        elif name == b"connection":
            connection |= _tokens(value)
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
    http11 = version == b"1.1"
    if http11 and hosts != 1:
        raise ProtocolError(400, "HTTP/1.1 needs exactly one Host header")
    if te is not None:
        if length is not None:
            raise ProtocolError(400, "both Transfer-Encoding and Content-Length")
        if not http11:
            raise ProtocolError(400, "Transfer-Encoding on HTTP/1.0")
        if te.lower() != b"chunked":
            raise ProtocolError(501, "unsupported Transfer-Encoding")
    keep_alive = (b"close" not in connection if http11 else b"keep-alive" in connection)
    return Request(method, target, version, headers, int(length) if length else 0,
                   te is not None, keep_alive, expect and http11)


class ChunkedDecoder:
    """A chunked body (RFC 9112 7.1), decoded from the front of a buffer as bytes arrive:
    sizes capped at 16 hex digits, extensions ignored, trailers read and dropped (capped)."""

    __slots__ = ("done", "_left", "_state", "_trailer")

    def __init__(self) -> None:
        self.done = False
        self._left = 0  # bytes left in the current chunk
        self._state = 0  # 0 size line, 1 data, 2 the CRLF after data, 3 trailers
        self._trailer = 0  # trailer bytes seen

    def feed(self, buf: bytearray) -> bytes:
        """Take what it can from the front of `buf` (consumed in place); the data decoded,
        possibly b"" (then more bytes are needed, unless `done`)."""
        out: list[bytes] = []
        while not self.done:
            if self._state == 1:
                if not buf:
                    break
                n = min(self._left, len(buf))
                out.append(bytes(buf[:n]))
                del buf[:n]
                self._left -= n
                if self._left:
                    break
                self._state = 2
            elif self._state == 2:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ProtocolError(400, "chunk data without its CRLF")
                del buf[:2]
                self._state = 0
            elif not self._line(buf):
                break
        return b"".join(out)

    def _line(self, buf: bytearray) -> bool:
        """One size line or trailer line from `buf`; False if it has not all arrived."""
        cap = MAX_CHUNK_LINE if self._state == 0 else MAX_TRAILER_BYTES - self._trailer
        end = buf.find(b"\r\n", 0, cap + 2)
        if end < 0:
            if len(buf) > cap:
                raise ProtocolError(400 if self._state == 0 else 431, "chunk line too long")
            return False
        line = bytes(buf[:end])
        del buf[:end + 2]
        if self._state == 3:
            self._trailer += end + 2
            if not line:
                self.done = True
            elif _FIELDS.fullmatch(line + b"\r\n") is None:
                raise ProtocolError(400, "malformed trailer field")
            return True
        m = _CHUNK_SIZE.fullmatch(line)
        if m is None:
            raise ProtocolError(400, "bad chunk size line")
        self._left = int(m.group(1), 16)
        self._state = 1 if self._left else 3
        return True


@dataclass(slots=True)
class Framing:
    """How a response body goes out: `length` bytes (None: chunked or close-delimited),
    `chunked`, `body` (False for HEAD, 204, 304) and whether the connection stays open."""

    length: int | None
    chunked: bool
    body: bool
    keep_alive: bool


def response_head(status: int, headers: Iterable[tuple[bytes, bytes]], reason: bytes,
                  req: Request, date: bytes) -> tuple[bytes, Framing]:
    """The status line and fields for an app's response to `req`, and its framing. Refuses
    (ValueError) a status outside 200-999 and a field name that is not a token or a value
    holding CR, LF, NUL or another control (response splitting)."""
    if type(status) is not int or not 200 <= status <= 999:
        raise ValueError(f"bad response status {status!r}")
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    names: list[bytes] = []
    values: list[bytes] = []
    length: int | None = None
    keep_alive = req.keep_alive
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            if length is not None or _DIGITS.fullmatch(value) is None:
                raise ValueError("bad or repeated Content-Length from the app")
            length = int(value)
        elif lower == b"transfer-encoding":
            continue  # the server frames the body itself
        elif lower == b"connection":
            if b"close" in _tokens(value):
                keep_alive = False
            continue  # written below
        names.append(name)
        values.append(value)
        out.append(b"%s: %s\r\n" % (name, value))
    if not all(names) or _TOKEN.fullmatch(b"".join(names) or b"x") is None:
        raise ValueError("a response header name is not a token")
    if _BAD_OUT.search(b"".join(values)) is not None:
        raise ValueError("a response header value holds CR, LF, NUL or a control")
    body = status not in _NO_BODY and req.method != b"HEAD"
    chunked = False
    if length is None and status not in _NO_BODY:
        if req.http_version == b"1.1":
            chunked = True
            out.append(b"transfer-encoding: chunked\r\n")
        elif body:
            keep_alive = False  # close-delimited (HTTP/1.0 without a length)
    out.append(b"date: %s\r\n" % date)
    if not keep_alive:
        out.append(b"connection: close\r\n\r\n")
    elif req.http_version == b"1.0":
        out.append(b"connection: keep-alive\r\n\r\n")
    else:
        out.append(b"\r\n")
    return b"".join(out), Framing(length, chunked, body, keep_alive)
