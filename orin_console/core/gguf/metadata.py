"""The GGUF reader's metadata pass: key-value pairs and their values, arrays included.

Part of :func:`orin_console.core.gguf.read_gguf`. Scalars, strings and short arrays are
decoded; long arrays (a vocabulary of 262k strings) are walked and validated, type and
UTF-8 alike, without being kept: a :class:`MetaArray` remembers where they start, so that
the few that are needed later (per-layer hyperparameters) can be read back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from orin_console.core.gguf.cursor import CHUNK, U64, Cursor
from orin_console.core.gguf.types import SCALAR_FORMATS, ValueType

__all__ = ["MetaArray", "MetadataReader", "metadata_value", "type_desc"]

_DEFAULT_ALIGNMENT = 32
_SMALL_ARRAY = 16  # arrays up to this long keep their values


@dataclass(frozen=True)
class MetaArray:
    """A metadata array: element type, count, where its elements start, small values."""

    elem_type: int
    count: int
    offset: int
    values: tuple[object, ...] | None


class MetadataReader:
    """Reads the header's key-value pairs through a :class:`Cursor`, checking each one.

    Args:
        cur: the cursor, positioned at the first key-value pair.
    """

    def __init__(self, cur: Cursor) -> None:
        self.cur = cur
        self.limits = cur.limits
        self.kv: dict[str, tuple[int, object]] = {}
        """Every pair read so far, in file order: key -> (value type, value)."""

    def read_kv(self, i: int) -> None:
        """Read key-value pair ``i`` at the cursor into :attr:`kv`; refuse a duplicate key."""
        cur = self.cur
        kfield = f"kv[{i}].key"
        n = cur.u64(kfield, "key length")
        if n == 0:
            raise cur.error(kfield, "empty key")
        if n > self.limits.max_key_len:
            raise cur.error(
                kfield, f"key is {n} bytes, over the limit of {self.limits.max_key_len}"
            )
        data = cur.raw(n, kfield, "key")
        try:
            key = data.decode("utf-8")
        except UnicodeDecodeError:
            raise cur.error(kfield, f"key is not valid UTF-8: {data[:64]!r}") from None
        if key in self.kv:
            first = list(self.kv).index(key)
            raise cur.error(key, f"duplicate key (kv[{i}] repeats kv[{first}])")
        vtype = cur.u32(key, "value type")
        self.kv[key] = (vtype, self._read_value(vtype, key))

    def _read_value(self, vtype: int, key: str) -> object:
        cur = self.cur
        if vtype == ValueType.STRING:
            return cur.string(key, "string value", self.limits.max_string_len)
        if vtype == ValueType.ARRAY:
            return self._read_array(key)
        fmt = SCALAR_FORMATS.get(vtype)
        if fmt is None:
            raise cur.error(key, f"unknown value type {vtype} (valid types are 0..12)")
        fmt_s, size = fmt
        cur.need(size, key, "value")
        (value,) = struct.unpack_from(fmt_s, cur.buf, cur.pos)
        cur.pos += size
        if vtype == ValueType.BOOL:
            if value > 1:
                raise cur.error(key, f"bool value is {value}; only 0 and 1 are valid")
            return bool(value)
        return value

    def _read_array(self, key: str) -> MetaArray:
        cur = self.cur
        elem_type = cur.u32(key, "array element type")
        if elem_type == ValueType.ARRAY:
            raise cur.error(key, "nested arrays (array of array) are not supported")
        if elem_type != ValueType.STRING and elem_type not in SCALAR_FORMATS:
            raise cur.error(key, f"unknown array element type {elem_type} (valid: 0..8, 10..12)")
        count = cur.u64(key, "array length")
        if count > self.limits.max_array_len:
            raise cur.error(
                key, f"array of {count} elements exceeds the limit of {self.limits.max_array_len}"
            )
        elem_min = 8 if elem_type == ValueType.STRING else SCALAR_FORMATS[elem_type][1]
        remaining = cur.size - cur.offset
        if count * elem_min > remaining:
            raise cur.error(
                key,
                f"array of {count} {ValueType(elem_type).name.lower()} needs at least "
                f"{count * elem_min} bytes but only {remaining} remain; the file is truncated",
            )
        start = cur.offset
        if count <= _SMALL_ARRAY:
            values = tuple(self._read_value(elem_type, f"{key}[{j}]") for j in range(count))
            return MetaArray(elem_type, count, start, values)
        if elem_type == ValueType.STRING:
            self._skip_strings(key, count)
        elif elem_type == ValueType.BOOL:
            self._check_bools(key, count)
        else:
            cur.skip(count * elem_min, key, f"array of {count} elements")
        return MetaArray(elem_type, count, start, None)

    def _check_bools(self, key: str, count: int) -> None:
        cur = self.cur
        left = count
        while left:
            n = min(left, CHUNK)
            data = cur.raw(n, key, "bool array")
            if data.translate(None, b"\x00\x01"):
                raise cur.error(key, "bool array holds a value other than 0 or 1")
            left -= n

    def _skip_strings(self, key: str, count: int) -> None:
        """Walk (and validate) a long array of strings without keeping them."""
        cur = self.cur
        limit = self.limits.max_string_len
        left = count
        while left:
            buf, pos = cur.buf, cur.pos
            longs: list[int] = []
            first = count - left
            pos, left = _walk_strings(buf, pos, left, limit, longs)
            self._check_utf8_segment(key, buf, cur.pos, pos, longs, first)
            cur.pos = pos
            if left:
                # One element across the buffer edge (or a bad one): the careful path.
                cur.string(f"{key}[{count - left}]", "string element", limit)
                left -= 1

    def _check_utf8_segment(
        self, key: str, buf: bytes, start: int, end: int, longs: list[int], first: int
    ) -> None:
        """Validate the strings packed in ``buf[start:end]`` (u64 length + bytes each).

        A length below 128 is eight ASCII bytes, so a run of such elements is valid UTF-8
        exactly when each of its strings is, and one C-level decode checks the whole run.
        The rare longer strings (``longs``: where their length field starts) are checked
        on their own. Only when a check fails are the elements walked one by one to name
        the bad one.
        """
        runs: list[tuple[int, int]] = []
        pos = start
        for p in longs:
            runs.append((pos, p))
            (n,) = U64.unpack_from(buf, p)
            runs.append((p + 8, p + 8 + n))
            pos = p + 8 + n
        runs.append((pos, end))
        for a, b in runs:
            chunk = buf[a:b]
            if chunk.isascii():
                continue
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                self._find_bad_string(key, buf, start, end, first)
        return

    def _find_bad_string(self, key: str, buf: bytes, start: int, end: int, first: int) -> None:
        pos, j = start, first
        while pos < end:
            (n,) = U64.unpack_from(buf, pos)
            try:
                buf[pos + 8 : pos + 8 + n].decode("utf-8")
            except UnicodeDecodeError:
                raise self.cur.error(f"{key}[{j}]", "string element is not valid UTF-8") from None
            pos += 8 + n
            j += 1
        raise self.cur.error(key, "string array is not valid UTF-8")  # pragma: no cover

    def alignment(self) -> int:
        """Return ``general.alignment`` (a nonzero power of two) or the GGUF default, 32."""
        entry = self.kv.get("general.alignment")
        if entry is None:
            return _DEFAULT_ALIGNMENT
        vtype, value = entry
        if vtype != ValueType.UINT32:
            raise self.cur.error(
                "general.alignment", f"must be uint32, found {type_desc(vtype, value)}"
            )
        assert isinstance(value, int)
        if value == 0 or value & (value - 1):
            raise self.cur.error("general.alignment", f"{value} is not a nonzero power of two")
        return value


def _walk_strings(buf: bytes, pos: int, left: int, limit: int, longs: list[int]) -> tuple[int, int]:
    """Skip over packed GGUF strings in ``buf`` from ``pos`` while they fit entirely.

    This is the hot loop for vocabularies (262k strings), so it works in blocks: when
    ``k`` short elements (under 128 bytes, and within ``limit``) cannot pass the end of
    the buffer, as each takes at most 8 + 127 bytes, the block runs without bounds checks.

    Args:
        buf: the buffer.
        pos: where the next element's length field starts.
        left: elements still to skip.
        limit: the largest string length allowed.
        longs: receives the position of every element of 128 bytes or more.

    Returns:
        The position after the last element skipped and the number of elements left.
        Stops early at an element that crosses the end of ``buf`` or is over ``limit``.
    """
    unpack = U64.unpack_from
    end = len(buf)
    short = min(128, limit + 1)  # lengths below this need no further check
    n = 0
    while left:
        k = min(left, (end - pos) // 136)
        if k:
            j = 0
            for j in range(k):  # noqa: B007 - j, after a break, counts the strings passed
                (n,) = unpack(buf, pos)
                if n >= short:
                    break
                pos += 8 + n
            else:
                left -= k
                continue
            left -= j
        else:
            if pos + 8 > end:
                break
            (n,) = unpack(buf, pos)
        if n > limit or pos + 8 + n > end:
            break
        if n >= 128:
            longs.append(pos)
        pos += 8 + n
        left -= 1
    return pos, left


def type_desc(vtype: int, value: object) -> str:
    """Describe a value's GGUF type for an error message (``"uint32"``, ``"array of int32"``)."""
    if isinstance(value, MetaArray):
        return f"array of {ValueType(value.elem_type).name.lower()}"
    try:
        return ValueType(vtype).name.lower()
    except ValueError:
        return f"type {vtype}"


def metadata_value(value: object) -> object:
    """Return a value as :attr:`GGUFInfo.metadata` holds it: a long array as a summary."""
    if isinstance(value, MetaArray):
        if value.values is not None:
            return value.values
        return f"<array of {value.count} {ValueType(value.elem_type).name.lower()}>"
    return value
