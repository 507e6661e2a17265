"""The GGUF reader's interpretation pass: from checked metadata to a :class:`GGUFInfo`.

Part of :func:`orin_console.core.gguf.read_gguf`. Once the header has been read, this reads
the architecture's hyperparameters (scalars or per-layer arrays), the tokenizer arrays and
the file type, and checks each against a sane range and against the others (a model that
would make llama.cpp divide by zero is refused here), then builds the
:class:`GGUFInfo`.
"""

from __future__ import annotations

import struct
from collections import Counter

from gguf.constants import MODEL_ARCH_NAMES

from orin_console.core.gguf.cursor import Cursor
from orin_console.core.gguf.metadata import MetaArray, metadata_value, type_desc
from orin_console.core.gguf.types import (
    FLOAT_TYPES,
    INTEGER_TYPES,
    SCALAR_FORMATS,
    GGUFInfo,
    TensorInfo,
    ValueType,
    ftype_name,
    sanitize,
)

__all__ = ["LLM_ARCHS", "Hparams", "build_info"]

# Architectures llama.cpp knows; their files must say how many layers they have.
# "clip" (multimodal projectors) keeps its layer count under other keys.
LLM_ARCHS = frozenset(MODEL_ARCH_NAMES.values()) - {"clip"}


def build_info(
    cur: Cursor,
    kv: dict[str, tuple[int, object]],
    version: int,
    alignment: int,
    n_kv: int,
    data_offset: int,
    tensors: tuple[TensorInfo, ...],
) -> GGUFInfo:
    """Derive the :class:`GGUFInfo` from the parsed header, checking the hyperparameters.

    Args:
        cur: the cursor (path, file size, limits, errors; rereads long per-layer arrays).
        kv: the metadata, as :class:`~orin_console.core.gguf.metadata.MetadataReader` read it.
        version: the GGUF version.
        alignment: the data alignment.
        n_kv: the number of metadata pairs.
        data_offset: where the tensor data starts.
        tensors: the checked tensor infos.

    Returns:
        The validated header facts.

    Raises:
        GGUFError: a required key is missing, or a value has the wrong type, is out of its
            sane range or contradicts another (heads and KV heads, experts).
    """
    limits = cur.limits
    h = Hparams(kv, cur)
    arch = h.architecture()
    blocks = h.integer(f"{arch}.block_count", 1, limits.max_block_count, arch in LLM_ARCHS)
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
            raise cur.error(
                f"{arch}.embedding_length",
                f"{embd} is not a multiple of head_count {heads} and the file gives no "
                "attention.key_length/value_length",
            )
        key_len = embd // heads if key_len is None else key_len
        value_len = embd // heads if value_len is None else value_len
    experts = h.integer(f"{arch}.expert_count", 0, limits.max_experts)
    experts_used = h.integer(f"{arch}.expert_used_count", 0, limits.max_experts)
    h.check_experts(arch, experts, experts_used)
    file_type = h.integer("general.file_type", 0, (1 << 32) - 1)
    quant = ftype_name(file_type) if file_type is not None else None
    if quant is None:
        quant = _dominant_type(tensors)
    vocab = h.vocab_size(arch)
    name = h.string("general.name")
    return GGUFInfo(
        path=cur.path,
        file_size=cur.size,
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
        metadata={k: metadata_value(v) for k, (_t, v) in kv.items()},
    )


class Hparams:
    """Typed, range-checked access to the metadata once it has been read.

    Args:
        kv: the metadata: key -> (value type, value).
        cur: the cursor (errors, limits, and rereading long per-layer arrays).
    """

    def __init__(self, kv: dict[str, tuple[int, object]], cur: Cursor) -> None:
        self.kv = kv
        self.cur = cur

    def architecture(self) -> str:
        entry = self.kv.get("general.architecture")
        if entry is None:
            raise self.cur.error("general.architecture", "required key is missing")
        vtype, value = entry
        if vtype != ValueType.STRING or not isinstance(value, str):
            raise self.cur.error(
                "general.architecture", f"must be a string, found {type_desc(vtype, value)}"
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
            raise self.cur.error(key, f"must be a string, found {type_desc(vtype, value)}")
        return value

    def number(self, key: str) -> float | None:
        entry = self.kv.get(key)
        if entry is None:
            return None
        vtype, value = entry
        if vtype not in FLOAT_TYPES and vtype not in INTEGER_TYPES:
            raise self.cur.error(key, f"must be a number, found {type_desc(vtype, value)}")
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
            raise self.cur.error(key, f"must be an integer, found {type_desc(vtype, value)}")
        if not lo <= value <= hi:
            raise self.cur.error(key, f"{value} is outside the sane range {lo}..{hi}")
        return value

    def _layer_array(self, key: str, arr: MetaArray, blocks: int | None) -> tuple[int, ...]:
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
        assert isinstance(arr, MetaArray)
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
        assert isinstance(arr, MetaArray)
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
        return self.integer(f"{arch}.vocab_size", 1, self.cur.limits.max_array_len)

    def _typed_array(self, key: str, elem: ValueType, desc: str) -> MetaArray | None:
        entry = self.kv.get(key)
        if entry is None:
            return None
        vtype, value = entry
        if not isinstance(value, MetaArray) or value.elem_type != elem:
            raise self.cur.error(
                key, f"must be an array of {desc}, found {type_desc(vtype, value)}"
            )
        return value

def _dominant_type(tensors: tuple[TensorInfo, ...]) -> str:
    if not tensors:
        return "unknown"
    by_bytes: Counter[str] = Counter()
    for t in tensors:
        by_bytes[t.type_name] += t.n_bytes
    return by_bytes.most_common(1)[0][0]
