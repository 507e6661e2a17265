"""Telemetry: what the machine is doing, from the best source there is.

    from orin_console.core.telemetry import Sampler
    sampler = Sampler.from_settings(settings, bus=bus).start()
    sample = sampler.latest()          # a Sample, or None before the first
    sampler.stop()

Sources, in order of preference (``telemetry_source = "auto"``): :class:`JtopSource` (a Jetson
with the jtop service), :class:`NvmlSource` (a desktop NVIDIA GPU), :class:`PsutilSource`
(everything else). Naming one source in the settings puts it first, with psutil still behind it
so a failure degrades to the basics instead of leaving the gauges empty. See
``docs/telemetry.md``.
"""

from __future__ import annotations

from orin_console.core.telemetry.base import (
    DEFAULT_STALE_AFTER_S,
    Sample,
    SourceFailed,
    SourceUnavailable,
    TelemetryError,
    TelemetrySource,
)
from orin_console.core.telemetry.jtop_source import JtopSource, is_jetson, sample_from_jtop
from orin_console.core.telemetry.nvml_source import NvmlSource
from orin_console.core.telemetry.process import ProcessGone, ProcessMemory, measure_process, measure_processes
from orin_console.core.telemetry.psutil_source import PsutilSource
from orin_console.core.telemetry.sampler import Sampler, SourceStatus

SOURCE_NAMES = ("auto", "jtop", "nvml", "psutil")


def build_sources(choice: str = "auto", *, interval_s: float = 1.0) -> list[TelemetrySource]:
    """The sources to try, best first, for a ``telemetry_source`` setting."""
    if choice == "auto":
        return [JtopSource(interval_s), NvmlSource(), PsutilSource()]
    if choice == "jtop":
        return [JtopSource(interval_s), PsutilSource()]
    if choice == "nvml":
        return [NvmlSource(), PsutilSource()]
    if choice == "psutil":
        return [PsutilSource()]
    raise ValueError(f"unknown telemetry source {choice!r} (one of {', '.join(SOURCE_NAMES)})")


__all__ = [
    "DEFAULT_STALE_AFTER_S",
    "SOURCE_NAMES",
    "JtopSource",
    "NvmlSource",
    "ProcessGone",
    "ProcessMemory",
    "PsutilSource",
    "Sample",
    "Sampler",
    "SourceFailed",
    "SourceStatus",
    "SourceUnavailable",
    "TelemetryError",
    "TelemetrySource",
    "build_sources",
    "is_jetson",
    "measure_process",
    "measure_processes",
    "sample_from_jtop",
]
