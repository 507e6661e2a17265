"""The GPU kit (scripts/gpu_kit.py) and the parts of the GPU check (scripts/gpu_check.py) that need no GPU.

No pip, no network: the sdist is a small fake built here, the log lines and NVML figures are recorded.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
MB = 1024 * 1024


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gpu_kit = _load("gpu_kit")
gpu_check = _load("gpu_check")

TOP = "llama_cpp_python-0.3.36"
KEPT = [
    f"{TOP}/pyproject.toml",
    f"{TOP}/llama_cpp/llama.py",
    f"{TOP}/vendor/llama.cpp/CMakeLists.txt",
    f"{TOP}/vendor/llama.cpp/ggml/src/ggml-cuda/ggml-cuda.cu",
    f"{TOP}/vendor/llama.cpp/models/templates/chatml.jinja",
    f"{TOP}/vendor/llama.cpp/docs.txt",
    f"{TOP}/vendor/llama.cpp/tools/docs/keep.md",
]
DROPPED = [
    f"{TOP}/.git/HEAD",
    f"{TOP}/.git/modules/vendor/llama.cpp/objects/pack/pack-1.pack",
    f"{TOP}/vendor/llama.cpp/.git",
    f"{TOP}/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf",
    f"{TOP}/vendor/llama.cpp/docs/build.md",
    f"{TOP}/vendor/llama.cpp/docs/backend/CUDA.md",
]


def _fake_sdist(path: Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for folder in (TOP, f"{TOP}/vendor/llama.cpp/docs", f"{TOP}/.git"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name in KEPT + DROPPED:
            data = name.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_trim_sdist_keeps_the_build_and_drops_git_vocab_ggufs_and_docs(tmp_path: Path) -> None:
    source, target = tmp_path / "full.tar.gz", tmp_path / "kit" / gpu_kit.SDIST_NAME
    _fake_sdist(source)
    kept, dropped = gpu_kit.trim_sdist(source, target)
    with tarfile.open(target, "r:gz") as tar:
        names = tar.getnames()
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert sorted(files) == sorted(KEPT)
    assert all(files[name] == name.encode() for name in KEPT)  # contents intact
    assert TOP in names  # the top folder entry stays
    assert not any(".git" in Path(n).parts or Path(n).parts[1:4] == ("vendor", "llama.cpp", "docs") for n in names)
    assert (kept, dropped) == (len(KEPT) + 1, len(DROPPED) + 2)
    assert not target.with_name(target.name + ".part").exists()


def test_runtime_requirements_leave_out_llama_cpp_python_and_add_its_own(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = [\n  "llama-cpp-python==0.3.36",\n'
                         '  "numpy>=1.26",\n  "llama_cpp_python_extra>=1",\n]\n')
    reqs = gpu_kit.runtime_requirements(pyproject)
    assert reqs[:2] == ["numpy>=1.26", "llama_cpp_python_extra>=1"]
    assert {r.split(">")[0] for r in reqs[2:]} == {"typing-extensions", "diskcache", "jinja2"}


def test_the_real_pyproject_gives_wheels_for_every_runtime_dependency() -> None:
    reqs = gpu_kit.runtime_requirements(SCRIPTS.parent / "pyproject.toml")
    assert not any(r.startswith("llama-cpp-python") for r in reqs)
    assert any(r.startswith("nvidia-ml-py") for r in reqs)
    cmd = gpu_kit.wheel_download_command(reqs, Path("/k/wheels"), "3.12")
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--only-binary=:all:" in cmd and cmd[cmd.index("--python-version") + 1] == "3.12"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"] == list(gpu_kit.PLATFORMS)
    assert cmd[-len(reqs):] == reqs


def test_the_kit_model_is_a_few_tens_of_mb_and_fits_the_limit() -> None:
    from orin_console.testing.tiny_models import tiny_model_bytes_estimate

    shape = {k: v for k, v in gpu_kit.MODEL_SHAPE.items() if k != "n_ctx"}
    size = tiny_model_bytes_estimate(**shape)
    assert 10 * MB < size < 30 * MB
    # with the trimmed sdist (~13 MB) and the wheels (~24 MB) it leaves room under 64 MiB
    assert size + 13 * MB + 24 * MB < gpu_kit.LIMIT_BYTES


def test_folder_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"1234")
    (tmp_path / "y").write_bytes(b"12")
    assert gpu_kit.folder_bytes(tmp_path) == 6


# -- the check -------------------------------------------------------------------------------

RAM_LOG = [
    "load_tensors: loading model tensors, this can take a while... (mmap = true)",
    "load_tensors: offloading 8 repeating layers to GPU",
    "load_tensors: offloading output layer to GPU",
    "load_tensors: offloaded 9/9 layers to GPU",
    "load_tensors:        CUDA0 model buffer size =    19.62 MiB",
    "load_tensors:   CPU_Mapped model buffer size =     0.38 MiB",
    "llama_context:  CUDA_Host  output buffer size =     0.00 MiB",
    "llama_kv_cache:      CUDA0 KV buffer size =     8.00 MiB",
    "sched_reserve:      CUDA0 compute buffer size =    32.26 MiB",
    "sched_reserve:  CUDA_Host compute buffer size =     4.76 MiB",
]
SWAP_LOG = [
    "load_tensors: offloaded 0/9 layers to GPU",
    "load_tensors:   CPU_Mapped model buffer size =    19.91 MiB",
    "llama_kv_cache:        CPU KV buffer size =     8.00 MiB",
]
PREDICTION = {"weights": 21 * MB, "kv_cache": 8 * MB, "compute": 33 * MB, "cuda_runtime": 300 * MB}


def test_offloaded_layers_from_llama_cpp_log_lines() -> None:
    assert gpu_check.offloaded_layers(RAM_LOG) == (9, 9)
    assert gpu_check.offloaded_layers(SWAP_LOG) == (0, 9)
    assert gpu_check.offloaded_layers(["load_tensors: offloaded 31/31 layers to GPU"]) == (31, 31)
    assert gpu_check.offloaded_layers(["llama_context: n_ctx = 2048"]) is None
    # a move: the last load's line counts
    assert gpu_check.offloaded_layers([*SWAP_LOG, *RAM_LOG]) == (9, 9)


def test_gpu_buffers_count_cuda_devices_only() -> None:
    buffers = gpu_check.gpu_buffer_bytes(RAM_LOG)
    assert buffers == {"model": round(19.62 * MB), "kv": 8 * MB, "compute": round(32.26 * MB)}
    assert gpu_check.gpu_buffer_bytes(SWAP_LOG) == {}


def test_gpu_figures_measure_the_cuda_term_from_nvml_minus_the_logged_buffers() -> None:
    buffers = gpu_check.gpu_buffer_bytes(RAM_LOG)
    measured = 500 * MB  # NVML's per-process figure, recorded
    figures = gpu_check.gpu_figures(PREDICTION, measured, buffers)
    assert figures["predicted_bytes"] == 362 * MB
    assert figures["measured_bytes"] == measured
    assert figures["cuda_runtime_bytes"] == measured - sum(buffers.values())
    assert "log" in figures["cuda_runtime_basis"]
    assert figures["prediction_error"] == round((362 - 500) / 500, 3)
    # no buffer lines: the prediction's on-GPU parts stand in
    fallback = gpu_check.gpu_figures(PREDICTION, measured, {})
    assert fallback["cuda_runtime_bytes"] == measured - 62 * MB
    # NVML could not attribute the process: nothing derived
    none = gpu_check.gpu_figures(PREDICTION, None, buffers)
    assert none["cuda_runtime_bytes"] is None and none["prediction_error"] is None


def _result(**changes: Any) -> dict[str, Any]:
    ram = {"offloaded": (9, 9), "gpu": gpu_check.gpu_figures(PREDICTION, 380 * MB, gpu_check.gpu_buffer_bytes(RAM_LOG)),
           "tok_per_s": 900.0}
    swap = {"offloaded": (0, 9), "gpu": gpu_check.gpu_figures(PREDICTION, None, {}), "tok_per_s": 120.0}
    unload = {"runner_pids_on_gpu": [], "used_before_bytes": 600 * MB, "used_after_bytes": 610 * MB,
              "tolerance_bytes": 64 * MB}
    result: dict[str, Any] = {"ram": ram, "swap": swap, "unload": unload}
    for key, value in changes.items():
        part, field = key.split("__")
        result[part][field] = value
    return result


def test_a_good_run_passes() -> None:
    assert gpu_check.evaluate(_result()) == ([], [])


@pytest.mark.parametrize(("changes", "expected"), [
    ({"ram__offloaded": (0, 31)}, "ram: no layer offloaded (0/31)"),
    ({"ram__offloaded": (20, 31)}, "ram: only 20/31 layers offloaded"),
    ({"ram__offloaded": None}, "ram: llama.cpp's log has no 'offloaded N/M layers to GPU' line"),
    ({"ram__gpu": {"measured_bytes": 0}}, "ram: NVML shows no GPU memory for the runner's process"),
    ({"swap__offloaded": (9, 9)}, "swap: 9/9 layers offloaded (the swap tier is CPU only)"),
    ({"ram__tok_per_s": None}, "ram: no tok/s figure (the generation produced fewer than two tokens)"),
    ({"unload__runner_pids_on_gpu": [4242]}, "unload: runner processes still hold GPU memory: [4242]"),
    ({"unload__used_after_bytes": 900 * MB},
     "unload: the GPU's used memory stayed 300 MiB above its level before the first load"),
])
def test_each_failed_expectation_is_named(changes: dict[str, Any], expected: str) -> None:
    failures, _ = gpu_check.evaluate(_result(**changes))
    assert failures == [expected]


def test_warnings_do_not_fail_the_check() -> None:
    swap_gpu = gpu_check.gpu_figures(PREDICTION, 310 * MB, {})
    far_off = gpu_check.gpu_figures(PREDICTION, 1000 * MB, {})
    failures, warnings = gpu_check.evaluate(_result(swap__gpu=swap_gpu, ram__gpu=far_off))
    assert failures == []
    assert warnings[0].startswith("swap: the runner holds 310 MiB of GPU memory")
    assert warnings[1] == "ram: GPU memory prediction off by -64% (with the 300 MB CUDA assumption)"


def test_parse_args_defaults_and_checks() -> None:
    args = gpu_check.parse_args([])
    assert args.model == SCRIPTS.parent / "gpu-kit" / "model.gguf"
    assert (args.tokens, args.context, args.return_tolerance_mb) == (128, 2048, 64.0)
    args = gpu_check.parse_args(["--model", "/m.gguf", "--tokens", "32", "--threads", "8"])
    assert (args.model, args.tokens, args.threads) == (Path("/m.gguf"), 32, 8)
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--tokens", "1"])


def test_render_is_one_json_line_that_round_trips() -> None:
    result = _result()
    result.update(ok=True, failures=[], warnings=[], move_s={"ram->swap": 0.2, "swap->ram": 0.3})
    line = gpu_check.render(result)
    assert "\n" not in line
    back = json.loads(line)
    assert back["ram"]["offloaded"] == [9, 9]
    assert back["move_s"] == {"ram->swap": 0.2, "swap->ram": 0.3}
    assert back["ram"]["gpu"]["cuda_runtime_bytes"] == 380 * MB - sum(gpu_check.gpu_buffer_bytes(RAM_LOG).values())


def test_main_without_the_model_says_how_to_make_the_kit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["--model", str(tmp_path / "missing.gguf")]) == 2
    assert "make gpu-kit" in capsys.readouterr().err
