"""A model file's content identity: a sha256 digest over the sha256 of each 16 MiB chunk.

digest = sha256(sha256(chunk 0) || sha256(chunk 1) || ...), the construction of Dropbox's
`content_hash` (4 MiB blocks there): a one-level hash tree. Why not the plain sha256 of the
file: (1) the chunk list a holder serves is checked against the digest before one byte of the
file is fetched, so a corrupted chunk is found and fetched again on its own, and a lying holder
cannot make a fetcher accept anything; (2) each byte is hashed once, not once for the chunk and
once for the file (sha256 runs at ~340 MB/s on this project's 2-core machines: a second pass
would cost as much as the transfer itself). Same digest, same model, whatever the file name.

Pure: hashing works on byte chunks handed in; every function over a `Manifest` is arithmetic.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

CHUNK_BYTES = 16 * 1024 * 1024  # 16 MiB: 16 chunks for the 253 MB demo, 4,400 for 70 GB
DIGEST_RE = re.compile(r"[0-9a-f]{64}")
MAX_CHUNKS = 1 << 17  # 2 TiB at 16 MiB: a served list past this is refused


class ManifestError(ValueError):
    """A chunk list that does not describe a file of its size."""


@dataclass(frozen=True)
class Manifest:
    """What a holder says about one file: its digest, size and the sha256 of each chunk."""

    digest: str
    size: int
    chunk_bytes: int
    chunks: tuple[str, ...]

    def __post_init__(self) -> None:
        if not DIGEST_RE.fullmatch(self.digest):
            raise ManifestError("digest is not 64 hex digits")
        if self.size < 0 or self.chunk_bytes <= 0 or len(self.chunks) > MAX_CHUNKS:
            raise ManifestError("size, chunk size or chunk count out of range")
        if len(self.chunks) != n_chunks(self.size, self.chunk_bytes):
            raise ManifestError(f"{len(self.chunks)} chunk hashes for a file of {self.size} bytes")
        if not all(DIGEST_RE.fullmatch(c) for c in self.chunks):
            raise ManifestError("a chunk hash is not 64 hex digits")
        if tree_digest(self.chunks) != self.digest:
            raise ManifestError("the chunk hashes do not make the digest")

    def bounds(self, index: int) -> tuple[int, int]:
        """[start, end) of chunk `index`."""
        start = index * self.chunk_bytes
        return start, min(self.size, start + self.chunk_bytes)

    def chunk_of(self, offset: int) -> int:
        """The chunk that byte `offset` falls in."""
        return offset // self.chunk_bytes

    def to_json(self) -> dict[str, object]:
        return {"digest": self.digest, "size": self.size, "chunk_bytes": self.chunk_bytes,
                "chunks": list(self.chunks)}

    @classmethod
    def from_json(cls, doc: object) -> Manifest:
        """The manifest a peer served; ManifestError when it is not one."""
        if not isinstance(doc, dict):
            raise ManifestError("not an object")
        try:
            chunks = doc["chunks"]
            if not isinstance(chunks, list) or len(chunks) > MAX_CHUNKS:
                raise ManifestError("chunks is not a bounded list")
            size, cb = doc["size"], doc["chunk_bytes"]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, cb)):
                raise ManifestError("size and chunk_bytes must be integers")
            return cls(str(doc["digest"]), size, cb, tuple(str(c) for c in chunks))
        except KeyError as exc:
            raise ManifestError(f"missing {exc}") from None


def tree_digest(chunks: tuple[str, ...] | list[str]) -> str:
    """The digest of a file whose chunks hash to `chunks` (hex), in order."""
    return hashlib.sha256(b"".join(bytes.fromhex(c) for c in chunks)).hexdigest()


def chunk_hash(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def n_chunks(size: int, chunk_bytes: int) -> int:
    """How many chunks a file of `size` bytes has (an empty file has none)."""
    return -(-size // chunk_bytes)


class Hasher:
    """Feeds bytes, in file order, once into the current chunk's hash."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes
        self._chunk = hashlib.sha256()
        self._in_chunk = 0
        self.chunks: list[str] = []
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self.size += len(view)
        while len(view):
            room = self.chunk_bytes - self._in_chunk
            part, view = view[:room], view[room:]
            self._chunk.update(part)
            self._in_chunk += len(part)
            if self._in_chunk == self.chunk_bytes:
                self.chunks.append(self._chunk.hexdigest())
                self._chunk, self._in_chunk = hashlib.sha256(), 0

    def manifest(self) -> Manifest:
        chunks = self.chunks + ([self._chunk.hexdigest()] if self._in_chunk else [])
        return Manifest(tree_digest(chunks), self.size, self.chunk_bytes, tuple(chunks))


def mlx_manifest_text(files: list[tuple[str, int, str]]) -> bytes:
    """The manifest an MLX folder's digest is the sha256 of: one line per file, sorted by
    relative path: `path<TAB>size<TAB>sha256`."""
    return "".join(f"{p}\t{n}\t{h}\n" for p, n, h in sorted(files)).encode()


# --- HTTP Range, as the blob endpoint reads it (RFC 9110 section 14) --------------------------

_RANGE_RE = re.compile(r"bytes=(\d{1,19})-(\d{0,19})")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) a Range header asks of a `size`-byte file; None: the whole file.
    One range only (a fetcher asks for one); ValueError: unsatisfiable (answer 416)."""
    if header is None:
        return None
    m = _RANGE_RE.fullmatch(header.strip())
    if m is None:
        raise ValueError("only one range bytes=a-[b] is served")
    start = int(m.group(1))
    end = int(m.group(2)) + 1 if m.group(2) else size
    end = min(end, size)
    if start >= size or end <= start:
        raise ValueError(f"range {header} outside a file of {size} bytes")
    return start, end
