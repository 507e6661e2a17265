"""Memory prediction: KV arithmetic, components, measured corrections, and reality."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from orin_console.core.gguf import read_gguf
from orin_console.core.gguf.types import GGUFInfo, TensorInfo
from orin_console.core.memory import prediction as memory
from orin_console.core.memory.kvcache import cache_row_bytes, kv_cache, swa_layers
from orin_console.core.memory.measurements import FILE_NAME, Corrections, model_identity
from orin_console.core.memory.prediction import MB, Prediction, format_size, predict

from conftest import demo_model

MiB = 1 << 20
SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = "gemma-3-270m-q4_k_m.gguf"


def make_info(**overrides: Any) -> GGUFInfo:
    """A llama-like header: 4 layers, 8 heads of 32, GQA with 2 KV heads, 1000 tokens."""
    fields: dict[str, Any] = dict(
        path="/models/x.gguf", file_size=10 * MiB, version=3, alignment=32, n_tensors=2,
        n_kv=10, data_offset=4096, architecture="llama", name="x", block_count=4,
        embedding_length=256, feed_forward_length=512, feed_forward_length_per_layer=None,
        head_count=8, head_count_per_layer=None, head_count_kv=2, head_count_kv_per_layer=None,
        key_length=32, value_length=32, context_length=4096, sliding_window=None,
        sliding_window_pattern=None, rope_freq_base=None, rope_dimension_count=None,
        expert_count=None, expert_used_count=None, file_type=1, quantization="F16",
        tensor_data_size=8 * MiB, n_params=4_000_000, vocab_size=1000, tokenizer_model="llama",
        chat_template=None,
        tensors=(
            TensorInfo("token_embd.weight", (256, 1000), 1, "F16", 0, 512_000),
            TensorInfo("blk.0.ffn_down.weight", (512, 256), 12, "Q4_K", 512_000, 73_728),
        ),
        metadata={},
    )
    fields.update(overrides)
    return GGUFInfo(**fields)


# ---- KV cache arithmetic ----------------------------------------------------------------


def test_kv_gqa_counts_kv_heads_not_query_heads() -> None:
    kv = kv_cache(make_info(), 1024)
    # 4 layers x 1024 cells x (2 KV heads x 32) values x 2 bytes, for K and for V
    assert kv.k_bytes == kv.v_bytes == 4 * 1024 * 64 * 2
    mha = kv_cache(make_info(head_count_kv=8), 1024)
    assert mha.total == 4 * kv.total


def test_kv_context_is_padded_to_256_and_zero_means_training_context() -> None:
    assert kv_cache(make_info(), 1000).cells == 1024
    assert kv_cache(make_info(), 100).cells == 256
    assert kv_cache(make_info(), 0).cells == 4096


def test_kv_per_layer_heads_and_distinct_key_value_sizes() -> None:
    info = make_info(head_count_kv_per_layer=(2, 0, 4, 1), key_length=64, value_length=32)
    kv = kv_cache(info, 256)
    assert kv.k_bytes == 256 * (2 + 4 + 1) * 64 * 2
    assert kv.v_bytes == 256 * (2 + 4 + 1) * 32 * 2
    assert kv.full_layers == 3  # the recurrent layer (0 KV heads) has no cache


@pytest.mark.parametrize(
    ("cache_type", "row"), [("f16", 128), ("f32", 256), ("q8_0", 68), ("q4_0", 36), ("q5_1", 48)]
)
def test_kv_cache_types_use_ggml_block_sizes(cache_type: str, row: int) -> None:
    assert cache_row_bytes(cache_type, 64) == row
    assert kv_cache(make_info(), 256, cache_type=cache_type).k_bytes == 4 * 256 * row


def test_kv_v_type_may_differ_and_bad_types_are_refused() -> None:
    kv = kv_cache(make_info(), 256, cache_type="q8_0", cache_type_v="f16")
    assert (kv.k_bytes, kv.v_bytes) == (4 * 256 * 68, 4 * 256 * 128)
    with pytest.raises(ValueError, match="unknown KV cache type"):
        cache_row_bytes("q3_k", 64)
    with pytest.raises(ValueError, match="blocks of 32"):
        cache_row_bytes("q8_0", 48)


def gemma_like(**overrides: Any) -> GGUFInfo:
    base: dict[str, Any] = dict(
        architecture="gemma3", block_count=18, head_count=4, head_count_kv=1, key_length=256,
        value_length=256, sliding_window=512, embedding_length=640,
    )
    base.update(overrides)
    return make_info(**base)


def test_swa_builtin_gemma3_pattern_every_sixth_layer_is_full() -> None:
    flags = swa_layers(gemma_like())
    assert [il for il, swa in enumerate(flags) if not swa] == [5, 11, 17]


def test_swa_pattern_from_the_file_and_unknown_patterns() -> None:
    assert swa_layers(gemma_like(architecture="llama", sliding_window_pattern=2))[:4] == (
        True, False, True, False,
    )
    assert swa_layers(make_info(sliding_window=128, sliding_window_pattern=(True, False, True, True))) == (
        True, False, True, True,
    )
    # A window but no known pattern: every layer full (the larger, safe size).
    assert not any(swa_layers(make_info(architecture="mystery", sliding_window=128)))
    assert not any(swa_layers(gemma_like(sliding_window=0)))


def test_swa_cache_full_size_by_default_else_window_plus_ubatch() -> None:
    info = gemma_like()
    full = kv_cache(info, 4096)
    assert (full.cells, full.swa_cells, full.full_layers, full.swa_layers) == (4096, 4096, 3, 15)
    small = kv_cache(info, 4096, swa_full=False)
    assert small.swa_cells == 1024  # 512 window + 512 ubatch
    assert small.total == (3 * 4096 + 15 * 1024) * 256 * 2 * 2
    assert kv_cache(info, 4000, n_ubatch=256, swa_full=False).swa_cells == 768
    assert kv_cache(info, 512, swa_full=False).swa_cells == 512  # never above the full size
    # A small context caps the batch, and so the SWA cache: 512 + 300 -> 1024 cells.
    assert kv_cache(info, 300, swa_full=False).swa_cells == 512


def test_swa_specific_head_size_from_metadata() -> None:
    info = gemma_like(metadata={"gemma3.attention.key_length_swa": 128})
    kv = kv_cache(info, 256)
    assert kv.k_bytes == 256 * 2 * (3 * 256 + 15 * 128)
    assert kv.v_bytes == 256 * 2 * 18 * 256


def test_kv_matches_what_llama_cpp_logs_for_the_demo_models() -> None:
    """Sizes from ``llama_kv_cache: size = ...`` lines of llama-cpp-python 0.3.36."""
    smol = read_gguf(demo_model(SMOL))
    assert kv_cache(smol, 2048).total == 45 * MiB
    assert kv_cache(smol, 2048, cache_type="q8_0").total == pytest.approx(23.91 * MiB, abs=0.01 * MiB)
    gemma = read_gguf(demo_model(GEMMA))
    assert kv_cache(gemma, 2048).total == (6 + 30) * MiB
    assert kv_cache(gemma, 4096, swa_full=False).total == (12 + 15) * MiB
    assert kv_cache(gemma, 4000, n_ubatch=256, swa_full=False).total == int((12 + 11.25) * MiB)


# ---- the prediction -----------------------------------------------------------------------


def test_components_add_up_and_details_explain_them() -> None:
    p = predict(make_info(), 2048, "swap", n_gpu_layers=0)
    d = p.details
    assert p.total == p.weights + p.kv_cache + p.compute + p.overhead
    assert p.weights == d["weights_tensors"] + d["weights_repacked"]
    assert p.kv_cache == d["kv_k"] + d["kv_v"]
    assert p.compute == sum(v for k, v in d.items() if k.startswith("compute_"))
    assert p.overhead == d["runner_baseline"] + d["host_tables"] + d["cuda_runtime"]
    assert d["weights_repacked"] == 73_728  # the Q4_K tensor is copied again on the CPU
    assert d["cuda_runtime"] == 0
    assert p.at_load == p.total - p.compute
    text = p.describe()
    assert text.startswith("weights 8.1 + KV 2.0 + compute ") and text.endswith(" MB")
    assert "runner" in text


def test_compute_grows_with_context_and_heads() -> None:
    small = predict(make_info(), 512, "swap", n_gpu_layers=0)
    big = predict(make_info(), 4096, "swap", n_gpu_layers=0)
    assert big.compute - small.compute == 512 * (4096 - 512) * (4 * 8 + 24)
    flash = predict(make_info(), 4096, "swap", n_gpu_layers=0, flash_attn=True)
    assert flash.compute < big.compute


def test_gpu_offload_commits_the_compute_buffer_and_adds_the_cuda_runtime() -> None:
    cpu = predict(make_info(), 2048, "ram", n_gpu_layers=0)
    gpu = predict(make_info(), 2048, "ram", n_gpu_layers=-1)
    assert gpu.details["cuda_runtime"] == memory.CUDA_RUNTIME_BYTES
    assert gpu.details["weights_repacked"] == 0  # offloaded layers are not repacked
    assert gpu.compute_at_load == gpu.details["compute_gpu_buffer"] > 0
    assert gpu.at_load == gpu.total - gpu.compute + gpu.compute_at_load
    assert cpu.compute_at_load == 0
    with pytest.raises(ValueError, match="'disk'"):
        predict(make_info(), 2048, "disk", n_gpu_layers=0)


def test_format_size_uses_gb_from_one_gb_and_one_decimal() -> None:
    assert format_size(int(1.44 * 1024**3)) == "1.4 GB"
    assert format_size(45 * MB) == "45.0 MB"
    assert format_size(3 * 1024**3, "MB") == "3072.0 MB"
    assert format_size(64 * 1024, "KB") == "64.0 KB"
    with pytest.raises(ValueError, match="unknown unit"):
        format_size(1, "TB")
    p = Prediction(weights=1400 * MB, kv_cache=400 * MB, compute=100 * MB, overhead=100 * MB)
    assert p.describe() == "weights 1.4 + KV 0.4 + compute 0.1 + runner 0.1 GB"


# ---- corrections ----------------------------------------------------------------------------


def test_corrections_round_trip_and_exact_peak_is_used_as_is(tmp_path: Path) -> None:
    store = Corrections.in_state_dir(tmp_path / "state")
    base = predict(make_info(), 2048, "swap", n_gpu_layers=0)
    m = store.record("file:x", base, rss=90 * MiB, uss=80 * MiB, swap=10 * MiB, gpu=None,
                     state="peak", at=1000.0)
    assert m.measured == 100 * MiB and m.predicted == base.estimate
    data = json.loads((tmp_path / "state" / FILE_NAME).read_text())
    assert data["schema"] == 1 and len(data["measurements"]) == 1
    again = Corrections.in_state_dir(tmp_path / "state")
    assert again.lookup("file:x", base.n_ctx, "swap") == m
    p = predict(make_info(), 2048, "swap", n_gpu_layers=0, corrections=again, identity="file:x")
    assert (p.total, p.basis) == (100 * MiB, "measured")
    assert p.total == p.weights + p.kv_cache + p.compute + p.overhead + p.adjustment
    assert "measured correction" in p.describe()
    # Another tier has its own figures.
    other = predict(make_info(), 2048, "ram", n_gpu_layers=0, corrections=again, identity="file:x")
    assert other.basis == "model" and other.adjustment == 0


def test_load_measurement_corrects_additively_and_other_contexts_by_ratio(tmp_path: Path) -> None:
    store = Corrections(tmp_path / FILE_NAME)
    base = predict(make_info(), 2048, "swap", n_gpu_layers=0)
    store.record("k", base, rss=base.at_load + 8 * MiB, state="load")
    same = predict(make_info(), 2048, "swap", n_gpu_layers=0, corrections=store, identity="k")
    assert (same.total, same.basis) == (base.estimate + 8 * MiB, "scaled")
    ratio = (base.at_load + 8 * MiB) / base.at_load
    far = predict(make_info(), 8192, "swap", n_gpu_layers=0, corrections=store, identity="k")
    plain = predict(make_info(), 8192, "swap", n_gpu_layers=0)
    assert far.total == round(plain.estimate * ratio)
    # An absurd ratio is bounded.
    store.record("odd", base, rss=50 * base.estimate, state="peak")
    odd = predict(make_info(), 4096, "swap", n_gpu_layers=0, corrections=store, identity="odd")
    assert odd.total == round(odd.estimate * 3.0)


def test_runner_baseline_measurement_replaces_the_constant(tmp_path: Path) -> None:
    store = Corrections(tmp_path / FILE_NAME)
    store.record_runner_baseline(55 * MiB)
    again = Corrections(tmp_path / FILE_NAME)
    p = predict(make_info(), 2048, "swap", n_gpu_layers=0, corrections=again, identity="none")
    assert p.details["runner_baseline"] == 55 * MiB and p.basis == "model"


@pytest.mark.parametrize(
    "content",
    ["{not json", "[]", '{"schema": 99, "measurements": []}', '{"schema": 1, "measurements": 3}', "\xff\xfe"],
)
def test_corrupt_file_is_ignored_with_a_warning_never_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(content.encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="orin_console.core.memory.measurements"):
        store = Corrections(path)
    assert store.problem and "ignored" in store.problem
    assert caplog.records
    p = predict(make_info(), 2048, "swap", n_gpu_layers=0, corrections=store, identity="k")
    assert p.basis == "model"
    store.record("k", p, rss=100 * MiB)  # the bad file is set aside, a good one written
    assert (tmp_path / (FILE_NAME + ".bad")).read_bytes() == content.encode("latin-1")
    assert Corrections(path).lookup("k", p.n_ctx, "swap") is not None


def test_a_malformed_entry_is_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    good = {"identity": "k", "n_ctx": 2048, "tier": "swap", "state": "peak", "measured": 5,
            "predicted": 4, "rss": 5, "uss": None, "swap": 0, "gpu": None, "at": 1.0}
    bad = dict(good, identity="j", measured=-1)
    (tmp_path / FILE_NAME).write_text(json.dumps({"schema": 1, "measurements": [good, bad, "x"]}))
    store = Corrections(tmp_path / FILE_NAME)
    assert [m.identity for m in store.measurements()] == ["k"]
    assert store.problem and "2 malformed" in store.problem


def test_record_refuses_nonsense(tmp_path: Path) -> None:
    store = Corrections(tmp_path / FILE_NAME)
    p = predict(make_info(), 2048, "swap", n_gpu_layers=0)
    with pytest.raises(ValueError):
        store.record("k", p, rss=0)
    with pytest.raises(ValueError):
        store.record("k", p, rss=1, state="later")


def test_model_identity_changes_with_the_file_and_prefers_sha(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 60)
    first = model_identity(f)
    assert first.startswith("file:") and str(f.resolve()) in first
    os.utime(f, ns=(1, 1))
    assert model_identity(f) != first
    assert model_identity(f, sha256="ABC") == "sha256:abc"
    assert model_identity(tmp_path / "gone.gguf") == f"file:{(tmp_path / 'gone.gguf').resolve()}"


# ---- reality --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)  # a 2048-token prompt on 2 shared cores: 5-30 s, more under load
@pytest.mark.parametrize("file_name", [SMOL, GEMMA])
def test_prediction_within_ten_percent_of_a_real_swap_tier_runner(file_name: str) -> None:
    """Load as the swap tier does, fill the 2048-token context, generate, read /proc."""
    from orin_console.testing.load_probe import probe_load

    path = demo_model(file_name)
    predicted = predict(read_gguf(path), 2048, "swap", n_gpu_layers=0)
    probe = probe_load(path, 2048, n_threads=2, gen_tokens=4)
    assert probe.n_ctx == predicted.n_ctx == 2048
    error = (predicted.total - probe.measured) / probe.measured
    assert abs(error) <= 0.10, (
        f"{file_name}: predicted {format_size(predicted.total)} ({predicted.describe()}), "
        f"measured {format_size(probe.measured)}: {error:+.1%}"
    )


@pytest.mark.slow
def test_runner_baseline_constant_matches_an_idle_runner() -> None:
    from orin_console.testing.load_probe import measure_runner_baseline

    measured = measure_runner_baseline()
    assert abs(measured - memory.RUNNER_BASELINE_BYTES) <= 0.25 * memory.RUNNER_BASELINE_BYTES
