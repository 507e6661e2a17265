"""Bounded GGUF reader: validates a model file from its header alone, before llama.cpp sees it.

The reader seeks and reads only the header region (header, metadata, tensor infos), in
bounded chunks, and checks every count, length and offset against the real file size and
against :class:`GGUFLimits` before using it. It never reads or maps the tensor data, so it
answers in milliseconds for multi-gigabyte files. Whatever the input, it either returns a
:class:`GGUFInfo` or raises :class:`~orin_console.core.errors.GGUFError` whose ``field``
names the offending part.

Example:
    >>> info = read_gguf("models/SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    >>> info.architecture, info.block_count, info.quantization       # doctest: +SKIP
    ('llama', 30, 'Q4_1')
"""

from __future__ import annotations

import os
import stat
import struct
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO

from gguf.constants import MODEL_ARCH_NAMES

from orin_console.core.errors import GGUFError
from orin_console.core.gguf_types import (
    FLOAT_TYPES,
    INT64_MAX,
    INTEGER_TYPES,
    REMOVED_GGML_TYPES,
    SCALAR_FORMATS,
    GGUFInfo,
    GGUFLimits,
    TensorInfo,
    ValueType,
    ftype_name,
    ggml_type_name,
    ggml_type_sizes,
    sanitize,
)

__all__ = ["DEFAULT_LIMITS", "GGUFInfo", "GGUFLimits", "TensorInfo", "read_gguf", "sanitize"]

_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_CHUNK = 1 << 20
_SMALL_ARRAY = 16

# Smallest possible encodings, used to refuse counts the file cannot hold.
_MIN_KV_BYTES = 8 + 1 + 4 + 1  # key length, 1-byte key, value type, 1-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8  # name len, name, n_dims, 1 dim, type, offset

# Architectures llama.cpp knows; their files must say how many layers they have.
# "clip" (multimodal projectors) keeps its layer count under other keys.
_LLM_ARCHS = frozenset(MODEL_ARCH_NAMES.values()) - {"clip"}

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class _Array:
    """A metadata array: element type, count, where its elements start, small values."""

    elem_type: int
    count: int
    offset: int
    values: tuple[object, ...] | None


class _Cursor:
    """Sequential reader over a bounded prefix of a file, in chunks, with precise errors."""

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
        return self.base + self.pos

    def error(self, field: str, reason: str) -> GGUFError:
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
        want = min(max(n, _CHUNK), self.size - start, self.limits.max_header_bytes - start)
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
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, field: str, what: str) -> int:
        self.need(8, field, what)
        (v,) = _U64.unpack_from(self.buf, self.pos)
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


DEFAULT_LIMITS = GGUFLimits()


def read_gguf(path: str | os.PathLike[str], limits: GGUFLimits = DEFAULT_LIMITS) -> GGUFInfo:
    """Validate a GGUF file from its header and return what it describes.

    Args:
        path: the model file.
        limits: hard limits on counts and sizes; the defaults suit every real model.

    Returns:
        The validated header facts.

    Raises:
        GGUFError: the file cannot be read or is not a GGUF this reader accepts; ``field``
            names the header field, key or tensor at fault.
    """
    spath = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not hang; it is refused just below.
        fd = os.open(spath, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise GGUFError("file", f"cannot open: {exc.strerror or exc}", spath) from None
    try:
        with os.fdopen(fd, "rb", buffering=0) as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise GGUFError("file", "not a regular file", spath)
            return _Parser(_Cursor(f, st.st_size, limits, spath)).parse()
    except OSError as exc:
        raise GGUFError("file", f"read failed: {exc.strerror or exc}", spath) from None
    except (MemoryError, RecursionError) as exc:  # pragma: no cover - defensive
        raise GGUFError("file", f"could not be parsed: {type(exc).__name__}", spath) from None


class _Parser:
    def __init__(self, cur: _Cursor) -> None:
        self.cur = cur
        self.limits = cur.limits
        self.kv: dict[str, tuple[int, object]] = {}
        self._tensor_names: dict[str, int] = {}

    # ---- header -------------------------------------------------------------------

    def parse(self) -> GGUFInfo:
        cur = self.cur
        if cur.size == 0:
            raise cur.error("file", "the file is empty (0 bytes)")
        cur.need(min(cur.size, 4), "magic", "magic")
        if cur.buf[:4] != _MAGIC:
            got = cur.buf[:4]
            raise cur.error(
                "magic", f"expected b'GGUF' at offset 0, found {got!r}; not a GGUF file"
            )
        cur.pos = 4
        version = cur.u32("version", "version")
        if version not in _SUPPORTED_VERSIONS:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            if swapped in (1, 2, 3):
                raise cur.error(
                    "version",
                    f"version reads as {version:#010x}, i.e. {swapped} byte-swapped: "
                    "big-endian GGUF is not supported; convert the model on a little-endian host",
                )
            raise cur.error(
                "version", f"version {version} is not supported (only GGUF v2 and v3 are)"
            )
        n_tensors = cur.u64("n_tensors", "tensor count")
        n_kv = cur.u64("n_kv", "metadata count")
        remaining = cur.size - cur.offset
        if n_tensors > self.limits.max_tensors:
            raise cur.error(
                "n_tensors",
                f"n_tensors = {n_tensors} exceeds the limit of {self.limits.max_tensors}",
            )
        if n_tensors * _MIN_TENSOR_INFO_BYTES > remaining:
            raise cur.error(
                "n_tensors",
                f"n_tensors = {n_tensors} but only {remaining} bytes remain; "
                "the file is truncated or not a GGUF",
            )
        if n_kv > self.limits.max_kv:
            raise cur.error("n_kv", f"n_kv = {n_kv} exceeds the limit of {self.limits.max_kv}")
        if n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES > remaining:
            raise cur.error(
                "n_kv",
                f"n_kv = {n_kv} (with {n_tensors} tensors) but only {remaining} bytes "
                "remain; the file is truncated or not a GGUF",
            )

        for i in range(n_kv):
            self._read_kv(i)
        alignment = self._alignment()
        tensors_raw = [self._read_tensor_info(i) for i in range(n_tensors)]
        header_end = cur.offset
        data_offset = -(-header_end // alignment) * alignment
        tensors = self._check_tensor_layout(tensors_raw, alignment, data_offset)
        return self._build_info(version, alignment, n_kv, data_offset, tensors)

    # ---- metadata -----------------------------------------------------------------

    def _read_kv(self, i: int) -> None:
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

    def _read_array(self, key: str) -> _Array:
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
            return _Array(elem_type, count, start, values)
        if elem_type == ValueType.STRING:
            self._skip_strings(key, count)
        elif elem_type == ValueType.BOOL:
            self._check_bools(key, count)
        else:
            cur.skip(count * elem_min, key, f"array of {count} elements")
        return _Array(elem_type, count, start, None)

    def _check_bools(self, key: str, count: int) -> None:
        cur = self.cur
        left = count
        while left:
            n = min(left, _CHUNK)
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
            (n,) = _U64.unpack_from(buf, p)
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
            (n,) = _U64.unpack_from(buf, pos)
            try:
                buf[pos + 8 : pos + 8 + n].decode("utf-8")
            except UnicodeDecodeError:
                raise self.cur.error(f"{key}[{j}]", "string element is not valid UTF-8") from None
            pos += 8 + n
            j += 1
        raise self.cur.error(key, "string array is not valid UTF-8")  # pragma: no cover

    def _alignment(self) -> int:
        entry = self.kv.get("general.alignment")
        if entry is None:
            return _DEFAULT_ALIGNMENT
        vtype, value = entry
        if vtype != ValueType.UINT32:
            raise self.cur.error(
                "general.alignment", f"must be uint32, found {_type_desc(vtype, value)}"
            )
        assert isinstance(value, int)
        if value == 0 or value & (value - 1):
            raise self.cur.error("general.alignment", f"{value} is not a nonzero power of two")
        return value

    # ---- tensor infos -------------------------------------------------------------

    def _read_tensor_info(self, i: int) -> tuple[str, tuple[int, ...], int, int, int]:
        cur = self.cur
        lim = self.limits
        nfield = f"tensor[{i}].name"
        n = cur.u64(nfield, "tensor name length")
        if n == 0:
            raise cur.error(nfield, "empty tensor name")
        if n >= lim.max_tensor_name:
            raise cur.error(
                nfield,
                f"tensor name is {n} bytes; ggml allows at most {lim.max_tensor_name - 1}",
            )
        data = cur.raw(n, nfield, "tensor name")
        try:
            name = data.decode("utf-8")
        except UnicodeDecodeError:
            raise cur.error(nfield, f"tensor name is not valid UTF-8: {data!r}") from None
        if name in self._tensor_names:
            raise cur.error(
                f"tensor[{name}].name",
                f"duplicate tensor name (tensor[{i}] repeats tensor[{self._tensor_names[name]}])",
            )
        self._tensor_names[name] = i
        tf = f"tensor[{name}]"
        n_dims = cur.u32(f"{tf}.n_dims", "n_dims")
        if n_dims == 0 or n_dims > lim.max_dims:
            raise cur.error(f"{tf}.n_dims", f"n_dims = {n_dims}; must be 1..{lim.max_dims}")
        dims = tuple(cur.u64(f"{tf}.dims", "dimension") for _ in range(n_dims))
        n_elements = 1
        for k, d in enumerate(dims):
            if d > INT64_MAX:
                raise cur.error(f"{tf}.dims", f"dimension {k} is {d}, negative as int64")
            if d == 0:
                raise cur.error(f"{tf}.dims", f"dimension {k} is 0; every dimension must be >= 1")
            n_elements *= d
            if n_elements > INT64_MAX:
                raise cur.error(f"{tf}.dims", f"dimensions {dims} overflow int64 elements")
        ggml_type = cur.u32(f"{tf}.type", "ggml type")
        sizes = ggml_type_sizes(ggml_type)
        if sizes is None:
            if ggml_type in REMOVED_GGML_TYPES:
                reason = (
                    f"ggml type {ggml_type} ({REMOVED_GGML_TYPES[ggml_type]}) was removed "
                    "from ggml; re-quantize or re-download the model"
                )
            else:
                reason = f"unknown ggml type {ggml_type}"
            raise cur.error(f"{tf}.type", reason)
        block, type_size = sizes
        if dims[0] % block:
            raise cur.error(
                f"{tf}.dims",
                f"row size {dims[0]} is not a multiple of the {ggml_type_name(ggml_type)} "
                f"block size {block}",
            )
        n_bytes = n_elements // block * type_size
        if n_bytes > INT64_MAX:
            raise cur.error(f"{tf}.dims", f"tensor of {n_bytes} bytes overflows int64")
        offset = cur.u64(f"{tf}.offset", "tensor offset")
        return name, dims, ggml_type, offset, n_bytes

    def _check_tensor_layout(
        self,
        raw: list[tuple[str, tuple[int, ...], int, int, int]],
        alignment: int,
        data_offset: int,
    ) -> tuple[TensorInfo, ...]:
        cur = self.cur
        data_size = cur.size - data_offset
        prev_name, prev_off, prev_end = "", 0, 0
        for name, _dims, _t, offset, n_bytes in raw:
            field = f"tensor[{name}].offset"
            if offset % alignment:
                raise cur.error(
                    field, f"offset {offset} is not a multiple of the alignment {alignment}"
                )
            if offset < prev_end:
                what = "is out of order: it comes before" if offset < prev_off else "overlaps"
                raise cur.error(
                    field,
                    f"offset {offset} {what} tensor '{prev_name}' "
                    f"(data bytes {prev_off}..{prev_end}); tensors must be stored in order",
                )
            prev_name, prev_off, prev_end = name, offset, offset + n_bytes
        required = prev_end
        if raw and data_offset + required > cur.size:
            expected = 0
            for name, _dims, _t, offset, n_bytes in raw:
                if offset + n_bytes > data_size:
                    if offset != expected:
                        raise cur.error(
                            f"tensor[{name}].offset",
                            f"tensor '{name}' at data offset {offset} with {n_bytes} bytes ends "
                            "past the end of the file "
                            f"(data section has {max(data_size, 0)} bytes)",
                        )
                    break
                expected = -(-(offset + n_bytes) // alignment) * alignment
            raise cur.error(
                "tensor_data",
                f"tensors need {required} bytes of data from offset {data_offset} but the file "
                f"has {max(data_size, 0)}; the file is truncated (expected at least "
                f"{data_offset + required} bytes, found {cur.size})",
            )
        return tuple(
            TensorInfo(name, dims, t, ggml_type_name(t), offset, n_bytes)
            for name, dims, t, offset, n_bytes in raw
        )

    # ---- interpretation -----------------------------------------------------------

    def _build_info(
        self,
        version: int,
        alignment: int,
        n_kv: int,
        data_offset: int,
        tensors: tuple[TensorInfo, ...],
    ) -> GGUFInfo:
        h = _Hparams(self)
        arch = h.architecture()
        blocks = h.integer(
            f"{arch}.block_count", 1, self.limits.max_block_count, arch in _LLM_ARCHS
        )
        embd = h.integer(f"{arch}.embedding_length", 1, 1 << 20)
        ff, ff_layers = h.per_layer(f"{arch}.feed_forward_length", 0, 1 << 24, blocks)
        heads, heads_layers = h.per_layer(f"{arch}.attention.head_count", 0, 1 << 16, blocks)
        kv_heads, kv_layers = h.per_layer(f"{arch}.attention.head_count_kv", 0, 1 << 16, blocks)
        h.check_gqa(arch, heads, heads_layers, kv_heads, kv_layers)
        if kv_heads is None:
            kv_heads = heads
        key_len = h.integer(f"{arch}.attention.key_length", 1, 1 << 16)
        value_len = h.integer(f"{arch}.attention.value_length", 1, 1 << 16)
        if embd is not None and heads:
            if (key_len is None or value_len is None) and embd % heads:
                raise self.cur.error(
                    f"{arch}.embedding_length",
                    f"{embd} is not a multiple of head_count {heads} and the file gives no "
                    "attention.key_length/value_length",
                )
            key_len = embd // heads if key_len is None else key_len
            value_len = embd // heads if value_len is None else value_len
        experts = h.integer(f"{arch}.expert_count", 0, self.limits.max_experts)
        experts_used = h.integer(f"{arch}.expert_used_count", 0, self.limits.max_experts)
        h.check_experts(arch, experts, experts_used)
        file_type = h.integer("general.file_type", 0, (1 << 32) - 1)
        quant = ftype_name(file_type) if file_type is not None else None
        if quant is None:
            quant = _dominant_type(tensors)
        vocab = h.vocab_size(arch)
        name = h.string("general.name")
        return GGUFInfo(
            path=self.cur.path,
            file_size=self.cur.size,
            version=version,
            alignment=alignment,
            n_tensors=len(tensors),
            n_kv=n_kv,
            data_offset=data_offset,
            architecture=arch,
            name=sanitize(name) if name is not None else None,
            block_count=blocks,
            embedding_length=embd,
            feed_forward_length=ff,
            feed_forward_length_per_layer=ff_layers,
            head_count=heads,
            head_count_per_layer=heads_layers,
            head_count_kv=kv_heads,
            head_count_kv_per_layer=kv_layers,
            key_length=key_len,
            value_length=value_len,
            context_length=h.integer(f"{arch}.context_length", 1, (1 << 32) - 1),
            sliding_window=h.integer(f"{arch}.attention.sliding_window", 0, (1 << 32) - 1),
            sliding_window_pattern=h.swa_pattern(
                f"{arch}.attention.sliding_window_pattern", blocks
            ),
            rope_freq_base=h.number(f"{arch}.rope.freq_base"),
            rope_dimension_count=h.integer(f"{arch}.rope.dimension_count", 0, 1 << 16),
            expert_count=experts,
            expert_used_count=experts_used,
            file_type=file_type,
            quantization=quant,
            tensor_data_size=sum(t.n_bytes for t in tensors),
            n_params=sum(t.n_elements for t in tensors),
            vocab_size=vocab,
            tokenizer_model=h.string("tokenizer.ggml.model"),
            chat_template=h.string("tokenizer.chat_template"),
            tensors=tensors,
            metadata={k: _metadata_value(v) for k, (_t, v) in self.kv.items()},
        )


class _Hparams:
    """Typed, range-checked access to the metadata once it has been read."""

    def __init__(self, parser: _Parser) -> None:
        self.p = parser
        self.kv = parser.kv
        self.cur = parser.cur

    def architecture(self) -> str:
        entry = self.kv.get("general.architecture")
        if entry is None:
            raise self.cur.error("general.architecture", "required key is missing")
        vtype, value = entry
        if vtype != ValueType.STRING or not isinstance(value, str):
            raise self.cur.error(
                "general.architecture", f"must be a string, found {_type_desc(vtype, value)}"
            )
        ok = 0 < len(value) <= 64 and all(
            c.isascii() and (c.isalnum() or c in "_-.") for c in value
        )
        if not ok:
            raise self.cur.error(
                "general.architecture",
                f"{sanitize(value[:64])!r} is not an architecture name "
                "(expected 1-64 ASCII letters, digits, '_', '-', '.')",
            )
        return value

    def string(self, key: str) -> str | None:
        entry = self.kv.get(key)
        if entry is None:
            return None
        vtype, value = entry
        if vtype != ValueType.STRING or not isinstance(value, str):
            raise self.cur.error(key, f"must be a string, found {_type_desc(vtype, value)}")
        return value

    def number(self, key: str) -> float | None:
        entry = self.kv.get(key)
        if entry is None:
            return None
        vtype, value = entry
        if vtype not in FLOAT_TYPES and vtype not in INTEGER_TYPES:
            raise self.cur.error(key, f"must be a number, found {_type_desc(vtype, value)}")
        assert isinstance(value, (int, float))
        return float(value)

    def integer(self, key: str, lo: int, hi: int, required: bool = False) -> int | None:
        entry = self.kv.get(key)
        if entry is None:
            if required:
                raise self.cur.error(key, "required key is missing")
            return None
        vtype, value = entry
        if vtype not in INTEGER_TYPES or not isinstance(value, int):
            raise self.cur.error(key, f"must be an integer, found {_type_desc(vtype, value)}")
        if not lo <= value <= hi:
            raise self.cur.error(key, f"{value} is outside the sane range {lo}..{hi}")
        return value

    def _layer_array(self, key: str, arr: _Array, blocks: int | None) -> tuple[int, ...]:
        if blocks is None or arr.count != blocks:
            raise self.cur.error(
                key, f"per-layer array has {arr.count} elements but block_count is {blocks}"
            )
        if arr.values is not None:
            return tuple(int(v) for v in arr.values if isinstance(v, int))
        fmt_s, size = SCALAR_FORMATS[arr.elem_type]
        self.cur.seek(arr.offset)
        data = self.cur.raw(size * arr.count, key, "per-layer array")
        return tuple(int(v) for (v,) in struct.iter_unpack(fmt_s, data))

    def per_layer(
        self, key: str, lo: int, hi: int, blocks: int | None
    ) -> tuple[int | None, tuple[int, ...] | None]:
        entry = self.kv.get(key)
        if entry is None or entry[0] != ValueType.ARRAY:
            return self.integer(key, lo, hi), None
        arr = entry[1]
        assert isinstance(arr, _Array)
        if arr.elem_type not in INTEGER_TYPES:
            raise self.cur.error(
                key,
                "per-layer array must hold integers, found "
                f"{ValueType(arr.elem_type).name.lower()}",
            )
        values = self._layer_array(key, arr, blocks)
        for j, v in enumerate(values):
            if not lo <= v <= hi:
                raise self.cur.error(key, f"layer {j}: {v} is outside the sane range {lo}..{hi}")
        return max(values), values

    def swa_pattern(self, key: str, blocks: int | None) -> int | tuple[bool, ...] | None:
        entry = self.kv.get(key)
        if entry is None or entry[0] != ValueType.ARRAY:
            return self.integer(key, 0, 1 << 16)
        arr = entry[1]
        assert isinstance(arr, _Array)
        if arr.elem_type != ValueType.BOOL:
            raise self.cur.error(key, "per-layer sliding window pattern must be an array of bool")
        return tuple(bool(v) for v in self._layer_array(key, arr, blocks))

    def check_gqa(
        self,
        arch: str,
        heads: int | None,
        heads_layers: tuple[int, ...] | None,
        kv_heads: int | None,
        kv_layers: tuple[int, ...] | None,
    ) -> None:
        if kv_heads is None or heads is None:
            return
        n = len(heads_layers or kv_layers or (0,))
        hl = heads_layers or (heads,) * n
        kl = kv_layers or (kv_heads,) * n
        for j, (h, k) in enumerate(zip(hl, kl, strict=True)):
            where = f"layer {j}: " if heads_layers or kv_layers else ""
            # Per-layer arrays may give 0 KV heads (recurrent layers of hybrid models);
            # a scalar 0 with attention heads would make llama.cpp divide by zero.
            if k > h or (k and h % k) or (h and not k and not kv_layers):
                raise self.cur.error(
                    f"{arch}.attention.head_count_kv",
                    f"{where}head_count_kv {k} must divide head_count {h}",
                )

    def check_experts(self, arch: str, experts: int | None, used: int | None) -> None:
        n, u = experts or 0, used or 0
        if u > n or (n > 0 and u == 0):
            raise self.cur.error(
                f"{arch}.expert_used_count",
                f"{u} experts used per token is inconsistent with expert_count {n}",
            )

    def vocab_size(self, arch: str) -> int | None:
        tokens = self._typed_array("tokenizer.ggml.tokens", ValueType.STRING, "strings")
        for key, elem, desc in (
            ("tokenizer.ggml.scores", ValueType.FLOAT32, "float32"),
            ("tokenizer.ggml.token_type", ValueType.INT32, "int32"),
        ):
            arr = self._typed_array(key, elem, desc)
            if arr is not None and tokens is not None and arr.count != tokens.count:
                raise self.cur.error(
                    key, f"has {arr.count} entries but tokenizer.ggml.tokens has {tokens.count}"
                )
        if tokens is not None:
            return tokens.count
        return self.integer(f"{arch}.vocab_size", 1, self.p.limits.max_array_len)

    def _typed_array(self, key: str, elem: ValueType, desc: str) -> _Array | None:
        entry = self.kv.get(key)
        if entry is None:
            return None
        vtype, value = entry
        if not isinstance(value, _Array) or value.elem_type != elem:
            raise self.cur.error(
                key, f"must be an array of {desc}, found {_type_desc(vtype, value)}"
            )
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
    unpack = _U64.unpack_from
    end = len(buf)
    short = min(128, limit + 1)  # lengths below this need no further check
    n = 0
    while left:
        k = min(left, (end - pos) // 136)
        if k:
            j = 0
            for j in range(k):
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


def _type_desc(vtype: int, value: object) -> str:
    if isinstance(value, _Array):
        return f"array of {ValueType(value.elem_type).name.lower()}"
    try:
        return ValueType(vtype).name.lower()
    except ValueError:
        return f"type {vtype}"


def _metadata_value(value: object) -> object:
    if isinstance(value, _Array):
        if value.values is not None:
            return value.values
        return f"<array of {value.count} {ValueType(value.elem_type).name.lower()}>"
    return value


def _dominant_type(tensors: tuple[TensorInfo, ...]) -> str:
    if not tensors:
        return "unknown"
    by_bytes: Counter[str] = Counter()
    for t in tensors:
        by_bytes[t.type_name] += t.n_bytes
    return by_bytes.most_common(1)[0][0]
