"""What every telemetry source produces (:class:`Sample`) and how it is driven (:class:`TelemetrySource`).

Units: memory in bytes, frequencies in Hz, temperatures in degrees Celsius, power in watts, loads
in percent (0-100). A field is ``None`` (or an empty mapping) when the source cannot see it;
nothing is ever guessed.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from orin_console.core.errors import OrinError

DEFAULT_STALE_AFTER_S = 3.0


class TelemetryError(OrinError):
    """Telemetry could not be read from any source."""


class SourceUnavailable(TelemetryError):
    """A source cannot start. ``reason`` says why, ``fix`` what the operator can do about it.

    ``retry`` is False where waiting will not help (the library is not installed, no NVIDIA
    driver): the sampler then stops probing that source.
    """

    def __init__(self, source: str, reason: str, fix: str | None = None, *, retry: bool = True) -> None:
        self.source = source
        self.reason = reason
        self.fix = fix
        self.retry = retry
        super().__init__(f"{source}: {reason}" + (f" (fix: {fix})" if fix else ""))


class SourceFailed(SourceUnavailable):
    """A source that was working stopped (its service died, its device vanished)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the machine. Treat the mappings as read-only."""

    source: str
    """Which source produced it: ``jtop``, ``nvml`` or ``psutil``."""
    mono: float
    """``time.monotonic()`` when it was read: for ages and staleness."""
    wall: float
    """``time.time()`` when it was read: for display and logs."""
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    """Older than this, the sample is stale (the sampler sets it from its interval)."""

    mem_total: int | None = None
    mem_used: int | None = None
    """Used by processes: total - free - buffers - page cache."""
    mem_available: int | None = None
    """``MemAvailable``: what can be allocated without swapping (admission control uses it)."""
    mem_gpu_shared: int | None = None
    """On a Jetson: the part of RAM the GPU holds (nvmap). GPU memory is RAM there."""
    gpu_mem_total: int | None = None
    """Dedicated memory of a discrete GPU (NVML only)."""
    gpu_mem_used: int | None = None
    """Dedicated memory of a discrete GPU in use (NVML only)."""
    swap_total: int | None = None
    swap_used: int | None = None

    cpu_percent: float | None = None
    cpu_per_core: tuple[float | None, ...] = ()
    """Per-core load; ``None`` for an offline core."""

    gpu_name: str | None = None
    gpu_load: float | None = None
    gpu_freq_hz: int | None = None
    gpu_freq_max_hz: int | None = None
    emc_load: float | None = None
    """External memory controller: bandwidth used, percent of the running frequency."""
    emc_freq_hz: int | None = None

    temperatures: Mapping[str, float] = field(default_factory=dict)
    power_w: float | None = None
    """Board input power (``VDD_IN`` on an Orin Nano), or the GPU's draw for NVML."""
    power_rails_w: Mapping[str, float] = field(default_factory=dict)
    fan_percent: float | None = None
    fan_rpm: int | None = None
    nvpmodel: str | None = None
    nvpmodel_id: int | None = None
    jetson_clocks: bool | None = None

    gpu_process_bytes: Mapping[int, int] | None = None
    """GPU memory per process id; ``None`` when the source cannot attribute it, empty when
    no process holds GPU memory."""
    notes: tuple[str, ...] = ()
    """Caveats about this sample (e.g. where a field came from)."""

    def age(self, now: float | None = None) -> float:
        """Seconds since the sample was read (``now`` is a ``time.monotonic()`` value)."""
        return (time.monotonic() if now is None else now) - self.mono

    def is_stale(self, now: float | None = None, max_age: float | None = None) -> bool:
        """True when older than ``max_age`` (default: :attr:`stale_after_s`)."""
        limit = self.stale_after_s if max_age is None else max_age
        return self.age(now) > limit

    def with_stale_after(self, seconds: float) -> Sample:
        return replace(self, stale_after_s=seconds)

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-ready mapping, with ``age_s`` and ``stale`` computed at ``now``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = {str(k): v for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["age_s"] = round(self.age(now), 3)
        out["stale"] = self.is_stale(now)
        return out


class TelemetrySource(ABC):
    """Reads samples from one place. Used from one thread at a time (the sampler's).

    Lifecycle: :meth:`open` (raises :class:`SourceUnavailable`), any number of :meth:`read`
    (raises :class:`SourceFailed` when the source stops working), :meth:`close`. After a
    failure the sampler closes the source and may :meth:`open` it again later.
    """

    name: str = "?"

    @abstractmethod
    def open(self) -> None:
        """Connect or probe; raise :class:`SourceUnavailable` with the reason and the fix."""

    @abstractmethod
    def read(self) -> Sample:
        """One sample now; raise :class:`SourceFailed` if the source stopped working."""

    def close(self) -> None:  # noqa: B027 - most sources hold nothing
        """Release whatever :meth:`open` acquired. Safe to call more than once."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def kb(value: Any) -> int | None:
    """KiB (jtop, ``/proc``) to bytes; ``None`` stays ``None``."""
    return None if value is None else int(value) * 1024


def now_pair() -> tuple[float, float]:
    """``(monotonic, wall)`` read together."""
    return time.monotonic(), time.time()
