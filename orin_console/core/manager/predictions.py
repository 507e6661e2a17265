"""What the manager knows about model files without loading them, cached per file identity.

A warm request must do no file work, and the optimiser asks for every model's size in both
tiers each round, so the header facts (from the bounded GGUF reader), the checksum check and
the predictions are cached per file identity ``(real path, size, mtime_ns)``; predictions also
per (tier, context, GPU layers, corrections version). A file that changes gets a new identity
and is read again.

Whether this llama.cpp build offloads to a GPU is asked once, in a throw-away process, at the
first real RAM-tier load. A dry run (a plan, the optimiser's sizes, the engine's routing) never
starts that process: until the probe has run, it reads the answer from the files the build
installed (a ``libggml-cuda``/``-vulkan``/... backend beside ``libllama``), which is what the
probe would say for every build llama-cpp-python ships with its backends as shared libraries.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import threading
from pathlib import Path

from orin_console.core import gguf
from orin_console.core.catalog.store import CatalogEntry
from orin_console.core.gguf import GGUFInfo
from orin_console.core.manager.types import ContextAboveTrained, ModelUnavailable
from orin_console.core.memory.measurements import Corrections, model_identity
from orin_console.core.memory.prediction import Prediction, predict
from orin_console.core.tier import Tier

__all__ = ["FileIdentity", "PredictionCache", "probe_gpu_offload"]

FileIdentity = tuple[str, int, int]
"""(real path, size, mtime_ns): a file that changes gets a new identity."""

GPU_BACKENDS = ("cuda", "vulkan", "hip", "sycl", "metal", "musa", "opencl", "cann")
"""ggml backends that offload layers to a GPU (``libggml-<name>.so``)."""

MAX_CACHED_FILES = 256
"""Header facts kept at most (the oldest are dropped first)."""


def probe_gpu_offload(python: str) -> bool:
    """Whether this llama.cpp build offloads to a GPU, asked in a throw-away process.

    The console itself never imports llama.cpp (on a Jetson that would initialise CUDA in
    the console process).
    """
    code = "import llama_cpp, sys; sys.stdout.write(str(int(llama_cpp.llama_supports_gpu_offload())))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "1"


def guess_gpu_offload() -> bool:
    """Whether the installed llama_cpp has a GPU backend, from its files alone (no import,
    no process): a ``libggml-<gpu backend>`` library in its package folder."""
    try:
        spec = importlib.util.find_spec("llama_cpp")  # a top-level package: not imported
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        for folder in (Path(location), Path(location) / "lib"):
            for backend in GPU_BACKENDS:
                if any(folder.glob(f"libggml-{backend}*")) or any(folder.glob(f"ggml-{backend}*")):
                    return True
    return False


def file_identity(path: Path) -> FileIdentity | None:
    """The file's identity, or None when it cannot be stat'ed (the reader then says why)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return None
    return real, st.st_size, st.st_mtime_ns


class PredictionCache:
    """Header facts, checksum checks and predictions, each computed once per file identity.

    Args:
        corrections: the measured corrections (a new measurement bumps :meth:`invalidate`).
        gpu_offload: whether the build offloads to a GPU; None asks it once, when needed.
        python: the interpreter runners use (for the GPU probe).
    """

    def __init__(self, corrections: Corrections, *, gpu_offload: bool | None, python: str) -> None:
        self._corrections = corrections
        self._gpu_offload = gpu_offload
        self._python = python
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._headers: dict[FileIdentity, GGUFInfo] = {}
        self._verified: dict[FileIdentity, str] = {}
        self._predictions: dict[tuple[FileIdentity, str | None, Tier, int, int, int], Prediction] = {}
        self._version = 0

    @property
    def gpu_offload(self) -> bool | None:
        """The build's GPU offload as known so far (None: not asked yet)."""
        return self._gpu_offload

    def gpu_layers(self, tier: Tier, *, probe: bool = False) -> int:
        """Layers a runner in ``tier`` offloads: -1 (all) in the RAM tier of a GPU build, else 0.

        Args:
            tier: the tier.
            probe: a real load: ask the build in a throw-away process when not known yet.
                Otherwise (a dry run) an unknown answer is read from the installed files.
        """
        if tier is not Tier.RAM:
            return 0
        offload = self._gpu_offload
        if offload is None and probe:
            with self._probe_lock:
                if self._gpu_offload is None:
                    self._gpu_offload = probe_gpu_offload(self._python)
                offload = self._gpu_offload
        elif offload is None:
            offload = guess_gpu_offload()
        return -1 if offload else 0

    def header(self, path: Path) -> GGUFInfo:
        """The file's validated header facts (read once per file identity).

        Raises:
            GGUFError: the file cannot be read or is not a GGUF the reader accepts.
        """
        key = file_identity(path)
        if key is not None:
            with self._lock:
                info = self._headers.get(key)
            if info is not None:
                return info
        info = gguf.read_gguf(path)
        if key is not None:
            with self._lock:
                if len(self._headers) >= MAX_CACHED_FILES:
                    self._headers.pop(next(iter(self._headers)))
                self._headers[key] = info
        return info

    def predict(self, entry: CatalogEntry, path: Path, tier: Tier, *, probe: bool = False) -> Prediction:
        """The prediction for ``entry`` in ``tier`` (validates the header first; cached).

        ``probe``: a real load (see :meth:`gpu_layers`).

        Raises:
            GGUFError: the file is missing, truncated or not a GGUF the reader accepts.
            ContextAboveTrained: the entry's context is above the model's trained context (a
                hand edit of the catalog: ``models add`` refuses it, the catalog parser reads
                no model files). Loads, plans and the optimiser all come through here.
        """
        info = self.header(path)
        trained = info.context_length
        if trained and entry.context > trained:
            raise ContextAboveTrained(entry.id, entry.context, trained, str(path))
        key = file_identity(path)
        n_gpu = self.gpu_layers(tier, probe=probe)
        with self._lock:
            version = self._version
        cache_key = (key, entry.sha256, tier, entry.context, n_gpu, version) if key is not None else None
        if cache_key is not None:
            with self._lock:
                found = self._predictions.get(cache_key)
            if found is not None:
                return found
        prediction = predict(info, entry.context, tier.value, n_gpu_layers=n_gpu,
                             corrections=self._corrections, identity=model_identity(path, entry.sha256))
        if cache_key is not None:
            with self._lock:
                if len(self._predictions) >= 4 * MAX_CACHED_FILES:
                    self._predictions.clear()
                self._predictions[cache_key] = prediction
        return prediction

    def invalidate(self) -> None:
        """The corrections changed: predictions are computed afresh (headers stay cached)."""
        with self._lock:
            self._version += 1
            self._predictions.clear()

    def verify_checksum(self, entry: CatalogEntry, path: Path) -> None:
        """Check the file against the catalog's ``sha256`` (once per file identity).

        Raises:
            ModelUnavailable: the file does not match.
        """
        expected = entry.sha256
        if not expected:
            return
        key = file_identity(path)
        with self._lock:
            if key is not None and self._verified.get(key) == expected:
                return
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise ModelUnavailable(
                f"`{entry.id}`: {path} does not match the catalog's sha256 (the file changed "
                "or is corrupt); fetch it again or update sha256 in the catalog"
            )
        if key is not None:
            with self._lock:
                self._verified[key] = expected
