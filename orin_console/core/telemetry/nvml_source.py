"""The desktop-GPU source: NVML (``nvidia-ml-py``) for the GPU, the host source for the rest.

Shows the GPU's load, dedicated memory (total and used), temperature, power draw, clock, fan and
the GPU memory of each process, on top of what :class:`PsutilSource` reads for the host. No
NVIDIA driver (or no GPU) makes the source quietly unavailable; it is never an error, and on a
Jetson (no NVML before JetPack 7) it is simply skipped.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import replace
from types import ModuleType
from typing import Any

from orin_console.core.telemetry.base import Sample, SourceFailed, SourceUnavailable, TelemetrySource
from orin_console.core.telemetry.psutil_source import PsutilSource


class NvmlSource(TelemetrySource):
    """GPU figures from NVML merged into a host sample.

    Args:
        host: the source for memory, swap, CPU and temperatures (default :class:`PsutilSource`).
        nvml: the ``pynvml`` module (tests pass a fake); imported lazily by default.
        device_index: which GPU to report when there are several.
    """

    name = "nvml"

    def __init__(
        self, host: TelemetrySource | None = None, *, nvml: ModuleType | Any = None, device_index: int = 0
    ) -> None:
        self.host = host or PsutilSource()
        self.device_index = device_index
        self._nvml = nvml
        self._lib: Any = None
        self._handle: Any = None
        self._gpu_name: str | None = None
        self._notes: tuple[str, ...] = ()

    def open(self) -> None:
        self.close()
        try:
            lib = self._nvml or importlib.import_module("pynvml")
        except ImportError:
            raise SourceUnavailable(
                self.name, "nvidia-ml-py is not installed", "pip install nvidia-ml-py", retry=False
            ) from None
        try:
            lib.nvmlInit()
        except lib.NVMLError as exc:
            raise SourceUnavailable(self.name, f"no NVIDIA driver ({exc})", retry=False) from None
        try:
            count = lib.nvmlDeviceGetCount()
            if count <= self.device_index:
                raise SourceUnavailable(self.name, f"no NVIDIA GPU with index {self.device_index}", retry=False)
            handle = lib.nvmlDeviceGetHandleByIndex(self.device_index)
            name = lib.nvmlDeviceGetName(handle)
        except lib.NVMLError as exc:
            self._shutdown(lib)
            raise SourceUnavailable(self.name, f"NVML cannot read the GPU ({exc})") from None
        except SourceUnavailable:
            self._shutdown(lib)
            raise
        self._gpu_name = name.decode() if isinstance(name, bytes) else str(name)
        self._notes = (f"{count} GPUs; showing GPU {self.device_index}",) if count > 1 else ()
        try:
            self.host.open()
        except SourceUnavailable:
            self._shutdown(lib)
            raise
        self._lib, self._handle = lib, handle

    def _optional(self, func: str, *args: Any) -> Any:
        """A reading some GPUs do not support (fan on a datacenter card): None if refused."""
        try:
            return getattr(self._lib, func)(self._handle, *args)
        except self._lib.NVMLError:
            return None

    def read(self) -> Sample:
        lib, handle = self._lib, self._handle
        if lib is None:
            raise SourceFailed(self.name, "read before open")
        base = self.host.read()
        try:
            util = lib.nvmlDeviceGetUtilizationRates(handle)
            mem = lib.nvmlDeviceGetMemoryInfo(handle)
        except lib.NVMLError as exc:
            raise SourceFailed(self.name, f"NVML stopped answering ({exc})") from exc
        temp = self._optional("nvmlDeviceGetTemperature", lib.NVML_TEMPERATURE_GPU)
        milliwatts = self._optional("nvmlDeviceGetPowerUsage")
        clock = self._optional("nvmlDeviceGetClockInfo", lib.NVML_CLOCK_GRAPHICS)
        clock_max = self._optional("nvmlDeviceGetMaxClockInfo", lib.NVML_CLOCK_GRAPHICS)
        fan = self._optional("nvmlDeviceGetFanSpeed")
        procs: dict[int, int] = {}
        for func in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            for proc in self._optional(func) or ():
                used = getattr(proc, "usedGpuMemory", None)
                if used is not None:
                    procs[int(proc.pid)] = procs.get(int(proc.pid), 0) + int(used)
        temps = dict(base.temperatures)
        if temp is not None:
            temps["gpu"] = float(temp)
        rails = dict(base.power_rails_w)
        if milliwatts is not None:
            rails["GPU"] = milliwatts / 1000.0
        return replace(
            base,
            source=self.name,
            gpu_name=self._gpu_name,
            gpu_load=float(util.gpu),
            gpu_mem_total=int(mem.total),
            gpu_mem_used=int(mem.used),
            gpu_freq_hz=None if clock is None else int(clock) * 1_000_000,
            gpu_freq_max_hz=None if clock_max is None else int(clock_max) * 1_000_000,
            temperatures=temps,
            power_rails_w=rails,
            fan_percent=None if fan is None else float(fan),
            gpu_process_bytes=procs,
            notes=base.notes + self._notes,
        )

    @staticmethod
    def _shutdown(lib: Any) -> None:
        with contextlib.suppress(Exception):  # a failing shutdown changes nothing for us
            lib.nvmlShutdown()

    def close(self) -> None:
        lib, self._lib, self._handle = self._lib, None, None
        if lib is not None:
            self._shutdown(lib)
            self.host.close()
