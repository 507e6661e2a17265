"""KV cache arithmetic: what llama.cpp allocates for a model and context, layer by layer.

The rules follow what llama.cpp (as shipped in llama-cpp-python 0.3.36) logs at load:

- cells: the requested context rounded up to a multiple of 256 (``n_ctx = 1000`` gives
  1024 cells); 0 means the model's training context;
- per layer: ``cells x (K row + V row)``, a K row being the layer's KV heads times the key
  head size in the cache type (f16: 2 bytes per value, q8_0: 34 bytes per 32 values, ...),
  a V row likewise with the value head size; layers without KV heads (the recurrent
  layers of hybrid models) have no cache;
- sliding-window (SWA) layers get the full-size cache by default (llama.cpp's
  ``swa_full``); without it, ``n_swa + n_ubatch`` cells rounded up to 256, at most the full
  size;
- ``n_batch`` is capped at the requested context and ``n_ubatch`` at ``n_batch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

if TYPE_CHECKING:
    from orin_console.core.gguf.types import GGUFInfo

__all__ = [
    "CACHE_TYPES",
    "CTX_PAD",
    "KVCache",
    "cache_row_bytes",
    "effective_batches",
    "effective_context",
    "kv_cache",
    "swa_layers",
]

CTX_PAD = 256
"""llama.cpp rounds the context (KV cells) up to a multiple of this."""

_BUILTIN_SWA_PERIOD: Mapping[str, int] = MappingProxyType(
    {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "exaone4": 4, "gpt-oss": 2}
)
"""Architectures whose files omit ``sliding_window_pattern``: llama.cpp's built-in period
(every ``period``-th layer uses full attention, the others the sliding window)."""

CACHE_TYPES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        name.lower(): GGML_QUANT_SIZES[GGMLQuantizationType[name]]
        for name in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL")
    }
)
"""KV cache types llama.cpp accepts: ``(elements per block, bytes per block)``."""



def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


def cache_row_bytes(cache_type: str, n_elements: int) -> int:
    """Bytes of one KV row of ``n_elements`` values in ``cache_type`` (ggml's row size).

    Raises:
        ValueError: an unknown cache type, or a row that is not whole blocks.
    """
    try:
        block, size = CACHE_TYPES[cache_type.lower()]
    except KeyError:
        known = ", ".join(CACHE_TYPES)
        raise ValueError(f"unknown KV cache type {cache_type!r}; use one of {known}") from None
    if n_elements % block:
        raise ValueError(
            f"KV cache type {cache_type} needs rows in blocks of {block}; a row has {n_elements}"
        )
    return n_elements // block * size


def swa_layers(info: GGUFInfo) -> tuple[bool, ...]:
    """Which layers use sliding-window attention, by llama.cpp's rules.

    A per-layer ``sliding_window_pattern`` array is taken as is; an integer ``N`` (or the
    architecture's built-in period) makes every layer SWA except each ``N``-th
    (``il % N == N - 1``). A window with no known pattern counts as full attention
    everywhere: the larger, safe assumption.
    """
    n = info.block_count or 0
    if not info.sliding_window:
        return (False,) * n
    pattern = info.sliding_window_pattern
    if isinstance(pattern, tuple):
        return tuple(bool(pattern[i]) if i < len(pattern) else False for i in range(n))
    period = pattern if isinstance(pattern, int) else _BUILTIN_SWA_PERIOD.get(info.architecture)
    if not period:
        return (False,) * n
    return tuple(il % period < period - 1 for il in range(n))


@dataclass(frozen=True)
class KVCache:
    """The KV cache llama.cpp allocates, in bytes.

    Attributes:
        cells: cells of the full-attention cache (``n_ctx`` rounded up to 256).
        swa_cells: cells of the sliding-window cache (0 when the model has no SWA layers).
        full_layers: layers with full attention and a KV cache.
        swa_layers: sliding-window layers.
        k_bytes: all K rows.
        v_bytes: all V rows.
    """

    cells: int
    swa_cells: int
    full_layers: int
    swa_layers: int
    k_bytes: int
    v_bytes: int

    @property
    def total(self) -> int:
        """K + V bytes."""
        return self.k_bytes + self.v_bytes


def _int_meta(info: GGUFInfo, key: str) -> int | None:
    value = info.metadata.get(f"{info.architecture}.{key}")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def effective_batches(n_ctx: int, n_batch: int, n_ubatch: int) -> tuple[int, int]:
    """llama-cpp-python caps ``n_batch`` at the requested context, llama.cpp ``n_ubatch`` at it."""
    batch = max(1, min(n_ctx, n_batch))
    return batch, max(1, min(batch, n_ubatch))


def effective_context(info: GGUFInfo, n_ctx: int) -> int:
    """The context llama.cpp really allocates: the request (0: the training context) rounded up to 256."""
    requested = n_ctx if n_ctx > 0 else (info.context_length or 4096)
    return _pad(requested, CTX_PAD)


def kv_cache(
    info: GGUFInfo,
    n_ctx: int,
    *,
    cache_type: str = "f16",
    cache_type_v: str | None = None,
    n_batch: int = 512,
    n_ubatch: int = 512,
    swa_full: bool = True,
) -> KVCache:
    """Size the KV cache layer by layer.

    Args:
        info: the model's header.
        n_ctx: requested context (0: the model's training context).
        cache_type: K cache type (and V's unless ``cache_type_v`` is given).
        cache_type_v: V cache type.
        n_batch: prompt batch size.
        n_ubatch: physical batch size.
        swa_full: full-size cache for sliding-window layers (llama.cpp's default).

    Returns:
        The cache sizes.
    """
    n_layers = info.block_count or 0
    requested = n_ctx if n_ctx > 0 else (info.context_length or 4096)
    cells = effective_context(info, n_ctx)
    _, ubatch = effective_batches(requested, n_batch, n_ubatch)
    swa = swa_layers(info)
    swa_cells = 0
    if any(swa):
        window = info.sliding_window or 0
        swa_cells = cells if swa_full else min(cells, _pad(window + ubatch, CTX_PAD))
    kv_heads = info.head_count_kv_per_layer or (info.head_count_kv or info.head_count or 0,) * n_layers
    k_len = info.key_length or 0
    v_len = info.value_length or 0
    k_len_swa = _int_meta(info, "attention.key_length_swa") or k_len
    v_len_swa = _int_meta(info, "attention.value_length_swa") or v_len
    type_v = cache_type_v or cache_type
    k_bytes = v_bytes = full = n_swa = 0
    for il in range(n_layers):
        heads = kv_heads[il] if il < len(kv_heads) else 0
        if heads <= 0:  # recurrent layer of a hybrid model: no KV cache
            continue
        is_swa = swa[il]
        n_cells = swa_cells if is_swa else cells
        kl, vl = (k_len_swa, v_len_swa) if is_swa else (k_len, v_len)
        k_bytes += n_cells * cache_row_bytes(cache_type, kl * heads)
        v_bytes += n_cells * cache_row_bytes(type_v, vl * heads)
        n_swa += is_swa
        full += not is_swa
    return KVCache(cells, swa_cells, full, n_swa, k_bytes, v_bytes)


