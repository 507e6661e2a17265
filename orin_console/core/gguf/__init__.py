"""Bounded GGUF reader: validates a model file from its header alone, before llama.cpp sees it.

The reader seeks and reads only the header region (header, metadata, tensor infos), in
bounded chunks, and checks every count, length and offset against the real file size and
against :class:`GGUFLimits` before using it. It never reads or maps the tensor data, so it
answers in milliseconds for multi-gigabyte files. Whatever the input, it either returns a
:class:`GGUFInfo` or raises :class:`~orin_console.core.errors.GGUFError` whose ``field``
names the offending part.

The reader is in parts, one pass each: this module checks the fixed header and runs the
passes; :mod:`~orin_console.core.gguf.cursor` is the bounded byte cursor they read through;
:mod:`~orin_console.core.gguf.metadata` reads the key-value pairs,
:mod:`~orin_console.core.gguf.tensors` the tensor infos and data layout, and
:mod:`~orin_console.core.gguf.hparams` derives and cross-checks the :class:`GGUFInfo`.
The types and limits are in :mod:`~orin_console.core.gguf.types`.

Example:
    >>> info = read_gguf("models/SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    >>> info.architecture, info.block_count, info.quantization       # doctest: +SKIP
    ('llama', 30, 'Q4_1')
"""

from __future__ import annotations

import os
import stat

from orin_console.core.errors import GGUFError
from orin_console.core.gguf.cursor import Cursor
from orin_console.core.gguf.hparams import build_info
from orin_console.core.gguf.metadata import MetadataReader
from orin_console.core.gguf.tensors import check_tensor_layout, read_tensor_infos
from orin_console.core.gguf.types import GGUFInfo, GGUFLimits, TensorInfo, sanitize

__all__ = ["DEFAULT_LIMITS", "GGUFInfo", "GGUFLimits", "TensorInfo", "read_gguf", "sanitize"]

_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)

# Smallest possible encodings, used to refuse counts the file cannot hold.
_MIN_KV_BYTES = 8 + 1 + 4 + 1  # key length, 1-byte key, value type, 1-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8  # name len, name, n_dims, 1 dim, type, offset


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
    if "\x00" in spath:
        raise GGUFError("file", "the file name holds a NUL character, which no file name can contain", spath)
    try:
        # O_NONBLOCK: opening a FIFO must not hang; it is refused just below.
        fd = os.open(spath, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise GGUFError("file", f"cannot open: {exc.strerror or exc}", spath) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            reason = "not a regular file (a folder)" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise GGUFError("file", reason, spath)
        with os.fdopen(fd, "rb", buffering=0) as f:
            return _parse(Cursor(f, st.st_size, limits, spath))
    except OSError as exc:
        raise GGUFError("file", f"read failed: {exc.strerror or exc}", spath) from None
    except (MemoryError, RecursionError) as exc:  # pragma: no cover - defensive
        raise GGUFError("file", f"could not be parsed: {type(exc).__name__}", spath) from None


def _parse(cur: Cursor) -> GGUFInfo:
    """Check the fixed header, then run the metadata, tensor-info and interpretation passes."""
    limits = cur.limits
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
    if n_tensors > limits.max_tensors:
        raise cur.error(
            "n_tensors",
            f"n_tensors = {n_tensors} exceeds the limit of {limits.max_tensors}",
        )
    if n_tensors * _MIN_TENSOR_INFO_BYTES > remaining:
        raise cur.error(
            "n_tensors",
            f"n_tensors = {n_tensors} but only {remaining} bytes remain; "
            "the file is truncated or not a GGUF",
        )
    if n_kv > limits.max_kv:
        raise cur.error("n_kv", f"n_kv = {n_kv} exceeds the limit of {limits.max_kv}")
    if n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES > remaining:
        raise cur.error(
            "n_kv",
            f"n_kv = {n_kv} (with {n_tensors} tensors) but only {remaining} bytes "
            "remain; the file is truncated or not a GGUF",
        )

    meta = MetadataReader(cur)
    for i in range(n_kv):
        meta.read_kv(i)
    alignment = meta.alignment()
    tensors_raw = read_tensor_infos(cur, n_tensors)
    header_end = cur.offset
    data_offset = -(-header_end // alignment) * alignment
    tensors = check_tensor_layout(cur, tensors_raw, alignment, data_offset)
    return build_info(cur, meta.kv, version, alignment, n_kv, data_offset, tensors)
