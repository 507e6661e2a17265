"""Tiny, deterministic llama-architecture GGUF models for tests.

The models have random weights (so they generate gibberish) but a complete, valid header
and a byte-level SentencePiece vocabulary (``<unk>``, ``<s>``, ``</s>``, the 256 byte
tokens ``<0x00>``..``<0xFF>`` and ``▁``, SentencePiece's space), so real llama.cpp loads
them in milliseconds and round-trips any text through its tokenizer. Their size follows
the hyperparameters, so budget tests can make models of tens of megabytes on purpose.

Example:
    >>> path = write_tiny_llama(tmp_path / "tiny.gguf")        # doctest: +SKIP
    >>> big = write_tiny_llama(tmp_path / "big.gguf", n_embd=1024, n_layers=6,
    ...                        n_ff=2816)                        # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from gguf import GGUFWriter, LlamaFileType, TokenType

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "TINY_VOCAB_SIZE",
    "FType",
    "tiny_model_bytes_estimate",
    "tiny_vocab",
    "write_tiny_llama",
]

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""A small Jinja chat template, stored as ``tokenizer.chat_template``."""

TINY_VOCAB_SIZE = 3 + 256 + 1
"""``<unk>``, ``<s>``, ``</s>``, one token per byte and ``▁`` (the space)."""

_ALIGNMENT = 32
_HEADER_ALLOWANCE = 16 * 1024  # metadata + tensor infos of a tiny model stay below this
_WEIGHT_SCALE = 0.02

FType = Literal["f32", "f16"]


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """Return the byte-level SentencePiece vocabulary: tokens, scores and token types.

    Every character other than the space falls back to its UTF-8 byte tokens. The space
    has its own token ``▁`` (U+2581) because SentencePiece turns spaces into ``▁`` before
    tokenizing and turns only a *normal* ``▁`` token back into a space.
    """
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581"]
    scores = [0.0] * len(tokens)
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    types += [int(TokenType.BYTE)] * 256 + [int(TokenType.NORMAL)]
    return tokens, scores, types


def _tensor_shapes(
    n_layers: int, n_embd: int, n_head: int, n_head_kv: int, n_ff: int, n_vocab: int
) -> list[tuple[str, tuple[int, ...]]]:
    """Names and numpy shapes (rows, cols) of every tensor, in file order."""
    n_embd_kv = n_embd // n_head * n_head_kv
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("token_embd.weight", (n_vocab, n_embd)),
        ("output_norm.weight", (n_embd,)),
        ("output.weight", (n_vocab, n_embd)),
    ]
    for i in range(n_layers):
        p = f"blk.{i}"
        shapes += [
            (f"{p}.attn_norm.weight", (n_embd,)),
            (f"{p}.attn_q.weight", (n_embd, n_embd)),
            (f"{p}.attn_k.weight", (n_embd_kv, n_embd)),
            (f"{p}.attn_v.weight", (n_embd_kv, n_embd)),
            (f"{p}.attn_output.weight", (n_embd, n_embd)),
            (f"{p}.ffn_norm.weight", (n_embd,)),
            (f"{p}.ffn_gate.weight", (n_ff, n_embd)),
            (f"{p}.ffn_up.weight", (n_ff, n_embd)),
            (f"{p}.ffn_down.weight", (n_embd, n_ff)),
        ]
    return shapes


def _check_shape_args(n_layers: int, n_embd: int, n_head: int, n_head_kv: int, n_ff: int) -> None:
    if min(n_layers, n_embd, n_head, n_head_kv, n_ff) < 1:
        raise ValueError("n_layers, n_embd, n_head, n_head_kv and n_ff must all be >= 1")
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    if n_head % n_head_kv:
        raise ValueError(f"n_head ({n_head}) must be a multiple of n_head_kv ({n_head_kv})")
    if (n_embd // n_head) % 2:
        raise ValueError("the head size n_embd // n_head must be even (RoPE rotates pairs)")


def tiny_model_bytes_estimate(
    *,
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    ftype: FType = "f32",
) -> int:
    """Return an upper bound of the file size :func:`write_tiny_llama` produces.

    Exact for the tensor data (with alignment padding); the header is bounded by a fixed
    16 KiB allowance, so the estimate is at most that much too high.

    Args:
        n_layers: transformer blocks.
        n_embd: embedding width.
        n_head: attention heads.
        n_head_kv: KV heads.
        n_ff: feed-forward width.
        ftype: ``"f32"`` or ``"f16"`` for the 2-D weights (norms stay F32).

    Returns:
        Bytes.
    """
    _check_shape_args(n_layers, n_embd, n_head, n_head_kv, n_ff)
    elem = 4 if ftype == "f32" else 2
    total = 0
    for _name, shape in _tensor_shapes(n_layers, n_embd, n_head, n_head_kv, n_ff, TINY_VOCAB_SIZE):
        n = int(np.prod(shape))
        size = n * (elem if len(shape) == 2 else 4)
        total += -(-size // _ALIGNMENT) * _ALIGNMENT
    return total + _HEADER_ALLOWANCE


def write_tiny_llama(
    path: str | os.PathLike[str],
    *,
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_ctx: int = 256,
    vocab: Literal["bytes"] = "bytes",
    ftype: FType = "f32",
    seed: int = 0,
    name: str = "tiny",
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    ascii_output: bool = False,
) -> Path:
    """Write a small random-weight llama model that llama.cpp loads and runs.

    The same arguments always give the same bytes.

    Args:
        path: where to write the ``.gguf`` file (overwritten).
        n_layers: transformer blocks.
        n_embd: embedding width; must be a multiple of ``n_head``.
        n_head: attention heads.
        n_head_kv: KV heads; must divide ``n_head``.
        n_ff: feed-forward width.
        n_ctx: training context length written to the header.
        vocab: only ``"bytes"`` (byte-level SentencePiece, 259 tokens) is offered.
        ftype: ``"f32"`` or ``"f16"`` for the 2-D weights; norms are always F32.
        seed: seed of the numpy generator drawing the weights.
        name: ``general.name``.
        chat_template: ``tokenizer.chat_template``; None to leave it out.
        ascii_output: zero the output rows of every token except printable ASCII bytes and
            ``▁``, so greedy decoding emits printable text one token at a time and never
            end-of-sequence: a greedy generation streams piece by piece and runs to
            ``max_tokens`` (random bytes would be held back by llama-cpp-python as
            incomplete UTF-8). For manager and engine tests that need long, steady streams.

    Returns:
        The path written.

    Raises:
        ValueError: inconsistent shape arguments or an unknown ``vocab``/``ftype``.
    """
    if vocab != "bytes":
        raise ValueError(f"unknown vocab {vocab!r}; only 'bytes' is offered")
    if ftype not in ("f32", "f16"):
        raise ValueError(f"unknown ftype {ftype!r}; use 'f32' or 'f16'")
    if n_ctx < 1:
        raise ValueError("n_ctx must be >= 1")
    _check_shape_args(n_layers, n_embd, n_head, n_head_kv, n_ff)
    out = Path(path)
    tokens, scores, types = tiny_vocab()
    head_dim = n_embd // n_head

    writer = GGUFWriter(out, arch="llama")
    writer.add_name(name)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(LlamaFileType.ALL_F32 if ftype == "f32" else LlamaFileType.MOSTLY_F16)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    rng = np.random.default_rng(seed)
    wtype = np.float32 if ftype == "f32" else np.float16
    for tname, shape in _tensor_shapes(n_layers, n_embd, n_head, n_head_kv, n_ff, len(tokens)):
        if len(shape) == 1:
            data = np.ones(shape, dtype=np.float32)
        else:
            data = (rng.standard_normal(shape, dtype=np.float32) * _WEIGHT_SCALE).astype(wtype)
            if ascii_output and tname == "output.weight":
                keep = np.zeros(len(tokens), dtype=bool)
                keep[3 + 0x20:3 + 0x7F] = True  # printable ASCII byte tokens
                keep[len(tokens) - 1] = True  # ▁
                data[~keep] = 0
        writer.add_tensor(tname, data)

    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return out
