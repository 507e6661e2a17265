"""The GGUF reader's tensor-info pass: names, shapes, types and where the data lies.

Part of :func:`orin_console.core.gguf.read_gguf`. Every count and size is checked against
ggml's own rules (name length, dimensions, int64 overflow, the type's block size) and the
data offsets against the alignment and the real file size, without reading tensor data.
"""

from __future__ import annotations

from orin_console.core.gguf.cursor import Cursor
from orin_console.core.gguf.types import (
    INT64_MAX,
    REMOVED_GGML_TYPES,
    TensorInfo,
    ggml_type_name,
    ggml_type_sizes,
)

__all__ = ["RawTensor", "check_tensor_layout", "read_tensor_infos"]

RawTensor = tuple[str, tuple[int, ...], int, int, int]
"""One tensor info as read: name, dimensions, ggml type, data offset, byte count."""


def read_tensor_infos(cur: Cursor, n_tensors: int) -> list[RawTensor]:
    """Read ``n_tensors`` tensor infos at the cursor, checking each one.

    Args:
        cur: the cursor, positioned at the first tensor info.
        n_tensors: how many the header announced.

    Returns:
        The tensor infos, in file order.

    Raises:
        GGUFError: a bad or duplicate name, bad dimensions, or an unknown or removed type.
    """
    names: dict[str, int] = {}
    return [_read_tensor_info(cur, i, names) for i in range(n_tensors)]


def _read_tensor_info(cur: Cursor, i: int, names: dict[str, int]) -> RawTensor:
    lim = cur.limits
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
    if name in names:
        raise cur.error(
            f"tensor[{name}].name",
            f"duplicate tensor name (tensor[{i}] repeats tensor[{names[name]}])",
        )
    names[name] = i
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

def check_tensor_layout(
    cur: Cursor, raw: list[RawTensor], alignment: int, data_offset: int
) -> tuple[TensorInfo, ...]:
    """Check the tensors' data offsets and turn the raw infos into :class:`TensorInfo` s.

    Each tensor must start on the alignment, after the one before it ends, and the file
    must hold every tensor's data.

    Args:
        cur: the cursor (for the file size and errors).
        raw: the tensor infos as :func:`read_tensor_infos` returned them.
        alignment: the file's data alignment.
        data_offset: where the tensor data section starts in the file.

    Returns:
        The tensors, in file order.

    Raises:
        GGUFError: a misaligned, out-of-order or overlapping tensor, or a truncated file.
    """
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
