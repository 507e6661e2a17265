"""The reader on the two real demo models: accepted, right metadata, in milliseconds.

The expected numbers were checked against ``gguf.GGUFReader`` on the same files.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from orin_console.core.gguf import GGUFInfo, read_gguf

MODELS = Path(__file__).resolve().parent.parent / "models"
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = "gemma-3-270m-q4_k_m.gguf"

pytestmark = pytest.mark.slow


def _model(file_name: str) -> Path:
    path = MODELS / file_name
    if not path.is_file():
        pytest.skip("demo models not fetched: run `make models`")
    return path


def _read_timed(path: Path) -> tuple[GGUFInfo, float]:
    """Read three times; return the info and the fastest time (the first warms the cache)."""
    best = float("inf")
    info = None
    for _ in range(3):
        start = time.perf_counter()
        info = read_gguf(path)
        best = min(best, time.perf_counter() - start)
    assert info is not None
    return info, best


def _peak_bytes(path: Path) -> int:
    tracemalloc.start()
    try:
        read_gguf(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _check_layout(info: GGUFInfo) -> None:
    assert info.data_offset % info.alignment == 0
    last = info.tensors[-1]
    end = info.data_offset + last.offset + last.n_bytes
    assert end <= info.file_size < end + info.alignment
    assert info.tensor_data_size <= info.file_size - info.data_offset
    for key, value in info.display_metadata():
        assert "\n" not in value and "\x1b" not in value and "\n" not in key


def test_smollm2_135m_q4_1() -> None:
    info, seconds = _read_timed(_model(SMOLLM2))
    print(f"reading the header took {seconds * 1000:.1f} ms")  # the figure; the bound is the benchmark's
    assert seconds < 1.0, f"reading the header took {seconds * 1000:.1f} ms"
    assert _peak_bytes(_model(SMOLLM2)) < 32 * 1024 * 1024
    assert info.version == 3 and info.alignment == 32
    assert info.architecture == "llama"
    assert info.block_count == 30
    assert info.embedding_length == 576
    assert info.feed_forward_length == 1536
    assert (info.head_count, info.head_count_kv) == (9, 3)
    assert (info.key_length, info.value_length) == (64, 64)
    assert info.context_length == 8192
    assert info.sliding_window is None
    assert info.vocab_size == 49152
    assert info.tokenizer_model == "gpt2"
    assert (info.file_type, info.quantization) == (3, "Q4_1")
    assert (info.n_tensors, info.n_kv) == (272, 33)
    assert info.data_offset == 1_785_664
    assert info.chat_template is not None
    assert info.chat_template.startswith("{% for message in messages %}")
    assert info.rope_freq_base == 100000.0
    assert info.n_params == 134_515_008
    by_name = {t.name: t for t in info.tensors}
    embd = by_name["token_embd.weight"]
    assert (embd.dims, embd.type_name, embd.offset) == ((576, 49152), "Q8_0", 0)
    norm = by_name["blk.0.ffn_norm.weight"]
    assert (norm.dims, norm.type_name, norm.n_bytes) == ((576,), "F32", 2304)
    assert info.data_offset + norm.offset == 33_527_872
    assert {t.type_name for t in info.tensors} == {"Q4_1", "F32", "Q8_0"}
    assert info.metadata["tokenizer.ggml.merges"] == "<array of 48900 string>"
    _check_layout(info)


def test_gemma3_270m_q4_k_m() -> None:
    info, seconds = _read_timed(_model(GEMMA3))
    print(f"reading the header took {seconds * 1000:.1f} ms")  # the figure; the bound is the benchmark's
    assert seconds < 1.0, f"reading the header took {seconds * 1000:.1f} ms"
    assert _peak_bytes(_model(GEMMA3)) < 32 * 1024 * 1024  # 262k tokens, 6.5 MB of header
    assert info.architecture == "gemma3"
    assert info.block_count == 18
    assert info.embedding_length == 640
    assert info.feed_forward_length == 2048
    assert (info.head_count, info.head_count_kv) == (4, 1)
    # gemma3 heads are wider than embedding_length / head_count (160).
    assert (info.key_length, info.value_length) == (256, 256)
    assert info.context_length == 32768
    assert info.sliding_window == 512
    assert info.sliding_window_pattern is None  # not in the file; llama.cpp knows gemma3's
    assert info.vocab_size == 262144
    assert info.tokenizer_model == "llama"
    assert (info.file_type, info.quantization) == (15, "Q4_K_M")
    assert (info.n_tensors, info.n_kv) == (236, 33)
    assert info.data_offset == 6_525_120
    assert info.chat_template is None
    assert info.n_params == 268_098_176
    by_name = {t.name: t for t in info.tensors}
    attn_out = by_name["blk.0.attn_output.weight"]
    assert (attn_out.dims, attn_out.type_name, attn_out.n_bytes) == ((1024, 640), "Q4_K", 368_640)
    assert info.data_offset + attn_out.offset == 184_901_824
    assert {t.type_name for t in info.tensors} == {"F32", "Q5_0", "Q4_K", "Q8_0", "Q6_K"}
    _check_layout(info)
