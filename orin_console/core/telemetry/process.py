"""What one process (a model runner) really holds: RSS, USS, swap, and GPU memory.

- RSS counts shared pages (the mapped model file in the page cache) in every process mapping
  them; USS is what ending the process gives back. Both come from ``/proc/<pid>/smaps_rollup``
  through psutil, which needs the same user (or root); otherwise only RSS and swap are known.
- Swap comes from ``smaps_rollup`` or, failing that, ``VmSwap`` in ``/proc/<pid>/status``.
- GPU memory comes from the telemetry sample: jtop's nvmap table on a Jetson, NVML's process
  list on a desktop GPU. ``None`` means the source cannot attribute GPU memory, 0 that the
  process holds none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from orin_console.core.errors import OrinError
from orin_console.core.telemetry.base import Sample


class ProcessGone(OrinError):
    """The process to measure does not exist (any more)."""


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    """Memory of one process, in bytes. ``None``: could not be measured."""

    pid: int
    rss: int
    uss: int | None
    swap: int | None
    gpu: int | None
    gpu_source: str | None
    """The telemetry source the GPU figure came from."""

    @property
    def exclusive(self) -> int:
        """What ending the process frees at least: USS (RSS where USS is unknown) + swap + GPU."""
        base = self.uss if self.uss is not None else self.rss
        return base + (self.swap or 0) + (self.gpu or 0)


def read_vm_swap(pid: int, proc_root: str | Path = "/proc") -> int | None:
    """``VmSwap`` of ``/proc/<pid>/status`` in bytes (None where the kernel does not say)."""
    try:
        with open(Path(proc_root) / str(pid) / "status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmSwap:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def measure_process(pid: int, sample: Sample | None = None, *, proc_root: str | Path = "/proc") -> ProcessMemory:
    """Measure ``pid`` now; GPU memory is taken from ``sample`` (the sampler's latest).

    Raises:
        ProcessGone: no such process.
    """
    try:
        proc = psutil.Process(pid)
        try:
            full = proc.memory_full_info()
            rss, uss, swap = int(full.rss), int(full.uss), getattr(full, "swap", None)
            swap = int(swap) if swap is not None else read_vm_swap(pid, proc_root)
        except psutil.AccessDenied:
            rss, uss, swap = int(proc.memory_info().rss), None, read_vm_swap(pid, proc_root)
    except psutil.NoSuchProcess:
        raise ProcessGone(f"process {pid} does not exist") from None
    except psutil.AccessDenied:
        raise ProcessGone(f"process {pid} cannot be inspected (permission denied)") from None
    gpu = gpu_source = None
    if sample is not None and sample.gpu_process_bytes is not None:
        gpu, gpu_source = int(sample.gpu_process_bytes.get(pid, 0)), sample.source
    return ProcessMemory(pid=pid, rss=rss, uss=uss, swap=swap, gpu=gpu, gpu_source=gpu_source)


def measure_processes(pids: Iterable[int], sample: Sample | None = None) -> dict[int, ProcessMemory]:
    """:func:`measure_process` for each pid; processes that are gone are left out."""
    out: dict[int, ProcessMemory] = {}
    for pid in pids:
        try:
            out[pid] = measure_process(pid, sample)
        except ProcessGone:
            continue
    return out
