"""The GGUF reader's bounded byte cursor (see :func:`orin_console.core.gguf.read_gguf`).

A :class:`Cursor` reads a file front to back in chunks and checks every span against the
file size and :attr:`GGUFLimits.max_header_bytes` before it reads it, so no count or length
taken from the file can make the reader read past the header region or past the end.
Every error it raises is a :class:`~orin_console.core.errors.GGUFError` naming the field.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from orin_console.core.errors import GGUFError
from orin_console.core.gguf.types import GGUFLimits, sanitize

__all__ = ["CHUNK", "U32", "U64", "Cursor"]

CHUNK = 1 << 20
"""How many bytes one read fetches (and the most one bool-array check handles at a time)."""

U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


class Cursor:
    """Sequential reader over a bounded prefix of a file, in chunks, with precise errors.

    Args:
        f: the open file (unbuffered; the cursor seeks it).
        size: the file's size in bytes.
        limits: the reader's limits (the header region's size among them).
        path: the file's path, for errors.
    """

    def __init__(self, f: BinaryIO, size: int, limits: GGUFLimits, path: str) -> None:
        self._f = f
        self.size = size
        self.limits = limits
        self.path = path
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0  # index into buf

    @property
    def offset(self) -> int:
        """The file offset of the next byte to read."""
        return self.base + self.pos

    def error(self, field: str, reason: str) -> GGUFError:
        """Build the error to raise for ``field``, naming this file."""
        # Fields and reasons quote keys and tensor names from the file: keep them printable.
        return GGUFError(sanitize(field), sanitize(reason), self.path)

    def _check_span(self, n: int, field: str, what: str) -> int:
        start = self.base + self.pos
        if start + n > self.size:
            raise self.error(
                field,
                f"{what} needs {n} bytes at offset {start} but the file ends at "
                f"{self.size}; the file is truncated or not a GGUF",
            )
        if start + n > self.limits.max_header_bytes:
            raise self.error(
                "header",
                f"the header region (metadata and tensor infos) would exceed "
                f"{self.limits.max_header_bytes} bytes; refusing to read further",
            )
        return start

    def need(self, n: int, field: str, what: str) -> None:
        """Make ``n`` bytes from the current position available in ``buf``."""
        if self.pos + n <= len(self.buf):
            return
        start = self._check_span(n, field, what)
        # Never buffer past the header limit, so that every access beyond it is checked.
        want = min(max(n, CHUNK), self.size - start, self.limits.max_header_bytes - start)
        self._f.seek(start)
        data = self._f.read(want)
        if len(data) < n:
            raise self.error("file", f"short read at offset {start}; did the file change?")
        self.buf, self.base, self.pos = data, start, 0

    def skip(self, n: int, field: str, what: str) -> None:
        if self.pos + n <= len(self.buf):
            self.pos += n
            return
        start = self._check_span(n, field, what)
        self.buf, self.base, self.pos = b"", start + n, 0

    def seek(self, offset: int) -> None:
        self.buf, self.base, self.pos = b"", offset, 0

    def u32(self, field: str, what: str) -> int:
        self.need(4, field, what)
        (v,) = U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, field: str, what: str) -> int:
        self.need(8, field, what)
        (v,) = U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(v)

    def raw(self, n: int, field: str, what: str) -> bytes:
        self.need(n, field, what)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def string(self, field: str, what: str, max_len: int) -> str:
        """Read a GGUF string (u64 length + UTF-8 bytes)."""
        n = self.u64(field, f"{what} length")
        if n > max_len:
            raise self.error(field, f"{what} is {n} bytes, over the limit of {max_len}")
        data = self.raw(n, field, what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(
                field, f"{what} is not valid UTF-8 (bad byte at position {exc.start})"
            ) from None
