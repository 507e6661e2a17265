"""Whether the installed llama.cpp build offloads to a GPU, decided without starting anything.

The console never imports llama.cpp (on a Jetson that would initialise CUDA in the console
process) and must not start a process for a dry run (``orin-console plan``). llama-cpp-python
ships each ggml backend as its own shared library beside ``libllama``; a build with GPU offload
has one for its GPU backend (``libggml-cuda.so`` for ``-DGGML_CUDA=on``). Looking for those files
answers the question from the file system alone, in microseconds.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

GPU_BACKENDS = ("cuda", "hip", "vulkan", "metal", "sycl", "musa", "opencl", "cann")
"""ggml backends that offload layers to a GPU (``libggml-<name>``)."""


def backend_libraries(package_dir: Path) -> list[str]:
    """The ggml backends a llama-cpp-python install ships (``["base", "cpu", "cuda"]``)."""
    names = set()
    for folder in (package_dir / "lib", package_dir):
        if folder.is_dir():
            for lib in folder.glob("libggml-*"):
                names.add(lib.name.removeprefix("libggml-").split(".")[0])
    return sorted(names)


def offloads_to_gpu(package_dir: Path) -> bool:
    """Whether the llama-cpp-python install in ``package_dir`` has a GPU backend."""
    return any(name in GPU_BACKENDS for name in backend_libraries(package_dir))


@functools.cache
def installed_build_offloads_to_gpu() -> bool:
    """Whether the installed llama-cpp-python offloads to a GPU (False when it is missing)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return False
    return offloads_to_gpu(Path(spec.origin).parent)
