"""Types, limits and constants of the bounded GGUF reader (see :mod:`orin_console.core.gguf`).

Kept apart from the parser so that code which only consumes a :class:`GGUFInfo` does not
need to read the parsing machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from orin_console.core.text import sanitize  # the one sanitiser; re-exported for the reader

__all__ = [
    "GGUFInfo",
    "GGUFLimits",
    "TensorInfo",
    "ValueType",
    "ftype_name",
    "ggml_type_name",
    "ggml_type_sizes",
    "sanitize",
]

INT64_MAX = (1 << 63) - 1
"""ggml stores tensor dimensions and byte counts as ``int64_t``."""


class ValueType(IntEnum):
    """The metadata value types of GGUF v2/v3 (``gguf_type`` in ggml)."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


INTEGER_TYPES = frozenset(
    {
        ValueType.UINT8,
        ValueType.INT8,
        ValueType.UINT16,
        ValueType.INT16,
        ValueType.UINT32,
        ValueType.INT32,
        ValueType.UINT64,
        ValueType.INT64,
    }
)
FLOAT_TYPES = frozenset({ValueType.FLOAT32, ValueType.FLOAT64})

# Fixed-size scalar types: struct format (little-endian) and size in bytes.
SCALAR_FORMATS: dict[int, tuple[str, int]] = {
    ValueType.UINT8: ("<B", 1),
    ValueType.INT8: ("<b", 1),
    ValueType.UINT16: ("<H", 2),
    ValueType.INT16: ("<h", 2),
    ValueType.UINT32: ("<I", 4),
    ValueType.INT32: ("<i", 4),
    ValueType.FLOAT32: ("<f", 4),
    ValueType.BOOL: ("<B", 1),
    ValueType.UINT64: ("<Q", 8),
    ValueType.INT64: ("<q", 8),
    ValueType.FLOAT64: ("<d", 8),
}

# ggml types that existed once and were removed; ggml refuses them today.
REMOVED_GGML_TYPES: dict[int, str] = {
    4: "Q4_2",
    5: "Q4_3",
    31: "Q4_0_4_4",
    32: "Q4_0_4_8",
    33: "Q4_0_8_8",
    36: "IQ4_NL_4_4",
    37: "IQ4_NL_4_8",
    38: "IQ4_NL_8_8",
}

_LLAMA_FTYPE_GUESSED = 1024


def ggml_type_sizes(ggml_type: int) -> tuple[int, int] | None:
    """Return ``(block_size, type_size)`` of a ggml tensor type, or None if unknown/removed.

    Args:
        ggml_type: the ``ggml_type`` number stored in a tensor info.

    Returns:
        Elements per block and bytes per block, from ``gguf.constants.GGML_QUANT_SIZES``.
    """
    try:
        qtype = GGMLQuantizationType(ggml_type)
    except ValueError:
        return None
    return GGML_QUANT_SIZES.get(qtype)


def ggml_type_name(ggml_type: int) -> str:
    """Return the ggml name of a tensor type (``"Q4_K"``), or ``"type<N>"`` if unknown."""
    try:
        return GGMLQuantizationType(ggml_type).name
    except ValueError:
        return REMOVED_GGML_TYPES.get(ggml_type, f"type{ggml_type}")


def ftype_name(file_type: int) -> str | None:
    """Return llama.cpp's name for a ``general.file_type`` value (``15`` → ``"Q4_K_M"``).

    The ``LLAMA_FTYPE_GUESSED`` flag (1024) is ignored. Returns None for values llama.cpp
    does not (or no longer) define.
    """
    try:
        name = LlamaFileType(file_type & ~_LLAMA_FTYPE_GUESSED).name
    except ValueError:
        return None
    for prefix in ("MOSTLY_", "ALL_"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return None  # GUESSED alone is not a type


@dataclass(frozen=True)
class GGUFLimits:
    """Hard limits the reader enforces before trusting any count or length in a file.

    The defaults pass every real model we know of (262k-token vocabularies, megabyte chat
    templates, thousands of tensors) and stop crafted files long before they cost memory
    or time.

    Attributes:
        max_kv: most metadata key/value pairs.
        max_tensors: most tensor infos.
        max_key_len: longest key in bytes (GGUF keys are at most 65535 bytes by spec).
        max_string_len: longest string value in bytes (chat templates are tens of KB).
        max_array_len: most elements in one metadata array (vocabularies, merges).
        max_header_bytes: most bytes of header, metadata and tensor infos read in all.
        max_dims: most dimensions of a tensor (``GGML_MAX_DIMS``).
        max_block_count: most layers (llama.cpp's ``LLAMA_MAX_LAYERS``).
        max_experts: most MoE experts (llama.cpp's ``LLAMA_MAX_EXPERTS``; it aborts
            the process above it).
        max_tensor_name: ``GGML_MAX_NAME``, counting the terminating NUL, so tensor
            names may have at most ``max_tensor_name - 1`` bytes.
    """

    max_kv: int = 65536
    max_tensors: int = 65536
    max_key_len: int = 65535
    max_string_len: int = 16 * 1024 * 1024
    max_array_len: int = 4 * 1024 * 1024
    max_header_bytes: int = 256 * 1024 * 1024
    max_dims: int = 4
    max_block_count: int = 512
    max_experts: int = 512
    max_tensor_name: int = 64


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it.

    Attributes:
        name: tensor name (valid UTF-8, at most ``GGML_MAX_NAME - 1`` bytes).
        dims: ggml ``ne`` order (fastest-varying first), each at least 1.
        ggml_type: the ``ggml_type`` number.
        type_name: its ggml name, e.g. ``"Q4_K"``.
        offset: byte offset relative to the start of the data section.
        n_bytes: bytes the tensor occupies.
    """

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    type_name: str
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        """Number of elements (product of ``dims``)."""
        n = 1
        for d in self.dims:
            n *= d
        return n


@dataclass(frozen=True)
class GGUFInfo:
    """What the header of a validated GGUF file says.

    Hyperparameter fields are None when the file does not carry them (e.g. for an
    architecture llama.cpp does not know). Where a file stores a per-layer array instead
    of a scalar (OpenELM heads, hybrid models' KV heads with 0 for recurrent layers), the
    scalar field holds the maximum over layers and the ``*_per_layer`` field the array.

    Strings meant for display (``name``) are already passed through :func:`sanitize`;
    ``chat_template`` and ``metadata`` values are raw, use :meth:`display_metadata` and
    :meth:`chat_template_display` to show them.

    Attributes:
        path: the file read.
        file_size: its size in bytes.
        version: GGUF version (2 or 3).
        alignment: data alignment (``general.alignment``, default 32).
        n_tensors: number of tensors.
        n_kv: number of metadata pairs.
        data_offset: absolute file offset of the tensor data section.
        architecture: ``general.architecture``.
        name: ``general.name`` (sanitised) or None.
        block_count: layers (``<arch>.block_count``).
        embedding_length: ``<arch>.embedding_length``.
        feed_forward_length: ``<arch>.feed_forward_length`` (max over layers).
        feed_forward_length_per_layer: per-layer values when the file stores an array.
        head_count: attention heads (max over layers).
        head_count_per_layer: per-layer values when the file stores an array.
        head_count_kv: KV heads (max over layers); defaults to ``head_count``.
        head_count_kv_per_layer: per-layer values when the file stores an array.
        key_length: per-head K size; defaults to ``embedding_length // head_count``.
        value_length: per-head V size; defaults to ``embedding_length // head_count``.
        context_length: training context (``<arch>.context_length``).
        sliding_window: SWA window (``<arch>.attention.sliding_window``).
        sliding_window_pattern: ``<arch>.attention.sliding_window_pattern`` as stored:
            an int (every N-th layer is full attention) or one bool per layer. None when
            absent (gemma3 files omit it; llama.cpp then uses its built-in pattern).
        rope_freq_base: ``<arch>.rope.freq_base``.
        rope_dimension_count: ``<arch>.rope.dimension_count``.
        expert_count: MoE experts (``<arch>.expert_count``).
        expert_used_count: experts used per token.
        file_type: ``general.file_type`` (llama.cpp ``LLAMA_FTYPE``).
        quantization: human name such as ``"Q4_K_M"``; from ``file_type`` when llama.cpp
            names it, else the tensor type holding the most bytes.
        tensor_data_size: bytes of the data section used by tensors.
        n_params: total elements over all tensors.
        vocab_size: ``len(tokenizer.ggml.tokens)`` or ``<arch>.vocab_size``.
        tokenizer_model: ``tokenizer.ggml.model``.
        chat_template: ``tokenizer.chat_template``, raw (never rendered here).
        tensors: every tensor, in file order.
        metadata: every key; scalars as Python values, arrays of up to 16 elements as
            tuples, longer arrays as a summary string like ``"<array of 49152 string>"``.
    """

    path: str
    file_size: int
    version: int
    alignment: int
    n_tensors: int
    n_kv: int
    data_offset: int
    architecture: str
    name: str | None
    block_count: int | None
    embedding_length: int | None
    feed_forward_length: int | None
    feed_forward_length_per_layer: tuple[int, ...] | None
    head_count: int | None
    head_count_per_layer: tuple[int, ...] | None
    head_count_kv: int | None
    head_count_kv_per_layer: tuple[int, ...] | None
    key_length: int | None
    value_length: int | None
    context_length: int | None
    sliding_window: int | None
    sliding_window_pattern: int | tuple[bool, ...] | None
    rope_freq_base: float | None
    rope_dimension_count: int | None
    expert_count: int | None
    expert_used_count: int | None
    file_type: int | None
    quantization: str
    tensor_data_size: int
    n_params: int
    vocab_size: int | None
    tokenizer_model: str | None
    chat_template: str | None
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, object] = field(repr=False, compare=False, hash=False)

    def display_metadata(self, max_value_len: int = 120) -> list[tuple[str, str]]:
        """Return every metadata pair as single-line display text.

        Args:
            max_value_len: values longer than this are cut and end with ``"…"``.

        Returns:
            ``(key, value)`` pairs in file order, both passed through :func:`sanitize`.
        """
        rows: list[tuple[str, str]] = []
        for key, value in self.metadata.items():
            text = _format_value(value)
            if len(text) > max_value_len:
                text = text[: max(0, max_value_len - 1)] + "…"
            rows.append((sanitize(key), sanitize(text)))
        return rows

    def chat_template_display(self) -> str | None:
        """Return the chat template with control characters replaced, newlines kept."""
        if self.chat_template is None:
            return None
        return sanitize(self.chat_template, multiline=True)


def _format_value(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    return repr(value)
