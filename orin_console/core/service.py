"""The composition root: one :class:`Core` that builds, starts and closes every part.

Every front end (CLI, TUI, API), test and benchmark builds the core here, so the parts are
wired the same way everywhere::

    with create_core(load_settings()) as core:
        core.manager.load("smollm2").result()
        result = core.engine.quick("Hello")

Start order: the telemetry sampler (its first sample gives runners their GPU figures), the
manager (catalog watch), the auto-optimiser, the preloader. :meth:`Core.close` stops them in
reverse order, then the manager stops every runner, the spare included. Building a core starts
nothing; starting one starts threads, never a process: a runner process starts with the first
load.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from orin_console.core.engine.inference import Engine
from orin_console.core.events.bus import EventBus
from orin_console.core.manager.manager import Manager
from orin_console.core.placement.optimiser import AutoOptimiser
from orin_console.core.placement.preload import Preloader
from orin_console.core.settings import Settings
from orin_console.core.telemetry import Sampler

log = logging.getLogger(__name__)

__all__ = ["Core", "create_core"]


@dataclass
class Core:
    """The manager and the services around it, owned together.

    Attributes:
        settings: the settings the core was built from.
        bus: the event bus every part publishes on.
        manager: the facade over catalog, scheduler and runners.
        engine: quick / chat / batch generation with selection.
        sampler: telemetry (None when built with ``telemetry=False``).
        optimiser: the usage-based placement plan, recomputed periodically (applied only when
            ``auto_optimise`` is on).
        preloader: warms the likely next model (None unless ``preload`` is on).
    """

    settings: Settings
    bus: EventBus
    manager: Manager
    engine: Engine
    sampler: Sampler | None = None
    optimiser: AutoOptimiser | None = None
    preloader: Preloader | None = None
    _state_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _started: bool = field(default=False, repr=False)
    _closed: bool = field(default=False, repr=False)

    def start(self) -> Core:
        """Start the background services in order (threads only; idempotent)."""
        with self._state_lock:
            if self._started or self._closed:
                return self
            self._started = True
        try:
            if self.sampler is not None:
                self.sampler.start()
            self.manager.start()
            if self.optimiser is not None:
                self.optimiser.start()
            if self.preloader is not None:
                self.preloader.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop everything in reverse order; every runner (the spare included) ends.

        Safe to call twice, from any thread, and after a failed :meth:`start`.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        if self.preloader is not None:
            self.preloader.stop()
        if self.optimiser is not None:
            self.optimiser.stop()
        self.manager.close()
        if self.sampler is not None:
            self.sampler.stop()
        self.bus.close()  # joins every subscriber's callback thread

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def __enter__(self) -> Core:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_core(
    settings: Settings,
    *,
    telemetry: bool | Sampler = True,
    optimiser: bool = True,
    bus: EventBus | None = None,
    **manager_options: Any,
) -> Core:
    """Build the core from ``settings`` (nothing is started: see :meth:`Core.start`).

    Args:
        settings: budgets, catalog, state folder, telemetry and engine settings.
        telemetry: True builds the sampler from the settings; a :class:`Sampler` is used as
            given (tests pass one over fake sources); False runs without one (runners are then
            measured from /proc alone).
        optimiser: build the auto-optimiser (it applies the plan only when the settings'
            ``auto_optimise`` is on; otherwise it computes and publishes it).
        bus: the event bus (a new one by default).
        **manager_options: passed to :class:`Manager` (tests: ``n_threads``, ``gpu_offload``,
            ``watch_interval_s``, ``runner_env``, ``machine_memory``, ``budgets``...).
    """
    bus = bus or EventBus()
    sampler: Sampler | None
    if telemetry is True:
        sampler = Sampler.from_settings(settings, bus=bus)
    elif telemetry is False:
        sampler = None
    else:
        sampler = telemetry
    manager = Manager(settings, bus=bus, telemetry=sampler, **manager_options)
    bus.set_snapshot_provider(manager.status)  # what a (re)subscribing front end starts from
    engine = Engine(manager, on_cold=settings.on_cold)
    auto = AutoOptimiser.from_settings(manager, settings) if optimiser else None
    preloader = Preloader(manager) if settings.preload else None
    return Core(settings, bus, manager, engine, sampler, auto, preloader)
