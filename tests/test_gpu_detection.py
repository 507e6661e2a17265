"""GPU offload is read from the backend libraries the llama.cpp build ships, with no process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orin_console.core.gpu import backend_libraries, installed_build_offloads_to_gpu, offloads_to_gpu


def _install(tmp_path: Path, *libs: str) -> Path:
    (tmp_path / "lib").mkdir()
    for lib in libs:
        (tmp_path / "lib" / lib).write_bytes(b"")
    return tmp_path


def test_a_cpu_build_does_not_offload(tmp_path: Path) -> None:
    pkg = _install(tmp_path, "libllama.so", "libggml.so", "libggml-base.so.0.25.3", "libggml-cpu.so")
    assert backend_libraries(pkg) == ["base", "cpu"]
    assert offloads_to_gpu(pkg) is False


def test_a_cuda_build_offloads(tmp_path: Path) -> None:
    pkg = _install(tmp_path, "libllama.so", "libggml-base.so", "libggml-cpu.so", "libggml-cuda.so")
    assert offloads_to_gpu(pkg) is True


def test_the_answer_agrees_with_llama_cpp_itself() -> None:
    code = "import llama_cpp, sys; sys.stdout.write(str(int(llama_cpp.llama_supports_gpu_offload())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert installed_build_offloads_to_gpu() is (out.stdout.strip() == "1")
