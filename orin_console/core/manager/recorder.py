"""The measurement recorder: a runner's memory from the OS after its load and after each use.

After a load the figure is recorded next to the prediction (the corrections file), so later
predictions for that model are corrected; after a use the larger figure is kept. Both feed
the scheduler, whose reservation becomes the larger of prediction and measurement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from orin_console.core.memory.measurements import Corrections, model_identity
from orin_console.core.memory.prediction import Prediction
from orin_console.core.runner import Runner
from orin_console.core.telemetry.process import ProcessGone, ProcessMemory, measure_process

__all__ = ["MeasurementRecorder"]

log = logging.getLogger(__name__)


class _LatestSample(Protocol):
    def latest(self) -> object: ...


class MeasurementRecorder:
    """Measure runners and record what the measurements teach about predictions.

    Args:
        corrections: where measurements are recorded.
        telemetry: a sampler whose latest sample gives each runner's GPU memory (jtop on a
            Jetson, NVML on a desktop GPU); None measures from /proc alone.
        on_recorded: called after a measurement was recorded (predictions change).
    """

    def __init__(self, corrections: Corrections, telemetry: _LatestSample | None = None,
                 on_recorded: Callable[[], None] | None = None) -> None:
        self._corrections = corrections
        self._telemetry = telemetry
        self._on_recorded = on_recorded

    def measure(self, runner: Runner | None) -> ProcessMemory | None:
        """The runner's memory from the OS (GPU bytes from the telemetry sample), or None."""
        if runner is None or runner.pid is None:
            return None
        sample = self._telemetry.latest() if self._telemetry is not None else None
        try:
            return measure_process(runner.pid, sample)  # type: ignore[arg-type]
        except ProcessGone:
            return None

    def after_load(self, model_id: str, runner: Runner, prediction: Prediction, path: Path,
                   sha256: str | None) -> ProcessMemory | None:
        """Measure a runner that just loaded and record it against its prediction."""
        memory = self.measure(runner)
        if memory is None:
            return None
        try:
            self._corrections.record(model_identity(path, sha256), prediction, rss=memory.rss, uss=memory.uss,
                                     swap=memory.swap, gpu=memory.gpu, state="load")
        except (OSError, ValueError) as exc:
            log.warning("could not record the measurement of %s: %s", model_id, exc)
            return memory
        if self._on_recorded is not None:
            self._on_recorded()
        return memory
