"""Memory prediction: what a runner will occupy, from the GGUF header alone.

**What "predicted" means.** The prediction is the runner's footprint in its *worst steady
state*: the resident memory (RSS + swap, plus GPU memory where layers are offloaded) of the
runner process after it has processed a prompt that fills its whole context and generated.
That is the figure admission control must guard, because a runner grows towards it as
prompts get longer. It is larger than the footprint right after the load (see
:attr:`Prediction.at_load`), which misses the attention scratch memory of long prompts.

The components (all in bytes):

- **weights**: the tensor data (``tensor_data_size``). On the CPU llama.cpp maps the file
  and, once a model has generated, every page has been touched; the tensors it *repacks*
  for faster CPU kernels (Q4_0, Q4_K, IQ4_NL) are copied again into anonymous memory.
- **KV cache**: per layer, ``cells x (K row + V row)``, honouring per-layer KV head
  counts, head sizes, the cache type and sliding-window layers (:mod:`.kvcache`).
- **compute**: the activations of one ``n_ubatch`` of prompt tokens at full context. On the
  CPU only what the graph touches becomes resident: the attention scores
  (``n_ubatch x n_ctx`` per head) dominate. On a GPU the whole reserved compute buffer is
  allocated up front, and it also holds the logits of a full ubatch.
- **overhead** ("runner"): the Python process with llama_cpp imported, the tokenizer's
  in-memory tables (per vocabulary entry and BPE merge), sampling buffers and, with GPU
  offload, the CUDA runtime.

The constants below were measured on the demo models with llama-cpp-python 0.3.36 (see
``docs/memory.md``); measurements of real loads (:class:`~orin_console.core.memory.measurements.Corrections`)
correct them per model, context and tier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from orin_console.core.memory.kvcache import (
    CACHE_TYPES,
    KVCache,
    cache_row_bytes,
    effective_batches,
    kv_cache,
    swa_layers,
)
from orin_console.core.memory.measurements import Correction, Corrections, model_identity
from orin_console.core.tier import LOADED_TIERS
from orin_console.core.units import GB, MB, format_size

if TYPE_CHECKING:
    from orin_console.core.gguf.types import GGUFInfo

__all__ = [
    "CACHE_TYPES",
    "GB",
    "MB",
    "Correction",
    "Corrections",
    "KVCache",
    "Prediction",
    "cache_row_bytes",
    "format_size",
    "kv_cache",
    "model_identity",
    "predict",
    "swa_layers",
]


RUNNER_BASELINE_BYTES = 40 * MB
"""RSS of a Python process that has imported llama_cpp (measured: 39-40 MiB, x86-64)."""

HOST_FIXED_BYTES = 5 * MB
"""Per-model host memory independent of the model size (llama.cpp structures, graph
metadata, library pages touched by the load): measured 3 MiB anonymous + 2 MiB file."""

BYTES_PER_VOCAB_ENTRY = 196
"""Tokenizer tables (token text, lookup maps: ~176 B measured) + logits output row and
sampler candidates (4 + 16 B) per vocabulary entry."""

BYTES_PER_MERGE = 200
"""BPE merge-rank table, per merge (fitted on SmolLM2's 48,900 merges)."""

CPU_ATTN_BYTES_PER_HEAD = 4
CPU_ATTN_BYTES_FIXED = 24
"""CPU compute touched per (context cell x ubatch token), without flash attention:
``4 * n_head + 24`` bytes (f32 scores per head, the mask, the kernels' scratch). Fitted on
SmolLM2 (9 heads: 58 B measured), Gemma 3 (4 heads: 36 B) and a tiny model (4 heads: 40 B)."""

CPU_FA_BYTES_PER_MASK = 6
CPU_FA_BYTES_FIXED = 4
"""The same with flash attention: only masks and scratch (``6 * n_masks + 4`` bytes)."""

CUDA_RUNTIME_BYTES = 300 * MB
"""CUDA context, cuBLAS and kernels of a runner with GPU offload. An assumption, not a
measurement (there is no CUDA build here to measure); the first measured load of each model
in the RAM tier corrects it (see :mod:`orin_console.core.memory.measurements`)."""

REPACKED_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL"})
"""Weight types ggml's CPU backend repacks into an extra anonymous copy (observed on
x86-64 AVX2 for Q4_K; Q4_0 and IQ4_NL are repacked on both x86-64 and aarch64)."""


@dataclass(frozen=True)
class Prediction:
    """A runner's predicted footprint (see the module docstring for what it covers).

    ``total`` is always the sum of the four components and ``adjustment``, so an itemised
    refusal adds up.

    Attributes:
        weights: model tensors (plus the CPU's repacked copies).
        kv_cache: the KV cache.
        compute: activations and compute buffers at full context.
        overhead: the runner process, tokenizer tables, sampling, CUDA runtime.
        adjustment: correction from earlier measurements of this model (signed).
        tier: the tier it was predicted for.
        n_ctx: the context llama.cpp will allocate (rounded up to 256).
        basis: ``"model"`` (estimate only), ``"measured"`` (a measured peak of this very
            model, context and tier) or ``"scaled"`` (the estimate scaled by the
            measured/predicted ratio of another measurement of this model).
        compute_at_load: the part of ``compute`` committed already at load (GPU buffers).
        details: finer components in bytes, for reports.
    """

    weights: int
    kv_cache: int
    compute: int
    overhead: int
    adjustment: int = 0
    tier: str = "swap"
    n_ctx: int = 0
    basis: str = "model"
    compute_at_load: int = 0
    details: Mapping[str, int] = field(default_factory=dict, compare=False)

    @property
    def estimate(self) -> int:
        """The model's own estimate: the components before any measured adjustment."""
        return self.weights + self.kv_cache + self.compute + self.overhead

    @property
    def total(self) -> int:
        """Predicted bytes: components plus the measured adjustment."""
        return self.estimate + self.adjustment

    @property
    def at_load(self) -> int:
        """The estimate for right after the load, before any long prompt was processed."""
        return self.estimate - self.compute + self.compute_at_load

    def components(self) -> dict[str, int]:
        """The itemised figures, in bytes, in display order (``adjustment`` only when set)."""
        items = {
            "weights": self.weights,
            "kv_cache": self.kv_cache,
            "compute": self.compute,
            "overhead": self.overhead,
        }
        if self.adjustment:
            items["adjustment"] = self.adjustment
        return items

    def describe(self, unit: str | None = None) -> str:
        """Return ``"weights 1.4 + KV 0.4 + compute 0.1 + runner 0.1 GB"``.

        Args:
            unit: ``"GB"`` or ``"MB"``; by default the unit that suits the total.
        """
        unit = unit or ("GB" if self.total >= GB else "MB")
        scale = GB if unit == "GB" else MB
        labels = {"weights": "weights", "kv_cache": "KV", "compute": "compute", "overhead": "runner"}
        parts = [f"{labels[k]} {v / scale:.1f}" for k, v in self.components().items() if k in labels]
        text = " + ".join(parts)
        if self.adjustment:
            sign = "+" if self.adjustment > 0 else "-"
            text += f" {sign} {abs(self.adjustment) / scale:.1f} measured correction"
        return f"{text} {unit}"


def _merge_count(info: GGUFInfo) -> int:
    value = info.metadata.get("tokenizer.ggml.merges")
    if isinstance(value, tuple):
        return len(value)
    if isinstance(value, str):
        match = re.fullmatch(r"<array of (\d+) \w+>", value)
        if match:
            return int(match.group(1))
    return 0


def _layer_of(name: str) -> int | None:
    match = re.match(r"blk\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def _weights(info: GGUFInfo, gpu_layers: int) -> tuple[int, int]:
    """Tensor bytes, and the bytes the CPU backend repacks (CPU-run layers only)."""
    repack = 0
    for t in info.tensors:
        if t.type_name not in REPACKED_TYPES or len(t.dims) != 2 or t.name.startswith("token_embd"):
            continue
        layer = _layer_of(t.name)
        n_layers = info.block_count or 0
        on_gpu = layer >= n_layers - gpu_layers if layer is not None else gpu_layers > n_layers
        if not on_gpu:
            repack += t.n_bytes
    return info.tensor_data_size, repack


def _activation_floats(info: GGUFInfo) -> int:
    """f32 activations live at once per prompt token (FFN, Q/K/V, residual stream)."""
    n_embd = info.embedding_length or 0
    heads = info.head_count or 0
    q_dim = heads * (info.key_length or 0)
    kv_dim = (info.head_count_kv or heads) * (info.key_length or 0)
    return 2 * (info.feed_forward_length or 0) + 2 * q_dim + 2 * kv_dim + 3 * n_embd


def _compute(
    info: GGUFInfo, cells: int, ubatch: int, gpu_layers: int, flash_attn: bool
) -> tuple[dict[str, int], int]:
    """Compute memory by part, and what of it is committed at load (GPU buffers)."""
    heads = info.head_count or 0
    masks = 2 if any(swa_layers(info)) else 1
    per_token = ubatch * 4 * _activation_floats(info)
    parts: dict[str, int] = {}
    n_layers = info.block_count or 0
    cpu_layers = max(0, n_layers - gpu_layers)
    if gpu_layers == 0 or cpu_layers > 0:
        if flash_attn:
            per_cell = CPU_FA_BYTES_PER_MASK * masks + CPU_FA_BYTES_FIXED
        else:
            per_cell = CPU_ATTN_BYTES_PER_HEAD * heads + CPU_ATTN_BYTES_FIXED
        parts["compute_cpu_attention"] = ubatch * cells * per_cell
        parts["compute_cpu_activations"] = per_token
    committed = 0
    if gpu_layers != 0:
        logits = ubatch * 4 * ((info.vocab_size or 0) + 2 * (info.embedding_length or 0))
        scores = ubatch * cells * (2 * masks if flash_attn else 4 * (heads + masks))
        parts["compute_gpu_buffer"] = committed = max(logits, scores + per_token)
        parts["compute_host_buffer"] = ubatch * 4 * 2 * (info.embedding_length or 0)
    return parts, committed


def predict(
    info: GGUFInfo,
    n_ctx: int,
    tier: str,
    *,
    n_gpu_layers: int,
    cache_type: str = "f16",
    cache_type_v: str | None = None,
    n_batch: int = 512,
    n_ubatch: int = 512,
    flash_attn: bool = False,
    swa_full: bool = True,
    corrections: Corrections | None = None,
    identity: str | None = None,
) -> Prediction:
    """Predict what a runner for this model will occupy (see the module docstring).

    Args:
        info: the model's validated header.
        n_ctx: requested context (0: the model's training context).
        tier: ``"ram"`` or ``"swap"``; keys the measured corrections.
        n_gpu_layers: layers the runner will really offload: 0 on a CPU-only build or in the
            swap tier, -1 for all.
        cache_type: KV cache type for K (and V unless ``cache_type_v``).
        cache_type_v: KV cache type for V.
        n_batch: prompt batch size of the runner.
        n_ubatch: physical batch size.
        flash_attn: whether the runner enables flash attention.
        swa_full: full-size cache for sliding-window layers (llama.cpp's default).
        corrections: measured figures; None predicts from the model alone.
        identity: the model's key in ``corrections`` (default: :func:`model_identity` of
            ``info.path``).

    Returns:
        The prediction, with the measured adjustment applied when there is one.

    Raises:
        ValueError: an unknown tier or cache type.
    """
    if tier not in LOADED_TIERS:
        raise ValueError(f"cannot predict the {tier!r} tier; a runner lives in 'ram' or 'swap'")
    n_layers = info.block_count or 0
    gpu_layers = n_layers + 1 if n_gpu_layers < 0 else min(n_gpu_layers, n_layers + 1)
    requested = n_ctx if n_ctx > 0 else (info.context_length or 4096)
    _, ubatch = effective_batches(requested, n_batch, n_ubatch)
    kv = kv_cache(
        info, n_ctx, cache_type=cache_type, cache_type_v=cache_type_v,
        n_batch=n_batch, n_ubatch=n_ubatch, swa_full=swa_full,
    )
    tensors, repack = _weights(info, gpu_layers)
    compute_parts, committed = _compute(info, kv.cells, ubatch, gpu_layers, flash_attn)
    baseline = RUNNER_BASELINE_BYTES
    if corrections is not None and corrections.runner_baseline() is not None:
        baseline = int(corrections.runner_baseline() or 0)
    host = (
        HOST_FIXED_BYTES
        + BYTES_PER_VOCAB_ENTRY * (info.vocab_size or 0)
        + BYTES_PER_MERGE * _merge_count(info)
    )
    cuda = CUDA_RUNTIME_BYTES if gpu_layers > 0 else 0
    details = {
        "weights_tensors": tensors,
        "weights_repacked": repack,
        "kv_k": kv.k_bytes,
        "kv_v": kv.v_bytes,
        **compute_parts,
        "runner_baseline": baseline,
        "host_tables": host,
        "cuda_runtime": cuda,
    }
    base = Prediction(
        weights=tensors + repack,
        kv_cache=kv.total,
        compute=sum(compute_parts.values()),
        overhead=baseline + host + cuda,
        tier=tier,
        n_ctx=kv.cells,
        compute_at_load=committed,
        details=MappingProxyType(details),
    )
    if corrections is None:
        return base
    key = identity or model_identity(info.path)
    found = corrections.correction_for(key, kv.cells, tier, estimate=base.estimate, at_load=base.at_load)
    if found is None:
        return base
    return Prediction(
        weights=base.weights,
        kv_cache=base.kv_cache,
        compute=base.compute,
        overhead=base.overhead,
        adjustment=found.total - base.estimate,
        tier=tier,
        n_ctx=kv.cells,
        basis=found.basis,
        compute_at_load=committed,
        details=base.details,
    )
