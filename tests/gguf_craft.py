"""Hand-written GGUF bytes for the reader's tests.

``gguf.GGUFWriter`` refuses to write most of the broken files the reader must refuse, so
this module builds files field by field. :func:`baseline` is a small valid llama model
(2 layers, a 20-token vocabulary, F32 and Q8_0 tensors); each part of it is a plain
attribute that a test can replace with anything, valid or not, before :meth:`Craft.build`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

# GGUF metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = range(10)
UINT64, INT64, FLOAT64 = 10, 11, 12

# ggml tensor types used here: type -> (block size, bytes per block).
F32, F16, Q8_0 = 0, 1, 8
GGML_SIZES = {F32: (1, 4), F16: (1, 2), Q8_0: (32, 34)}

MAX_AUTO_DATA = 1 << 20

_SCALAR_FMT = {
    UINT8: "<B",
    INT8: "<b",
    UINT16: "<H",
    INT16: "<h",
    UINT32: "<I",
    INT32: "<i",
    FLOAT32: "<f",
    BOOL: "<B",
    UINT64: "<Q",
    INT64: "<q",
    FLOAT64: "<d",
}


def u32(v: int) -> bytes:
    """Little-endian uint32 (masked, so tests can pass any int)."""
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v: int) -> bytes:
    """Little-endian uint64 (masked, so tests can pass any int)."""
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def gstr(s: str | bytes) -> bytes:
    """A GGUF string: uint64 length then the bytes."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    return u64(len(b)) + b


def scalar(vtype: int, value: object) -> bytes:
    """Encode one value of a scalar type (no type tag)."""
    if vtype == STRING:
        assert isinstance(value, (str, bytes))
        return gstr(value)
    return struct.pack(_SCALAR_FMT[vtype], value)


def val(vtype: int, value: object) -> bytes:
    """Type tag + encoded scalar value, i.e. what follows a key."""
    return u32(vtype) + scalar(vtype, value)


def arr(elem_type: int, values: Sequence[object], count: int | None = None) -> bytes:
    """Type tag ARRAY + element type + count + elements (``count`` may lie)."""
    body = b"".join(scalar(elem_type, v) for v in values)
    n = len(values) if count is None else count
    return u32(ARRAY) + u32(elem_type) + u64(n) + body


@dataclass
class Tensor:
    """One tensor info. ``offset`` None means packed after the previous tensor."""

    name: str | bytes
    dims: list[int]
    ggml_type: int = F32
    offset: int | None = None
    n_dims: int | None = None  # None: len(dims)

    def n_bytes(self) -> int:
        block, size = GGML_SIZES.get(self.ggml_type, (1, 1))
        n = 1
        for d in self.dims:
            n *= d
        return n // block * size


@dataclass
class Craft:
    """A GGUF file as editable parts.

    Attributes:
        magic: the first four bytes.
        version: the version field.
        n_tensors: tensor count written; None writes ``len(tensors)``.
        n_kv: metadata count written; None writes ``len(kvs)``.
        kvs: ``(raw key bytes with length, raw type+value bytes)`` pairs, in order.
        tensors: tensor infos, in order.
        alignment: used to pad the header and to place packed tensors.
        data: the data section; None writes zeros as long as the tensors need (but at
            most ``MAX_AUTO_DATA``, so absurd dimensions do not exhaust memory).
        truncate: cut the finished file to this many bytes.
        append: bytes added at the very end.
    """

    magic: bytes = b"GGUF"
    version: int = 3
    n_tensors: int | None = None
    n_kv: int | None = None
    kvs: list[tuple[bytes, bytes]] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    alignment: int = 32
    data: bytes | None = None
    truncate: int | None = None
    append: bytes = b""

    # -- metadata editing -----------------------------------------------------------

    def keys(self) -> list[bytes]:
        return [k[8:] for k, _ in self.kvs]

    def index(self, key: str) -> int:
        return self.keys().index(key.encode())

    def set(self, key: str | bytes, value: bytes) -> Craft:
        """Replace the value of ``key`` (raw type+value bytes), or append the pair."""
        kb = key.encode() if isinstance(key, str) else key
        for i, (k, _) in enumerate(self.kvs):
            if k[8:] == kb:
                self.kvs[i] = (k, value)
                return self
        self.kvs.append((gstr(kb), value))
        return self

    def drop(self, key: str) -> Craft:
        del self.kvs[self.index(key)]
        return self

    def tensor(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    # -- layout ---------------------------------------------------------------------

    def tensor_offsets(self) -> list[int]:
        """Offsets (relative to the data section) as written."""
        offsets: list[int] = []
        pos = 0
        for t in self.tensors:
            off = pos if t.offset is None else t.offset
            offsets.append(off)
            pos = _align(off + t.n_bytes(), self.alignment)
        return offsets

    def header(self) -> tuple[bytes, list[int]]:
        """Header bytes up to the end of the tensor infos, and where its u64 fields are."""
        u64_at: list[int] = [8, 16]
        parts = [
            self.magic,
            u32(self.version),
            u64(len(self.tensors) if self.n_tensors is None else self.n_tensors),
            u64(len(self.kvs) if self.n_kv is None else self.n_kv),
        ]
        pos = 24
        for k, v in self.kvs:
            u64_at.append(pos)
            parts += [k, v]
            pos += len(k) + len(v)
        for t, off in zip(self.tensors, self.tensor_offsets(), strict=True):
            name = t.name.encode() if isinstance(t.name, str) else t.name
            info = gstr(name) + u32(len(t.dims) if t.n_dims is None else t.n_dims)
            u64_at.append(pos)
            dims_at = pos + 8 + len(name) + 4
            u64_at += [dims_at + 8 * j for j in range(len(t.dims))]
            info += b"".join(u64(d) for d in t.dims) + u32(t.ggml_type)
            u64_at.append(pos + len(info))
            info += u64(off)
            parts.append(info)
            pos += len(info)
        return b"".join(parts), u64_at

    def build(self) -> bytes:
        """The complete file."""
        head, _ = self.header()
        pad = _align(len(head), self.alignment) - len(head)
        if self.data is None:
            ends = [
                o + t.n_bytes() for o, t in zip(self.tensor_offsets(), self.tensors, strict=True)
            ]
            data = bytes(min(max(ends, default=0), MAX_AUTO_DATA))
        else:
            data = self.data
        out = head + bytes(pad) + data + self.append
        return out if self.truncate is None else out[: self.truncate]


def _align(n: int, a: int) -> int:
    return -(-n // a) * a if a > 0 else n


N_LAYERS = 2
N_EMBD = 32
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 64
N_VOCAB = 20


def baseline_tokens() -> list[str]:
    """20 tokens (more than 16, so the array is summarised and walked in bulk)."""
    return ["<unk>", "<s>", "</s>"] + [chr(ord("a") + i) for i in range(N_VOCAB - 4)] + ["é"]


def baseline() -> Craft:
    """A small valid llama GGUF v3 file."""
    c = Craft()
    c.set("general.architecture", val(STRING, "llama"))
    c.set("general.name", val(STRING, "crafted"))
    c.set("general.alignment", val(UINT32, 32))
    c.set("general.file_type", val(UINT32, 0))
    c.set("llama.block_count", val(UINT32, N_LAYERS))
    c.set("llama.context_length", val(UINT32, 128))
    c.set("llama.embedding_length", val(UINT32, N_EMBD))
    c.set("llama.feed_forward_length", val(UINT32, N_FF))
    c.set("llama.attention.head_count", val(UINT32, N_HEAD))
    c.set("llama.attention.head_count_kv", val(UINT32, N_HEAD_KV))
    c.set("llama.rope.freq_base", val(FLOAT32, 10000.0))
    c.set("llama.attention.layer_norm_rms_epsilon", val(FLOAT32, 1e-5))
    c.set("general.tags", arr(STRING, ["tiny", "test"]))
    c.set("tokenizer.ggml.model", val(STRING, "llama"))
    tokens = baseline_tokens()
    c.set("tokenizer.ggml.tokens", arr(STRING, list(tokens)))
    c.set("tokenizer.ggml.scores", arr(FLOAT32, [0.0] * len(tokens)))
    c.set("tokenizer.ggml.token_type", arr(INT32, [2, 3, 3] + [1] * (len(tokens) - 3)))
    c.set("tokenizer.ggml.add_bos_token", val(BOOL, 1))
    c.set(
        "tokenizer.chat_template",
        val(STRING, "{% for m in messages %}{{ m.content }}\n{% endfor %}"),
    )
    kv_dim = N_EMBD // N_HEAD * N_HEAD_KV
    c.tensors = [
        Tensor("token_embd.weight", [N_EMBD, N_VOCAB], Q8_0),
        Tensor("output_norm.weight", [N_EMBD]),
    ]
    for i in range(N_LAYERS):
        c.tensors += [
            Tensor(f"blk.{i}.attn_norm.weight", [N_EMBD]),
            Tensor(f"blk.{i}.attn_q.weight", [N_EMBD, N_EMBD]),
            Tensor(f"blk.{i}.attn_k.weight", [N_EMBD, kv_dim]),
            Tensor(f"blk.{i}.attn_v.weight", [N_EMBD, kv_dim]),
            Tensor(f"blk.{i}.attn_output.weight", [N_EMBD, N_EMBD], F16),
            Tensor(f"blk.{i}.ffn_up.weight", [N_EMBD, N_FF], F16),
        ]
    return c
