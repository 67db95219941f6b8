"""A lean HTTP/1.1 client codec (pure): request bytes out, response head and body bytes in.

Why not h11: h11 validated and re-validated every header through regexes and ran a state
machine per event; with the server side it was ~22 % of a mesh hop's CPU (hop_profile.py).
This codec does what one proxied exchange needs and no more: no pipelining, no upgrades.

Rules (RFC 9112; h11's where the RFC leaves a choice):
- head: `HTTP/1.x SSS [reason]`, then `name: value` lines, CRLF or bare LF (as h11 accepts);
  at most MAX_HEAD bytes and MAX_HEADERS lines. Refused (ProtocolError): whitespace before the
  colon or a non-token name (§5.1), obs-fold and control bytes in a value (§5.2), a bad
  status line.
- 1xx other than 101: skipped by the caller (parse_head returns them, informational=True).
- body length (§6.3): HEAD request, 1xx, 204, 304: none; Transfer-Encoding chunked: chunked
  (with Content-Length too: chunked, connection closed after, §6.3 item 3); any other
  Transfer-Encoding: refused (h11 does the same); Content-Length: that many bytes (one value,
  or a list of equal values); otherwise until the server closes.
- chunked (§7.1): hex size of at most 15 digits, extensions ignored, size lines at most
  MAX_LINE bytes, trailers read and dropped (at most MAX_TRAILERS bytes).
- keep-alive: HTTP/1.1 without `Connection: close`, a body framed by length or chunks, read
  to its end with no stray byte after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_HEAD = 64 * 1024  # a backend's head is a few hundred bytes; h11's cap was 16 KiB
MAX_HEADERS = 128
MAX_LINE = 4096  # a chunk-size line with its extensions
MAX_TRAILERS = 16 * 1024

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_EOL = re.compile(rb"\r?\n")
_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: ([\t \x21-\x7e\x80-\xff]*))?")
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([\t \x21-\x7e\x80-\xff]*)")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_NO_BODY_STATUS = frozenset((204, 304))


class ProtocolError(Exception):
    """The server sent something this client does not accept as HTTP/1.1."""


def request_bytes(method: bytes, target: bytes,
                  headers: Iterable[tuple[bytes, bytes, bytes]], body: bytes) -> bytes:
    """The whole request in one buffer from (name, lowercased name, value) headers (httpx's
    own triples); Content-Length set from `body`, any Transfer-Encoding dropped (the body is
    whole). ValueError for CR, LF or NUL in a field."""
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    ends = 2  # the request line and the blank line
    for name, low, value in headers:
        if low == b"content-length" or low == b"transfer-encoding":
            continue
        lines += (name, b": ", value, b"\r\n")
        ends += 1
    if body or method not in (b"GET", b"HEAD"):
        lines += (b"content-length: ", b"%d" % len(body), b"\r\n")
        ends += 1
    lines.append(b"\r\n")
    head = b"".join(lines)
    # each line ends in exactly one CRLF: any other CR, LF or NUL came from a field (injection)
    if head.count(b"\n") != ends or head.count(b"\r") != ends or b"\0" in head:
        raise ValueError("CR, LF or NUL in the request line or a header")
    return head + body


class Body:
    """Body framing: feed() turns received bytes into body bytes; done once complete."""

    __slots__ = ("done", "reusable")

    def __init__(self, done: bool = False) -> None:
        self.done = done
        self.reusable = True  # cleared on stray bytes after the body

    def feed(self, data: bytes) -> bytes:
        """The body bytes in `data` (possibly b""), in order."""
        if data:
            self.reusable = False  # bytes after the end: a confused server
        return b""

    def end(self) -> None:
        """The server closed the connection: ProtocolError if the body is incomplete."""


class _Sized(Body):
    __slots__ = ("_got", "_left")

    def __init__(self, length: int) -> None:
        super().__init__(done=length == 0)
        self._left, self._got = length, 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return super().feed(data)
        if len(data) >= self._left:
            out, rest = data[:self._left], data[self._left:]
            self._left, self.done = 0, True
            super().feed(rest)
            return out
        self._left -= len(data)
        self._got += len(data)
        return data

    def end(self) -> None:
        if not self.done:
            raise ProtocolError("peer closed connection without sending complete message "
                                f"body: received {self._got} bytes, expected "
                                f"{self._got + self._left}")


class _UntilClose(Body):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()
        self.reusable = False

    def feed(self, data: bytes) -> bytes:
        return data

    def end(self) -> None:
        self.done = True


_SIZE, _DATA, _AFTER_DATA, _TRAILER = range(4)


class _Chunked(Body):
    """Chunked transfer coding, state kept across reads: every byte boundary is a valid split."""

    __slots__ = ("_left", "_line", "_state", "_trailer")

    def __init__(self) -> None:
        super().__init__()
        self._state, self._left, self._line, self._trailer = _SIZE, 0, b"", 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return super().feed(data)
        out: list[bytes] = []
        i, n = 0, len(data)
        while i < n and not self.done:
            if self._state == _DATA:
                take = min(self._left, n - i)
                out.append(data if take == n else data[i:i + take])
                i += take
                self._left -= take
                if not self._left:
                    self._state = _AFTER_DATA
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self._line += data[i:]
                if len(self._line) > MAX_LINE:
                    raise ProtocolError("chunk size line too long")
                i = n
                break
            line = self._line + data[i:j] if self._line else data[i:j]
            self._line = b""
            i = j + 1
            self._on_line(line[:-1] if line.endswith(b"\r") else line)
        if i < n:
            super().feed(data[i:])
        return out[0] if len(out) == 1 else b"".join(out)

    def _on_line(self, line: bytes) -> None:
        if len(line) > MAX_LINE:
            raise ProtocolError("chunk size line too long")
        if self._state == _SIZE:
            size = line.split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(size):
                raise ProtocolError(f"bad chunk size {size[:20]!r}")
            self._left = int(size, 16)
            self._state = _DATA if self._left else _TRAILER
        elif self._state == _AFTER_DATA:
            if line:
                raise ProtocolError("chunk data longer than its size")
            self._state = _SIZE
        elif not line:
            self.done = True
        else:
            self._trailer += len(line) + 2
            if self._trailer > MAX_TRAILERS or not _FIELD.fullmatch(line):
                raise ProtocolError("bad or oversized trailer")

    def end(self) -> None:
        if not self.done:
            raise ProtocolError("peer closed connection without sending complete message "
                                "body: incomplete chunked read")


class Head:
    """A parsed response head; `headers` are httpx's own triples (name, lowercased, value)."""

    __slots__ = ("ascii", "body", "headers", "informational", "keep_alive", "reason", "status")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes, bytes]],
                 keep_alive: bool, body: Body, ascii: bool = True) -> None:
        self.status, self.reason, self.headers = status, reason, headers
        self.keep_alive, self.body, self.ascii = keep_alive, body, ascii
        self.informational = 100 <= status < 200 and status != 101


def parse_head(buf: bytes, head_request: bool = False) -> tuple[Head, int] | None:
    """The first response head in `buf` and where it ends; None until it is complete."""
    m = _HEAD_END.search(buf)
    if m is None or m.end() > MAX_HEAD:
        if m is not None or len(buf) > MAX_HEAD:
            raise ProtocolError("response head too large")
        return None
    lines = _EOL.split(buf[:m.start()])
    if len(lines) > MAX_HEADERS + 1:
        raise ProtocolError("too many response headers")
    status = _STATUS.fullmatch(lines[0])
    if status is None:
        raise ProtocolError(f"bad status line {lines[0][:40]!r}")
    code = int(status[2])
    fields = _Fields(lines)
    keep_alive = status[1] == b"1" and not fields.close and code != 101
    body: Body
    if head_request or code in _NO_BODY_STATUS or code < 200:
        body = Body(done=True)
    elif fields.chunked:
        body, keep_alive = _Chunked(), keep_alive and fields.length is None
    elif fields.length is not None:
        body = _Sized(fields.length)
    else:
        body, keep_alive = _UntilClose(), False
    end = m.end()
    return Head(code, status[3] or b"", fields.headers, keep_alive, body,
                buf[:end].isascii()), end


class _Fields:
    """The header lines of a head, and what they say about framing and keep-alive."""

    __slots__ = ("chunked", "close", "headers", "length")

    def __init__(self, lines: list[bytes]) -> None:
        self.headers: list[tuple[bytes, bytes, bytes]] = []
        self.length: int | None = None
        self.chunked = self.close = False
        for line in lines[1:]:
            f = _FIELD.fullmatch(line)
            if f is None:
                raise ProtocolError(f"bad header line {line[:40]!r}")
            name, value = f[1], f[2].strip(b" \t")
            low = name.lower()
            self.headers.append((name, low, value))
            if low == b"content-length":
                self.length = _length(value, self.length)
            elif low == b"transfer-encoding":
                if self.chunked or value.lower() != b"chunked":
                    raise ProtocolError(f"unsupported transfer-encoding {value[:40]!r}")
                self.chunked = True
            elif low == b"connection" and not self.close:
                self.close = b"close" in (t.strip(b" \t") for t in value.lower().split(b","))


def _length(value: bytes, seen: int | None) -> int:
    """Content-Length: digits, or a list of equal values (§8.6); refused otherwise."""
    if seen is None and value.isdigit() and len(value) <= 18:
        return int(value)
    values = {v.strip(b" \t") for v in value.split(b",")}
    v = values.pop() if len(values) == 1 else b""
    if not (v.isdigit() and len(v) <= 18):
        raise ProtocolError(f"bad content-length {value[:20]!r}")
    if seen is not None and seen != int(v):
        raise ProtocolError("conflicting content-length values")
    return int(v)
