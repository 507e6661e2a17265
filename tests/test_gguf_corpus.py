"""A corpus of crafted GGUF files: each broken one must be refused with the right field."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orin_console.core.errors import GGUFError
from orin_console.core.gguf import DEFAULT_LIMITS, GGUFLimits, read_gguf

from gguf_craft import (
    ARRAY,
    BOOL,
    F16,
    F32,
    FLOAT32,
    FLOAT64,
    INT32,
    N_HEAD,
    N_LAYERS,
    N_VOCAB,
    Q8_0,
    STRING,
    UINT32,
    UINT64,
    Craft,
    Tensor,
    arr,
    baseline,
    gstr,
    u32,
    u64,
    val,
)

U64_MAX = (1 << 64) - 1


def _write(tmp_path: Path, data: bytes, name: str = "m.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---- builders for the broken files -------------------------------------------------


def _raw(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _edit(fn: Callable[[Craft], object]) -> Callable[[], bytes]:
    def build() -> bytes:
        c = baseline()
        fn(c)
        return c.build()

    return build


def _header_only(version: int) -> Callable[[], bytes]:
    return lambda: b"GGUF" + u32(version) + u64(0) + u64(0)


def _set_key_raw(c: Craft, i: int, raw_key: bytes) -> None:
    c.kvs[i] = (raw_key, c.kvs[i][1])


def _tensor_offset(name: str, offset: int) -> Callable[[Craft], None]:
    def fn(c: Craft) -> None:
        c.tensor(name).offset = offset

    return fn


def _swap_offsets(c: Craft) -> None:
    offs = c.tensor_offsets()
    c.tensors[0].offset, c.tensors[1].offset = offs[1], offs[0]
    for t, o in zip(c.tensors[2:], offs[2:], strict=True):
        t.offset = o


def _overlap(c: Craft) -> None:
    offs = c.tensor_offsets()
    for t, o in zip(c.tensors, offs, strict=True):
        t.offset = o
    c.tensors[1].offset = 32  # token_embd.weight occupies 0..680


def _no_dims(c: Craft) -> None:
    c.tensors[1].dims = []
    c.tensors[1].n_dims = 0


def _truncate_data(c: Craft) -> None:
    c.truncate = len(c.build()) - 100


def _truncate_in_tensor_infos(c: Craft) -> None:
    head, _ = c.header()
    c.truncate = len(head) - 20


def _many_tokens(bad_index: int, n: int, long_len: int = 0) -> Callable[[Craft], None]:
    """A vocabulary large enough to cross the reader's 1 MiB chunks, one token bad."""

    def fn(c: Craft) -> None:
        tokens: list[object] = [f"t{i}" + "x" * (i % 50) for i in range(n)]
        if long_len:
            tokens[bad_index - 1] = "L" * long_len
        tokens[bad_index] = b"\xff\xfe"
        c.set("tokenizer.ggml.tokens", arr(STRING, tokens))
        c.drop("tokenizer.ggml.scores")
        c.drop("tokenizer.ggml.token_type")

    return fn


@dataclass(frozen=True)
class Case:
    """One crafted file, the field the error must name and words its reason must hold."""

    id: str
    build: Callable[[], bytes]
    field: str
    reason: str = ""
    limits: GGUFLimits = DEFAULT_LIMITS


TOKENS_KEY = "tokenizer.ggml.tokens"

CASES: list[Case] = [
    # -- file, magic, version ---------------------------------------------------------
    Case("empty-file", _raw(b""), "file", "empty"),
    Case("three-bytes", _raw(b"GGU"), "magic"),
    Case("bad-magic", _edit(lambda c: setattr(c, "magic", b"GGML")), "magic", "not a GGUF"),
    Case("version-0", _edit(lambda c: setattr(c, "version", 0)), "version", "not supported"),
    Case("version-1", _edit(lambda c: setattr(c, "version", 1)), "version", "not supported"),
    Case("version-4", _edit(lambda c: setattr(c, "version", 4)), "version", "not supported"),
    Case(
        "version-byte-swapped",
        _edit(lambda c: setattr(c, "version", 0x03000000)),
        "version",
        "big-endian GGUF is not supported",
    ),
    Case("shorter-than-header", _raw(b"GGUF" + u32(3) + b"\x01\x00"), "n_tensors", "truncated"),
    Case("no-kv-count", _raw(b"GGUF" + u32(3) + u64(0)), "n_kv", "truncated"),
    # -- counts -----------------------------------------------------------------------
    Case(
        "n_tensors-u64-max", _edit(lambda c: setattr(c, "n_tensors", U64_MAX)), "n_tensors", "limit"
    ),
    Case(
        "n_tensors-beyond-file",
        _edit(lambda c: setattr(c, "n_tensors", 60000)),
        "n_tensors",
        "bytes remain",
    ),
    Case("n_kv-u64-max", _edit(lambda c: setattr(c, "n_kv", U64_MAX)), "n_kv", "limit"),
    Case("n_kv-beyond-file", _edit(lambda c: setattr(c, "n_kv", 60000)), "n_kv", "bytes remain"),
    # -- keys -------------------------------------------------------------------------
    Case(
        "key-past-eof",
        _edit(lambda c: _set_key_raw(c, 0, u64(60000) + b"general")),
        "kv[0].key",
        "truncated",
    ),
    Case("key-over-limit", _edit(lambda c: _set_key_raw(c, 0, u64(1 << 40))), "kv[0].key", "limit"),
    Case("key-empty", _edit(lambda c: _set_key_raw(c, 1, gstr(b""))), "kv[1].key", "empty"),
    Case(
        "key-not-utf8",
        _edit(lambda c: _set_key_raw(c, 2, gstr(b"gen\xc3\x28"))),
        "kv[2].key",
        "UTF-8",
    ),
    Case(
        "key-duplicate",
        _edit(lambda c: c.kvs.append(c.kvs[0])),
        "general.architecture",
        "duplicate",
    ),
    # -- values -----------------------------------------------------------------------
    Case(
        "value-type-13",
        _edit(lambda c: c.set("general.name", u32(13) + gstr("x"))),
        "general.name",
        "unknown value type",
    ),
    Case(
        "value-type-huge",
        _edit(lambda c: c.set("general.name", u32(0xFFFFFFFF))),
        "general.name",
        "unknown value type",
    ),
    Case(
        "bool-is-2",
        _edit(lambda c: c.set("tokenizer.ggml.add_bos_token", u32(BOOL) + b"\x02")),
        "tokenizer.ggml.add_bos_token",
        "bool",
    ),
    Case(
        "string-past-eof",
        _edit(lambda c: c.set("tokenizer.chat_template", u32(STRING) + u64(10**6) + b"{%")),
        "tokenizer.chat_template",
        "truncated",
    ),
    Case(
        "string-over-limit",
        _edit(lambda c: c.set("general.name", u32(STRING) + u64(1 << 63))),
        "general.name",
        "limit",
    ),
    Case(
        "string-not-utf8",
        _edit(lambda c: c.set("general.name", val(STRING, b"caf\xe9"))),
        "general.name",
        "UTF-8",
    ),
    Case(
        "array-nested",
        _edit(lambda c: c.set("general.tags", u32(ARRAY) + u32(ARRAY) + u64(1))),
        "general.tags",
        "nested",
    ),
    Case(
        "array-elem-type-unknown",
        _edit(lambda c: c.set("general.tags", u32(ARRAY) + u32(42) + u64(1))),
        "general.tags",
        "element type",
    ),
    Case(
        "array-count-past-eof",
        _edit(lambda c: c.set("general.tags", u32(ARRAY) + u32(UINT32) + u64(10**6))),
        "general.tags",
        "truncated",
    ),
    Case(
        "array-count-u64-max",
        _edit(lambda c: c.set("general.tags", u32(ARRAY) + u32(STRING) + u64(U64_MAX))),
        "general.tags",
        "limit",
    ),
    Case(
        "array-string-elem-past-eof",
        _edit(
            lambda c: c.set(
                "general.tags", u32(ARRAY) + u32(STRING) + u64(2) + gstr("a") + u64(10**6)
            )
        ),
        "general.tags[1]",
        "truncated",
    ),
    Case("token-not-utf8", _edit(_many_tokens(17, 20)), f"{TOKENS_KEY}[17]", "UTF-8"),
    Case(
        "token-not-utf8-after-chunk",
        _edit(_many_tokens(60000, 70000)),
        f"{TOKENS_KEY}[60000]",
        "UTF-8",
    ),
    Case(
        "token-not-utf8-after-long",
        _edit(_many_tokens(30, 40, long_len=300)),
        f"{TOKENS_KEY}[30]",
        "UTF-8",
    ),
    Case(
        "bool-array-bad",
        _edit(lambda c: c.set("general.flags", arr(BOOL, [0, 1] * 10 + [7]))),
        "general.flags",
        "0 or 1",
    ),
    # -- alignment --------------------------------------------------------------------
    Case(
        "alignment-uint64",
        _edit(lambda c: c.set("general.alignment", val(UINT64, 32))),
        "general.alignment",
        "uint32",
    ),
    Case(
        "alignment-zero",
        _edit(lambda c: c.set("general.alignment", val(UINT32, 0))),
        "general.alignment",
        "power of two",
    ),
    Case(
        "alignment-48",
        _edit(lambda c: c.set("general.alignment", val(UINT32, 48))),
        "general.alignment",
        "power of two",
    ),
    # -- required keys and hyperparameters --------------------------------------------
    Case(
        "arch-missing",
        _edit(lambda c: c.drop("general.architecture")),
        "general.architecture",
        "missing",
    ),
    Case(
        "arch-not-string",
        _edit(lambda c: c.set("general.architecture", val(UINT32, 1))),
        "general.architecture",
        "string",
    ),
    Case(
        "arch-control-chars",
        _edit(lambda c: c.set("general.architecture", val(STRING, "lla\x1b[2Jma"))),
        "general.architecture",
        "architecture name",
    ),
    Case(
        "block_count-missing",
        _edit(lambda c: c.drop("llama.block_count")),
        "llama.block_count",
        "missing",
    ),
    Case(
        "block_count-2^31",
        _edit(lambda c: c.set("llama.block_count", val(UINT32, 1 << 31))),
        "llama.block_count",
        "range",
    ),
    Case(
        "block_count-zero",
        _edit(lambda c: c.set("llama.block_count", val(UINT32, 0))),
        "llama.block_count",
        "range",
    ),
    Case(
        "block_count-float",
        _edit(lambda c: c.set("llama.block_count", val(FLOAT32, 2.0))),
        "llama.block_count",
        "integer",
    ),
    Case(
        "block_count-string",
        _edit(lambda c: c.set("llama.block_count", val(STRING, "2"))),
        "llama.block_count",
        "integer",
    ),
    Case(
        "context_length-zero",
        _edit(lambda c: c.set("llama.context_length", val(UINT32, 0))),
        "llama.context_length",
        "range",
    ),
    Case(
        "embedding_length-float",
        _edit(lambda c: c.set("llama.embedding_length", val(FLOAT64, 32.0))),
        "llama.embedding_length",
        "integer",
    ),
    Case(
        "head_count_kv-not-divisor",
        _edit(lambda c: c.set("llama.attention.head_count_kv", val(UINT32, 3))),
        "llama.attention.head_count_kv",
        "divide",
    ),
    Case(
        "head_count_kv-above-heads",
        _edit(lambda c: c.set("llama.attention.head_count_kv", val(UINT32, 8))),
        "llama.attention.head_count_kv",
        "divide",
    ),
    Case(
        "head_count_kv-per-layer-wrong-length",
        _edit(lambda c: c.set("llama.attention.head_count_kv", arr(UINT32, [2] * (N_LAYERS + 1)))),
        "llama.attention.head_count_kv",
        "block_count",
    ),
    Case(
        "embedding-not-multiple-of-heads",
        _edit(
            lambda c: c.set("llama.attention.head_count", val(UINT32, 3)).set(
                "llama.attention.head_count_kv", val(UINT32, 1)
            )
        ),
        "llama.embedding_length",
        "multiple",
    ),
    Case(
        "expert_count-over-max",
        _edit(lambda c: c.set("llama.expert_count", val(UINT32, 1000))),
        "llama.expert_count",
        "range",
    ),
    Case(
        "expert_used-without-experts",
        _edit(lambda c: c.set("llama.expert_used_count", val(UINT32, 2))),
        "llama.expert_used_count",
        "inconsistent",
    ),
    Case(
        "file_type-negative",
        _edit(lambda c: c.set("general.file_type", val(INT32, -1))),
        "general.file_type",
        "range",
    ),
    # -- tokenizer --------------------------------------------------------------------
    Case(
        "tokens-int-array",
        _edit(lambda c: c.set(TOKENS_KEY, arr(INT32, list(range(N_VOCAB))))),
        TOKENS_KEY,
        "array of strings",
    ),
    Case(
        "tokens-scalar",
        _edit(lambda c: c.set(TOKENS_KEY, val(STRING, "abc"))),
        TOKENS_KEY,
        "array of strings",
    ),
    Case(
        "scores-float64",
        _edit(lambda c: c.set("tokenizer.ggml.scores", arr(FLOAT64, [0.0] * N_VOCAB))),
        "tokenizer.ggml.scores",
        "float32",
    ),
    Case(
        "scores-short",
        _edit(lambda c: c.set("tokenizer.ggml.scores", arr(FLOAT32, [0.0] * (N_VOCAB - 1)))),
        "tokenizer.ggml.scores",
        "entries",
    ),
    Case(
        "token_type-uint32",
        _edit(lambda c: c.set("tokenizer.ggml.token_type", arr(UINT32, [1] * N_VOCAB))),
        "tokenizer.ggml.token_type",
        "int32",
    ),
    Case(
        "token_type-long",
        _edit(lambda c: c.set("tokenizer.ggml.token_type", arr(INT32, [1] * (N_VOCAB + 5)))),
        "tokenizer.ggml.token_type",
        "entries",
    ),
    # -- tensor infos -----------------------------------------------------------------
    Case(
        "tensor-name-64-bytes",
        _edit(lambda c: setattr(c.tensors[0], "name", "w" * 64)),
        "tensor[0].name",
        "at most 63",
    ),
    Case(
        "tensor-name-empty",
        _edit(lambda c: setattr(c.tensors[1], "name", "")),
        "tensor[1].name",
        "empty",
    ),
    Case(
        "tensor-name-not-utf8",
        _edit(lambda c: setattr(c.tensors[1], "name", b"\x80bad")),
        "tensor[1].name",
        "UTF-8",
    ),
    Case(
        "tensor-name-duplicate",
        _edit(lambda c: setattr(c.tensors[3], "name", "output_norm.weight")),
        "tensor[output_norm.weight].name",
        "duplicate",
    ),
    Case("tensor-n_dims-0", _edit(_no_dims), "tensor[output_norm.weight].n_dims", "n_dims = 0"),
    Case(
        "tensor-n_dims-5",
        _edit(lambda c: setattr(c.tensors[1], "dims", [2, 2, 2, 2, 2])),
        "tensor[output_norm.weight].n_dims",
        "n_dims = 5",
    ),
    Case(
        "tensor-n_dims-u32-max",
        _edit(lambda c: setattr(c.tensors[1], "n_dims", 0xFFFFFFFF)),
        "tensor[output_norm.weight].n_dims",
    ),
    Case(
        "tensor-dim-negative",
        _edit(lambda c: setattr(c.tensors[1], "dims", [1 << 63])),
        "tensor[output_norm.weight].dims",
        "negative",
    ),
    Case(
        "tensor-dims-overflow",
        _edit(lambda c: setattr(c.tensors[1], "dims", [1 << 40, 1 << 40])),
        "tensor[output_norm.weight].dims",
        "overflow",
    ),
    Case(
        "tensor-dim-zero",
        _edit(lambda c: setattr(c.tensors[1], "dims", [32, 0])),
        "tensor[output_norm.weight].dims",
        "is 0",
    ),
    Case(
        "tensor-type-unknown",
        _edit(lambda c: setattr(c.tensors[1], "ggml_type", 99)),
        "tensor[output_norm.weight].type",
        "unknown ggml type 99",
    ),
    Case(
        "tensor-type-removed-q4_2",
        _edit(lambda c: setattr(c.tensors[1], "ggml_type", 4)),
        "tensor[output_norm.weight].type",
        "Q4_2",
    ),
    Case(
        "tensor-type-removed-q4_0_4_4",
        _edit(lambda c: setattr(c.tensors[1], "ggml_type", 31)),
        "tensor[output_norm.weight].type",
        "removed",
    ),
    Case(
        "tensor-type-removed-iq4_nl_8_8",
        _edit(lambda c: setattr(c.tensors[1], "ggml_type", 38)),
        "tensor[output_norm.weight].type",
        "removed",
    ),
    Case(
        "tensor-row-not-block-multiple",
        _edit(lambda c: setattr(c.tensor("token_embd.weight"), "dims", [33, N_VOCAB])),
        "tensor[token_embd.weight].dims",
        "block size 32",
    ),
    Case(
        "tensor-offset-misaligned",
        _edit(_tensor_offset("output_norm.weight", 704 + 4)),
        "tensor[output_norm.weight].offset",
        "alignment",
    ),
    Case(
        "tensor-offsets-out-of-order",
        _edit(_swap_offsets),
        "tensor[output_norm.weight].offset",
        "out of order",
    ),
    Case(
        "tensor-offsets-overlap", _edit(_overlap), "tensor[output_norm.weight].offset", "overlaps"
    ),
    Case(
        "tensor-offset-past-end",
        _edit(_tensor_offset("blk.1.ffn_up.weight", 1 << 40)),
        "tensor[blk.1.ffn_up.weight].offset",
        "past the end",
    ),
    Case("tensor-data-truncated", _edit(_truncate_data), "tensor_data", "truncated"),
    Case(
        "tensor-data-missing", _edit(lambda c: setattr(c, "data", b"")), "tensor_data", "truncated"
    ),
    Case(
        "tensor-infos-truncated",
        _edit(_truncate_in_tensor_infos),
        "tensor[blk.1.ffn_up.weight]",
        "truncated",
    ),
    # -- limits -----------------------------------------------------------------------
    Case(
        "header-over-limit",
        _edit(lambda c: None),
        "header",
        "exceed",
        GGUFLimits(max_header_bytes=512),
    ),
    Case(
        "tensors-over-custom-limit",
        _edit(lambda c: None),
        "n_tensors",
        "limit",
        GGUFLimits(max_tensors=4),
    ),
    Case(
        "string-over-custom-limit",
        _edit(lambda c: None),
        "tokenizer.chat_template",
        "limit",
        GGUFLimits(max_string_len=16),
    ),
    Case(
        "array-over-custom-limit",
        _edit(lambda c: None),
        TOKENS_KEY,
        "limit",
        GGUFLimits(max_array_len=10),
    ),
    Case(
        "token-over-custom-string-limit",
        _edit(_many_tokens(20, 30, long_len=200)),
        f"{TOKENS_KEY}[19]",
        "limit",
        GGUFLimits(max_string_len=150),
    ),
]


def test_corpus_is_large_and_ids_unique() -> None:
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_crafted_file_is_refused(case: Case, tmp_path: Path) -> None:
    path = _write(tmp_path, case.build())
    with pytest.raises(GGUFError) as excinfo:
        read_gguf(path, case.limits)
    err = excinfo.value
    assert err.field.startswith(case.field), f"field {err.field!r}, reason {err.reason!r}"
    assert case.reason in err.reason, f"field {err.field!r}, reason {err.reason!r}"
    assert err.path == str(path)
    assert str(path) in str(err)


# ---- files that must be accepted ---------------------------------------------------


def test_baseline_is_accepted(tmp_path: Path) -> None:
    c = baseline()
    data = c.build()
    info = read_gguf(_write(tmp_path, data))
    assert info.version == 3
    assert info.file_size == len(data)
    assert info.architecture == "llama"
    assert info.name == "crafted"
    assert (info.block_count, info.embedding_length, info.feed_forward_length) == (2, 32, 64)
    assert (info.head_count, info.head_count_kv, info.key_length, info.value_length) == (4, 2, 8, 8)
    assert info.head_count_kv_per_layer is None
    assert info.context_length == 128
    assert info.rope_freq_base == 10000.0
    assert info.vocab_size == N_VOCAB
    assert info.tokenizer_model == "llama"
    assert info.chat_template is not None and info.chat_template.startswith("{% for m")
    assert info.file_type == 0 and info.quantization == "F32"
    assert info.n_tensors == len(c.tensors) == len(info.tensors)
    assert info.n_kv == len(c.kvs)
    head, _ = c.header()
    assert info.data_offset == -(-len(head) // 32) * 32
    embd = info.tensors[0]
    assert (embd.name, embd.dims, embd.type_name, embd.offset) == (
        "token_embd.weight",
        (32, N_VOCAB),
        "Q8_0",
        0,
    )
    assert embd.n_bytes == 34 * N_VOCAB
    assert info.tensors[1].offset == 704  # 680 rounded up to the alignment
    assert info.n_params == sum(t.n_elements for t in info.tensors)
    assert info.tensor_data_size == sum(t.n_bytes() for t in c.tensors)
    assert info.metadata["general.tags"] == ("tiny", "test")
    assert info.metadata[TOKENS_KEY] == f"<array of {N_VOCAB} string>"
    assert info.metadata["tokenizer.ggml.add_bos_token"] is True
    assert info.metadata["llama.block_count"] == 2


def test_version_2_and_wider_alignment_are_accepted(tmp_path: Path) -> None:
    c = baseline()
    c.version = 2
    c.alignment = 64
    c.set("general.alignment", val(UINT32, 64))
    info = read_gguf(_write(tmp_path, c.build()))
    assert (info.version, info.alignment) == (2, 64)
    assert info.data_offset % 64 == 0
    assert all(t.offset % 64 == 0 for t in info.tensors)


def test_per_layer_arrays_and_swa_pattern(tmp_path: Path) -> None:
    """Hybrid/OpenELM-style per-layer arrays: 0 KV heads marks a layer without attention."""
    c = baseline()
    c.set("llama.attention.head_count", arr(UINT32, [N_HEAD, 2]))
    c.set("llama.attention.head_count_kv", arr(INT32, [2, 0]))
    c.set("llama.feed_forward_length", arr(UINT32, [64, 48]))
    c.set("llama.attention.sliding_window", val(UINT32, 16))
    c.set("llama.attention.sliding_window_pattern", arr(BOOL, [1, 0]))
    c.set("llama.attention.key_length", val(UINT32, 8))
    c.set("llama.attention.value_length", val(UINT32, 8))
    info = read_gguf(_write(tmp_path, c.build()))
    assert info.head_count_per_layer == (4, 2) and info.head_count == 4
    assert info.head_count_kv_per_layer == (2, 0) and info.head_count_kv == 2
    assert info.feed_forward_length_per_layer == (64, 48) and info.feed_forward_length == 64
    assert info.sliding_window == 16
    assert info.sliding_window_pattern == (True, False)


def test_long_per_layer_array_is_read_back_from_the_file(tmp_path: Path) -> None:
    """Arrays over 16 elements are summarised in metadata but still read for hparams."""
    c = baseline()
    n = 20
    c.set("llama.block_count", val(UINT32, n))
    kv = [2, 4, 1, 0] * 5
    c.set("llama.attention.head_count_kv", arr(UINT32, kv))
    info = read_gguf(_write(tmp_path, c.build()))
    assert info.head_count_kv_per_layer == tuple(kv)
    assert info.metadata["llama.attention.head_count_kv"] == "<array of 20 uint32>"


def test_unknown_arch_needs_no_block_count(tmp_path: Path) -> None:
    c = baseline()
    c.set("general.architecture", val(STRING, "future-arch"))
    info = read_gguf(_write(tmp_path, c.build()))
    assert info.architecture == "future-arch"
    assert info.block_count is None and info.head_count is None


def test_vocab_only_file_without_tensors(tmp_path: Path) -> None:
    c = baseline()
    c.tensors = []
    c.data = b""
    info = read_gguf(_write(tmp_path, c.build()))
    assert info.n_tensors == 0 and info.tensor_data_size == 0 and info.n_params == 0


def test_quantization_falls_back_to_dominant_tensor_type(tmp_path: Path) -> None:
    c = baseline()
    c.drop("general.file_type")
    c.tensors.append(Tensor("big.weight", [256, 64], F16))
    info = read_gguf(_write(tmp_path, c.build()))
    assert info.file_type is None and info.quantization == "F16"
    c.set("general.file_type", val(UINT32, 5))  # Q4_2 era ftype llama.cpp no longer names
    info = read_gguf(_write(tmp_path, c.build(), "m2.gguf"))
    assert info.file_type == 5 and info.quantization == "F16"


def test_big_vocabulary_across_chunks_is_counted(tmp_path: Path) -> None:
    """Tokens straddling the reader's 1 MiB buffer edges, some long, all counted."""
    c = baseline()
    n = 120_000
    tokens: list[object] = [("ü" if i % 3 else "t") * (i % 200) + str(i) for i in range(n)]
    c.set(TOKENS_KEY, arr(STRING, tokens))
    c.set("tokenizer.ggml.scores", arr(FLOAT32, [0.0] * n))
    c.set("tokenizer.ggml.token_type", arr(INT32, [1] * n))
    c.set("llama.vocab_size", val(UINT32, 7))
    data = c.build()
    assert len(data) > 3 * (1 << 20)
    info = read_gguf(_write(tmp_path, data))
    assert info.vocab_size == n  # the token list wins over <arch>.vocab_size


def test_arch_vocab_size_used_without_tokens(tmp_path: Path) -> None:
    c = baseline()
    for key in (TOKENS_KEY, "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        c.drop(key)
    c.set("llama.vocab_size", val(UINT32, 1234))
    assert read_gguf(_write(tmp_path, c.build())).vocab_size == 1234


# ---- the file itself ---------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GGUFError) as excinfo:
        read_gguf(tmp_path / "absent.gguf")
    assert excinfo.value.field == "file"


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GGUFError) as excinfo:
        read_gguf(tmp_path)
    assert excinfo.value.field == "file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.timeout(10)
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    with pytest.raises(GGUFError) as excinfo:
        read_gguf(fifo)
    assert (excinfo.value.field, excinfo.value.reason) == ("file", "not a regular file")


def test_absurd_block_count_is_refused_before_llama_cpp(tmp_path: Path) -> None:
    """llama.cpp would abort the whole process on this file; the reader refuses it."""
    c = baseline()
    c.set("llama.block_count", val(UINT32, 1 << 31))
    with pytest.raises(GGUFError) as excinfo:
        read_gguf(_write(tmp_path, c.build()))
    assert excinfo.value.field == "llama.block_count"
    assert str(1 << 31) in excinfo.value.reason


def test_q8_0_and_f16_sizes(tmp_path: Path) -> None:
    c = baseline()
    info = read_gguf(_write(tmp_path, c.build()))
    by_name = {t.name: t for t in info.tensors}
    assert by_name["blk.0.ffn_up.weight"].type_name == "F16"
    assert by_name["blk.0.ffn_up.weight"].n_bytes == 32 * 64 * 2
    assert by_name["token_embd.weight"].ggml_type == Q8_0
    assert by_name["output_norm.weight"].ggml_type == F32


def test_short_string_limit_applies_inside_long_arrays(tmp_path: Path) -> None:
    """A custom max_string_len below 128 still catches short tokens in the bulk walk."""
    c = baseline()
    tokens: list[object] = ["ab"] * 30
    tokens[25] = "x" * 40
    c.set(TOKENS_KEY, arr(STRING, tokens))
    c.drop("tokenizer.ggml.scores")
    c.drop("tokenizer.ggml.token_type")
    with pytest.raises(GGUFError) as excinfo:
        read_gguf(_write(tmp_path, c.build()), GGUFLimits(max_string_len=32, max_key_len=64))
    assert excinfo.value.field == f"{TOKENS_KEY}[25]"


def test_error_text_from_the_file_is_sanitised(tmp_path: Path) -> None:
    """A key carrying terminal escapes must not reach the operator's terminal raw."""
    c = baseline()
    c.set("evil\x1b]0;pwned\x07\u202e", u32(99))
    with pytest.raises(GGUFError) as excinfo:
        read_gguf(_write(tmp_path, c.build()))
    err = excinfo.value
    assert err.field == "evil\ufffd]0;pwned\ufffd\ufffd"
    assert "\x1b" not in str(err) and "\u202e" not in str(err)


def test_display_metadata_and_name_are_sanitised(tmp_path: Path) -> None:
    c = baseline()
    c.set("general.name", val(STRING, "nice\x1b[31m model\r\n\u202eevil"))
    c.set("tokenizer.chat_template", val(STRING, "{{ a }}\n\t{{ b }}\x1b[2J" + "x" * 500))
    info = read_gguf(_write(tmp_path, c.build()))
    assert info.name == "nice\ufffd[31m model\ufffd\ufffd\ufffdevil"
    assert info.metadata["general.name"] == "nice\x1b[31m model\r\n\u202eevil"  # raw kept
    rows = dict(info.display_metadata(max_value_len=40))
    assert rows["general.name"] == "nice\ufffd[31m model\ufffd\ufffd\ufffdevil"
    template = rows["tokenizer.chat_template"]
    assert len(template) == 40 and template.endswith("…") and "\n" not in template
    assert rows["general.tags"] == "[tiny, test]"
    assert rows[TOKENS_KEY] == f"<array of {N_VOCAB} string>"
    assert rows["llama.block_count"] == "2"
    shown = info.chat_template_display()
    assert shown is not None and shown.startswith("{{ a }}\n\t{{ b }}\ufffd[2J")
    assert info.chat_template is not None and "\x1b" in info.chat_template  # raw kept


def test_seven_gigabyte_model_is_read_in_milliseconds(tmp_path: Path) -> None:
    """Only the header is read: a 7 GB (sparse) file costs what a small one costs."""
    c = baseline()
    huge = Tensor("huge.weight", [4096, 430_000], F32)  # 7.05 GB of F32
    c.tensors.append(huge)
    c.data = b""
    head, _ = c.header()
    size = -(-len(head) // 32) * 32 + c.tensor_offsets()[-1] + huge.n_bytes()
    path = _write(tmp_path, c.build())
    os.truncate(path, size)  # sparse: no disk space used
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        info = read_gguf(path)
        best = min(best, time.perf_counter() - start)
    assert info.file_size == size > 7 * 10**9
    assert info.tensors[-1].n_bytes == 4096 * 430_000 * 4
    assert best < 0.050, f"{best * 1000:.1f} ms"
    os.truncate(path, size - 1)
    with pytest.raises(GGUFError) as excinfo:
        read_gguf(path)
    assert excinfo.value.field == "tensor_data"
