"""The source that works everywhere: ``/proc`` and ``/sys`` read directly, psutil where it helps.

Shows memory (``MemAvailable`` included), swap, CPU load per core, temperatures (thermal zones,
else psutil's hwmon sensors) and, on a Jetson without jtop, what the kernel itself exposes: the
GPU-shared RAM (``NvMapMemUsed``) and the integrated GPU's load and clock (devfreq). Reading a
handful of small files a second costs next to nothing (see ``benchmarks/telemetry_cpu.py``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from orin_console.core.telemetry.base import Sample, SourceFailed, SourceUnavailable, TelemetrySource, now_pair

# Device-tree names of NVIDIA integrated GPUs, as jetson-stats also recognises them.
IGPU_NAMES = frozenset({"gpu", "gv11b", "gp10b", "ga10b", "gb10b"})


def read_meminfo(path: str | Path = "/proc/meminfo") -> dict[str, int]:
    """``/proc/meminfo`` as a mapping of field to bytes (fields given in kB are converted)."""
    out: dict[str, int] = {}
    with open(path, encoding="ascii", errors="replace") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if not parts or not parts[0].isdigit():
                continue
            value = int(parts[0])
            out[key] = value * 1024 if parts[1:2] == ["kB"] else value
    return out


def memory_fields(info: dict[str, int]) -> dict[str, int | None]:
    """Sample memory fields from :func:`read_meminfo` output (psutil's and jtop's "used")."""
    total = info.get("MemTotal")
    used = None
    if total is not None:
        cache = info.get("Cached", 0) + info.get("SReclaimable", 0)
        used = total - info.get("MemFree", 0) - info.get("Buffers", 0) - cache
        if used < 0:  # containers and odd kernels: fall back to the plain definition
            used = total - info.get("MemFree", 0)
    swap_total = info.get("SwapTotal")
    swap_free = info.get("SwapFree")
    return {
        "mem_total": total,
        "mem_used": used,
        "mem_available": info.get("MemAvailable"),
        "mem_gpu_shared": info.get("NvMapMemUsed"),
        "swap_total": swap_total,
        "swap_used": None if swap_total is None or swap_free is None else swap_total - swap_free,
    }


def read_cpu_times(path: str | Path = "/proc/stat") -> dict[int, tuple[int, int]]:
    """Per-core ``(busy, total)`` jiffies from ``/proc/stat``; key -1 is the whole machine."""
    out: dict[int, tuple[int, int]] = {}
    with open(path, encoding="ascii", errors="replace") as fh:
        for line in fh:
            if not line.startswith("cpu"):
                break
            name, *cols = line.split()
            vals = [int(c) for c in cols[:8]]
            vals += [0] * (8 - len(vals))
            user, nice, system, idle, iowait, irq, softirq, steal = vals
            busy = user + nice + system + irq + softirq + steal
            key = -1 if name == "cpu" else int(name[3:])
            out[key] = (busy, busy + idle + iowait)
    return out


def cpu_load(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> tuple[float | None, tuple[float | None, ...]]:
    """Load between two :func:`read_cpu_times` readings: (machine, per core; None = offline)."""

    def pct(key: int) -> float | None:
        if key not in before or key not in after:
            return None
        busy = after[key][0] - before[key][0]
        total = after[key][1] - before[key][1]
        if total <= 0:
            return None
        return max(0.0, min(100.0, 100.0 * busy / total))

    cores = [k for k in after if k >= 0]
    per_core = tuple(pct(n) for n in range(max(cores) + 1)) if cores else ()
    return pct(-1), per_core


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def thermal_zones(sys_root: Path) -> dict[str, Path]:
    """Thermal zones named as jtop names them (``cpu-thermal`` -> ``cpu``) to their temp file."""
    zones: dict[str, Path] = {}
    base = sys_root / "class" / "thermal"
    try:
        entries = sorted(base.glob("thermal_zone*"))
    except OSError:
        return zones
    for zone in entries:
        try:
            kind = (zone / "type").read_text().strip()
        except OSError:
            continue
        name = kind.split("-")[0] if "-" in kind else kind.split("_")[0]
        if not name or "PMIC" in name:
            continue
        if name in zones:
            name = f"{name}{len(zones)}"
        zones[name] = zone / "temp"
    return zones


def find_igpu(sys_root: Path) -> Path | None:
    """The devfreq folder of an NVIDIA integrated GPU, if this is a Jetson."""
    base = sys_root / "class" / "devfreq"
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return None
    for entry in entries:
        try:
            name = (entry / "device" / "of_node" / "name").read_text().strip("\x00\n ").lower()
        except OSError:
            continue
        if name in IGPU_NAMES:
            return entry
    return None


class PsutilSource(TelemetrySource):
    """Memory, swap, CPU and temperatures from the kernel's own files (always available).

    Args:
        proc_root: where ``meminfo`` and ``stat`` live (tests point it at a fake tree).
        sys_root: where ``class/thermal`` and ``class/devfreq`` live.
    """

    name = "psutil"
    min_cpu_window_s = 0.04
    """CPU load over a shorter window than this (a few kernel ticks) is noise: not reported."""

    def __init__(self, proc_root: str | Path = "/proc", sys_root: str | Path = "/sys") -> None:
        self.proc_root = Path(proc_root)
        self.sys_root = Path(sys_root)
        self._cpu_before: dict[int, tuple[int, int]] = {}
        self._cpu_at = 0.0
        self._zones: dict[str, Path] = {}
        self._igpu: Path | None = None
        self._procfs = False
        self._opened = False

    def open(self) -> None:
        self._procfs = (self.proc_root / "meminfo").is_file()
        if self._procfs:
            self._cpu_before = read_cpu_times(self.proc_root / "stat")
            self._cpu_at = time.monotonic()
        else:
            try:
                import psutil
            except ImportError:
                raise SourceUnavailable(
                    self.name, "no /proc/meminfo and psutil is not installed",
                    "pip install psutil", retry=False,
                ) from None
            psutil.cpu_percent(percpu=True)  # primes psutil's own baseline
        self._zones = thermal_zones(self.sys_root)
        self._igpu = find_igpu(self.sys_root)
        self._opened = True

    def read(self) -> Sample:
        if not self._opened:
            raise SourceFailed(self.name, "read before open")
        mono, wall = now_pair()
        try:
            fields = self._read_procfs(mono) if self._procfs else self._read_psutil()
        except OSError as exc:
            raise SourceFailed(self.name, f"cannot read {exc.filename or 'procfs'}: {exc.strerror}") from exc
        fields["temperatures"] = self._temperatures()
        fields.update(self._igpu_fields())
        return Sample(source=self.name, mono=mono, wall=wall, **fields)

    def _read_procfs(self, mono: float) -> dict[str, Any]:
        fields: dict[str, Any] = dict(memory_fields(read_meminfo(self.proc_root / "meminfo")))
        if mono - self._cpu_at >= self.min_cpu_window_s:
            after = read_cpu_times(self.proc_root / "stat")
            fields["cpu_percent"], fields["cpu_per_core"] = cpu_load(self._cpu_before, after)
            self._cpu_before, self._cpu_at = after, mono
        return fields

    def _read_psutil(self) -> dict[str, Any]:  # pragma: no cover - non-Linux hosts only
        import psutil

        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        per_core = tuple(float(p) for p in psutil.cpu_percent(percpu=True))
        return {
            "mem_total": vm.total,
            "mem_used": vm.used,
            "mem_available": vm.available,
            "swap_total": sw.total,
            "swap_used": sw.used,
            "cpu_percent": sum(per_core) / len(per_core) if per_core else None,
            "cpu_per_core": per_core,
        }

    def _temperatures(self) -> dict[str, float]:
        temps: dict[str, float] = {}
        for name, path in self._zones.items():
            milli = read_int(path)
            if milli is not None and milli > -40000:  # jtop's offline sensors read -256 C
                temps[name] = milli / 1000.0
        if temps or self._zones:
            return temps
        try:
            import psutil

            sensors = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
        except (ImportError, OSError):
            return temps
        for chip, entries in sensors.items():
            for n, entry in enumerate(entries):
                label = entry.label or (str(n) if len(entries) > 1 else "")
                temps[f"{chip} {label}".strip()] = float(entry.current)
        return temps

    def _igpu_fields(self) -> dict[str, Any]:
        if self._igpu is None:
            return {}
        load = read_int(self._igpu / "device" / "load")
        freq = read_int(self._igpu / "cur_freq")
        return {
            "gpu_name": os.path.basename(self._igpu),
            "gpu_load": None if load is None else load / 10.0,  # the kernel reports per mille
            "gpu_freq_hz": freq,
            "gpu_freq_max_hz": read_int(self._igpu / "max_freq"),
        }

    def close(self) -> None:
        self._opened = False


__all__ = ["PsutilSource", "cpu_load", "find_igpu", "memory_fields", "read_cpu_times", "read_meminfo"]
