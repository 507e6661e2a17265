"""Fakes for the telemetry tests and ``stress.telemetry_faults``, in the real libraries' shapes.

- ``ORIN_NANO_STATS``: what the jtop service sends (``jtop._stats``), recorded from the real
  jetson-stats 7.2.2 service running against the emulated Orin Nano in ``jtop_fake_orin.py``
  (engines left out), with the readings of a busy Orin Nano 8 GB and the ``jc`` block the
  service adds where ``jetson_clocks`` exists.
- :class:`FakeJtop`: shaped like a started ``jtop.jtop`` client, built from jetson-stats' own
  ``GPU``/``Memory``/``Fan``/``NVPModel``/``JetsonClocks`` classes the way ``jtop._get_data``
  builds them; it can refuse to start, die, or stop receiving data.
- :func:`fake_pynvml`: a ``pynvml`` stand-in returning pynvml's own ctypes structures and
  raising its own ``NVMLError`` classes.
- :class:`ScriptedSource`: a telemetry source that opens, reads and fails on cue.
"""

from __future__ import annotations

import copy
import socket
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from orin_console.core.telemetry import Sample, SourceFailed, SourceUnavailable, TelemetrySource

KB = 1024

_CORE = {"governor": "schedutil", "freq": {"min": 115200, "max": 1510400, "cur": 1510400},
         "info_freq": {"min": 115200, "max": 1510400, "cur": 1510400}, "model": "ARMv8 Processor rev 1 (v8l)"}

ORIN_NANO_STATS: dict[str, Any] = {
    "uptime": 1075.43,
    "cpu": {
        # jetson-stats 7.2 computes this aggregate from a stored delta: not a load figure.
        "total": {"user": 10.53, "nice": 0.0, "system": 5.26, "idle": 84.21},
        "cpu": [
            {"online": True, **_CORE, "user": 30.0, "nice": 0.0, "system": 10.0, "idle": 60.0},
            {"online": True, **_CORE, "user": 20.0, "nice": 5.0, "system": 5.0, "idle": 70.0},
            {"online": True, **_CORE, "user": 0.0, "nice": 0.0, "system": 0.0, "idle": 100.0},
            {"online": True, **_CORE, "user": 50.0, "nice": 0.0, "system": 10.0, "idle": 40.0},
            {"online": True, **_CORE, "user": 10.0, "nice": 0.0, "system": 0.0, "idle": 90.0},
            {"online": False, "model": "", "user": 0, "nice": 0, "system": 0, "idle": 0},
        ],
    },
    "gpu": {
        "gpu": {
            "type": "integrated",
            "status": {"railgate": True, "3d_scaling": False, "load": 61.5},
            "freq": {"governor": "nvhost_podgov", "cur": 612000, "max": 624750, "min": 306000},
        }
    },
    "processes": [
        [4242, "orin", "I", "Graphic", 20, "S", 35.9, 1544400, 524288, "python3"],
        [4343, "orin", "I", "Graphic", 20, "R", 80.1, 2210000, 262144, "python3"],
    ],
    "mem": {
        "RAM": {"tot": 7620560, "used": 5120000, "free": 812000, "buffers": 6776, "cached": 961584,
                "shared": 1048576, "lfb": 41, "shared_label": "Shared"},
        "SWAP": {"tot": 16777212, "used": 2097152, "cached": 10240,
                 "table": {"/ssd/16GB.swap": {"type": "file", "prio": -2, "size": 16777212,
                                              "used": 2097152, "boot": True}}},
        "EMC": {"cur": 2133000, "max": 2133000, "min": 204000, "override": 0, "val": 23, "online": True},
    },
    "temperature": {
        "cpu": {"temp": 48.5, "online": True},
        "gpu": {"temp": 47.0, "online": True},
        "soc0": {"temp": 46.2, "online": True},
        "cv0": {"temp": -256, "online": False},
        "tj": {"temp": 49.0, "online": True},
    },
    "power": {
        "rail": {
            "VDD_CPU_GPU_CV": {"volt": 5000, "curr": 420, "power": 2100, "online": True, "avg": 2100},
            "VDD_SOC": {"volt": 5000, "curr": 300, "power": 1500, "online": True, "avg": 1500},
        },
        "tot": {"volt": 5080, "curr": 1450, "power": 7366, "online": True, "avg": 7366, "name": "VDD_IN"},
    },
    "fan": {"pwmfan": {"speed": [50.19607843137255], "rpm": [2100], "profile": "quiet"}},
    "jc": {"enable": True, "thread": "running", "config": True, "boot": False},
    "nvp": {"status": [True, True, True], "thread": False, "model": {"name": "7W", "id": 1}},
}

ORIN_NANO_INIT: dict[str, Any] = {
    "nvpmodel": {"models": ["15W", "7W", "MAXN_SUPER"], "default": {"name": "15W", "id": 0}},
    "jc": True,
    "memory": "/swfile",
    "fan": {"pwmfan": ["quiet", "cool", "manual"]},
}


def _jtop_classes() -> dict[str, Any] | None:
    try:
        from jtop import GPU, Fan, JetsonClocks, Memory, NVPModel
    except ImportError:
        return None
    return {"GPU": GPU, "Memory": Memory, "Fan": Fan, "JetsonClocks": JetsonClocks, "NVPModel": NVPModel}


class FakeJtop:
    """A started ``jtop.jtop`` as far as a reader can tell. ``interval`` as jtop takes it."""

    def __init__(
        self,
        stats: dict[str, Any] | None = None,
        *,
        interval: float = 1.0,
        start_error: BaseException | None = None,
        init: dict[str, Any] | None = None,
    ) -> None:
        self.interval_user = interval
        self.interval = interval
        self.start_error = start_error
        self.error: BaseException | None = None
        self.running = False
        self.closed = False
        self.started = False
        self._init = copy.deepcopy(init if init is not None else ORIN_NANO_INIT)
        self._stats: dict[str, Any] = {}
        self._classes = _jtop_classes()
        self.load(copy.deepcopy(stats if stats is not None else ORIN_NANO_STATS))

    # jtop.start() / _get_data(): how the client turns service data into its properties
    def load(self, stats: dict[str, Any]) -> None:
        self._stats = stats
        cls = self._classes
        if cls is None:  # jetson-stats not installed: the same mappings, as plain dicts
            self._gpu, self._memory, self._fan = stats["gpu"], stats["mem"], stats["fan"]
            self._nvpmodel = types.SimpleNamespace(**stats["nvp"]["model"]) if "nvp" in stats else None
            self._jetson_clocks = stats["jc"]["enable"] if "jc" in stats else None
            return
        self._gpu = cls["GPU"]()
        self._gpu._update(stats["gpu"])
        self._memory = cls["Memory"]()
        self._memory._initialize(None, self._init.get("memory", ""))
        self._memory._update(stats["mem"])
        self._fan = cls["Fan"]()
        self._fan._initialize(None, self._init.get("fan", {}))
        self._fan._update(stats["fan"])
        self._jetson_clocks = None
        if "jc" in stats and self._init.get("jc"):
            self._jetson_clocks = cls["JetsonClocks"](None)
            self._jetson_clocks._update(stats["jc"])
        self._nvpmodel = None
        if "nvp" in stats and "nvpmodel" in self._init:
            self._nvpmodel = cls["NVPModel"](None, self._init["nvpmodel"])
            self._nvpmodel._update(stats["nvp"])

    def tick(self, seconds: float = 1.0, **changes: Any) -> None:
        """The service sent a new reading: uptime advances, ``changes`` replace top-level keys."""
        stats = copy.deepcopy(self._stats)
        stats["uptime"] = stats["uptime"] + seconds
        stats.update(changes)
        self.load(stats)

    def start(self) -> None:
        self.started = True
        if self.start_error is not None:
            raise self.start_error
        self.running = True

    def ok(self, spin: bool = False) -> bool:
        if self.error is not None:
            raise self.error
        return self.running

    def close(self) -> None:
        self.closed = True
        self.running = False

    @property
    def memory(self) -> Any:
        return self._memory

    @property
    def gpu(self) -> Any:
        return self._gpu

    @property
    def fan(self) -> Any:
        return self._fan

    @property
    def cpu(self) -> Any:
        return self._stats["cpu"]

    @property
    def processes(self) -> Any:
        return self._stats["processes"]

    @property
    def power(self) -> Any:
        return self._stats["power"]

    @property
    def temperature(self) -> Any:
        return self._stats["temperature"]

    @property
    def nvpmodel(self) -> Any:
        return self._nvpmodel

    @property
    def jetson_clocks(self) -> Any:
        return self._jetson_clocks

    @property
    def uptime(self) -> timedelta:
        return timedelta(seconds=self._stats["uptime"])


@contextmanager
def unix_socket(path: Path, *, listening: bool = True) -> Iterator[Path]:
    """A Unix socket file at ``path``: accepting connections, or left over by a dead service."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    if listening:
        sock.listen(4)
    else:
        sock.close()
    try:
        yield path
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def fake_pynvml(
    *,
    init_error: int | None = None,
    count: int = 1,
    name: str | bytes = b"NVIDIA GeForce RTX 4090",
    util: int = 45,
    mem_total: int = 24 * 1024**3,
    mem_used: int = 3 * 1024**3,
    temp: int = 52,
    milliwatts: int = 123456,
    clock_mhz: int = 2520,
    max_clock_mhz: int = 3105,
    fan_supported: bool = False,
    procs: dict[int, int | None] | None = None,
) -> Any:
    """A ``pynvml`` that answers like a driver would, with pynvml's own types and errors.

    ``module.lost = True`` makes every device query fail as a GPU that fell off the bus.
    """
    import pynvml

    mod: Any = types.ModuleType("fake_pynvml")  # attributes set below, as pynvml's
    mod.NVMLError = pynvml.NVMLError
    mod.NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    mod.NVML_CLOCK_GRAPHICS = pynvml.NVML_CLOCK_GRAPHICS
    mod.lost = False
    mod.inits = 0
    mod.shutdowns = 0

    def check() -> None:
        if mod.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    def nvmlInit() -> None:
        if init_error is not None:
            raise pynvml.NVMLError(init_error)
        mod.inits += 1

    def nvmlShutdown() -> None:
        mod.shutdowns += 1

    def handle(index: int) -> object:
        check()
        return ("gpu", index)

    def processes(_h: object) -> list[Any]:
        check()
        # pynvml's c_nvmlProcessInfo_t: usedGpuMemory is None where the driver cannot tell
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in (procs or {}).items()]

    def fan(_h: object) -> int:
        check()
        if not fan_supported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return 30

    def memory(_h: object) -> Any:
        check()
        return pynvml.c_nvmlMemory_t(total=mem_total, free=mem_total - mem_used, used=mem_used)

    def utilization(_h: object) -> Any:
        check()
        return pynvml.c_nvmlUtilization_t(gpu=util, memory=20)

    def _value(v: Any) -> Any:
        def f(*_a: Any) -> Any:
            check()
            return v
        return f

    mod.nvmlInit = nvmlInit
    mod.nvmlShutdown = nvmlShutdown
    mod.nvmlDeviceGetCount = lambda: count
    mod.nvmlDeviceGetHandleByIndex = handle
    mod.nvmlDeviceGetName = _value(name)
    mod.nvmlDeviceGetUtilizationRates = utilization
    mod.nvmlDeviceGetMemoryInfo = memory
    mod.nvmlDeviceGetTemperature = _value(temp)
    mod.nvmlDeviceGetPowerUsage = _value(milliwatts)
    mod.nvmlDeviceGetClockInfo = _value(clock_mhz)
    mod.nvmlDeviceGetMaxClockInfo = _value(max_clock_mhz)
    mod.nvmlDeviceGetFanSpeed = fan
    mod.nvmlDeviceGetComputeRunningProcesses = processes
    mod.nvmlDeviceGetGraphicsRunningProcesses = lambda h: processes(h)[:0]
    return mod


def make_sample(source: str = "psutil", mono: float = 0.0, **fields: Any) -> Sample:
    return Sample(source=source, mono=mono, wall=1_700_000_000.0 + mono, **fields)


class ScriptedSource(TelemetrySource):
    """Opens and reads as scripted: each list is consumed one item per call, the last repeats.

    An item that is an exception instance is raised; ``None`` means success.
    """

    def __init__(
        self,
        name: str,
        *,
        opens: list[BaseException | None] | None = None,
        reads: list[BaseException | None] | None = None,
        clock: Any = None,
    ) -> None:
        self.name = name
        self.opens = list(opens or [None])
        self.reads = list(reads or [None])
        self.clock = clock
        self.open_calls = 0
        self.read_calls = 0
        self.close_calls = 0
        self.is_open = False

    @staticmethod
    def _next(plan: list[BaseException | None], n: int) -> BaseException | None:
        return plan[min(n, len(plan) - 1)]

    def open(self) -> None:
        outcome = self._next(self.opens, self.open_calls)
        self.open_calls += 1
        if outcome is not None:
            raise outcome
        self.is_open = True

    def read(self) -> Sample:
        if not self.is_open:
            raise AssertionError(f"{self.name} read while closed")
        outcome = self._next(self.reads, self.read_calls)
        self.read_calls += 1
        if outcome is not None:
            raise outcome
        mono = self.clock() if self.clock is not None else float(self.read_calls)
        return make_sample(self.name, mono=mono, mem_used=self.read_calls)

    def close(self) -> None:
        self.close_calls += 1
        self.is_open = False


def unavailable(name: str, reason: str = "not here", fix: str | None = None, retry: bool = True) -> SourceUnavailable:
    return SourceUnavailable(name, reason, fix, retry=retry)


def failed(name: str, reason: str = "stopped", fix: str | None = None) -> SourceFailed:
    return SourceFailed(name, reason, fix)
