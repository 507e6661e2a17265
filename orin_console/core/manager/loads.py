"""Loads, tier moves and unloads, each run on its own thread (owned and joined by the manager).

:class:`LoadTasks` carries one operation out against one :class:`ModelRuntime`: predict (from
the cache), check the checksum, reserve through the :class:`~orin_console.core.memory.scheduler.Scheduler`,
start the runner, and drive the model's state machine. Every wait in it watches the
operation's :class:`~orin_console.core.cancel.CancelToken`: a cancelled load kills its
starting runner and gives its reservation back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from orin_console.core.cancel import Cancelled, CancelToken
from orin_console.core.catalog.store import Catalog
from orin_console.core.errors import OrinError
from orin_console.core.events.bus import EventBus
from orin_console.core.events.kinds import LoadProgress, ManagerError, ModelStateChanged
from orin_console.core.manager.model import ModelRuntime, memory_total
from orin_console.core.manager.predictions import PredictionCache
from orin_console.core.manager.recorder import MeasurementRecorder
from orin_console.core.manager.types import ModelStatus
from orin_console.core.memory.admission import AdmissionRefused, AdmissionRequest
from orin_console.core.memory.scheduler import Reservation, Scheduler
from orin_console.core.runner import LoadResult, Runner, RunnerDied, tier_config
from orin_console.core.tier import Tier
from orin_console.core.units import GB

__all__ = ["LoadTasks", "Operations"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Operations:
    """One thread per load, move or unload, each tracked until it ends so close() can join it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def submit(self, work: Callable[[], T], name: str) -> Future[T]:
        """Run ``work`` on a new thread; its result or error goes to the returned future."""
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                result = work()
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return future

    def join(self, timeout: float) -> bool:
        """Wait for every operation's thread; whether all ended within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [t for t in self._threads if t is not threading.current_thread()]
            if not threads:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            threads[0].join(remaining)


class LoadTasks:
    """The bodies of loads, moves and unloads (see the module docstring).

    Args:
        catalog: the catalog in force.
        scheduler: the one owner of memory decisions.
        predictions: cached header facts and predictions.
        recorder: measures runners after load.
        bus: where progress and errors are published.
        new_runner: makes a (not started) runner for a model.
        n_threads: decode threads per runner.
        on_removed: called when a model removed from the catalog has been unloaded.
    """

    def __init__(self, *, catalog: Callable[[], Catalog], scheduler: Scheduler, predictions: PredictionCache,
                 recorder: MeasurementRecorder, bus: EventBus,
                 new_runner: Callable[[ModelRuntime, object], Runner], n_threads: int | None,
                 on_removed: Callable[[ModelRuntime], None]) -> None:
        self._catalog = catalog
        self._scheduler = scheduler
        self._predictions = predictions
        self._recorder = recorder
        self._bus = bus
        self._new_runner = new_runner
        self._n_threads = n_threads
        self._on_removed = on_removed

    def _error(self, model: ModelRuntime, message: str, exc: BaseException | None = None) -> None:
        kind = type(exc).__name__ if exc is not None else None
        self._bus.publish(ManagerError(message=message, model_id=model.model_id, kind=kind))

    # -- load and move -----------------------------------------------------------------------

    def load(self, model: ModelRuntime, tier: Tier, token: CancelToken) -> ModelStatus:
        """Load ``model`` into ``tier`` (a move when it serves from another tier)."""
        entry = model.entry
        try:
            token.raise_if_cancelled()
            path = self._catalog().model_path(entry)
            prediction = self._predictions.predict(entry, path, tier, probe=True)  # validates the header first
            self._predictions.verify_checksum(entry, path)
            token.raise_if_cancelled()
            file_backed = int(prediction.details.get("weights_tensors", 0)) if tier is Tier.SWAP else 0
            reservation, decision = self._scheduler.reserve(
                AdmissionRequest(model.model_id, prediction, tier.value), file_backed=file_backed)
        except Cancelled:
            raise
        except AdmissionRefused as exc:
            model.refused(str(exc))
            self._error(model, str(exc), exc)
            raise
        except OrinError as exc:
            model.could_not_start(str(exc))
            self._error(model, str(exc), exc)
            raise
        try:
            moving = model.begin_load(tier)
        except BaseException:
            self._scheduler.release(reservation)
            raise
        runner = None
        try:
            if moving and decision.strategy == "break-before-make":
                with model.queue.exclusive(token):
                    old_runner, old_reservation = model.old_runner_stopped()
                self._stop(old_runner, old_reservation)
            runner = self._new_runner(model, tier_config(
                tier.value, str(path), n_ctx=entry.context, n_threads=self._n_threads,
                gpu_offload=self._predictions.gpu_offload))
            started = time.monotonic()
            result = self._start(model, runner, tier, token)
            seconds = time.monotonic() - started
            # Measured before it serves: a runner bigger than its tier can hold is refused here
            # (AdmissionRefused), stopped, and a move falls back to its old runner.
            memory = self._recorder.after_load(model.model_id, runner, prediction, Path(path), entry.sha256)
            self._scheduler.settle(reservation, memory_total(memory) if memory is not None else None)
            per_gb = seconds / max(path.stat().st_size / GB, 1e-9) if moving else None
            if moving:
                with model.queue.exclusive(token):  # a generation on the old runner finishes first
                    old = model.loaded(runner, reservation, prediction, result, move_seconds_per_gb=per_gb)
                # ``loaded`` published "ready" while the swap still held the queue (busy): say it is free
                self._bus.publish(ModelStateChanged(model_id=model.model_id, status=model.status()))
                self._stop(*old)
            else:
                model.loaded(runner, reservation, prediction, result)
        except BaseException as exc:
            if runner is not None:
                runner.kill()
            self._scheduler.release(reservation)
            if token.cancelled or isinstance(exc, Cancelled):
                model.cancelled(f"the load was cancelled: {token.reason}")
                raise Cancelled(token.reason) from exc
            model.failed(str(exc))
            self._error(model, str(exc), exc)
            raise
        if memory is not None:
            model.record_measurement(memory)
        log.info("%s %s %s in %.2f s", model.model_id, "moved to" if moving else "loaded into", tier.value, seconds)
        return model.status()

    def _start(self, model: ModelRuntime, runner: Runner, tier: Tier, token: CancelToken) -> LoadResult:
        """Start the runner; cancelling the token kills it (start then raises at once)."""

        def progress(fraction: float) -> None:
            model.progressed(fraction)
            self._bus.publish(LoadProgress(model_id=model.model_id, tier=tier.value, fraction=fraction))

        remove = token.on_cancel(runner.kill)
        try:
            token.raise_if_cancelled()
            result = runner.start(progress=progress)
            token.raise_if_cancelled()  # cancelled just as it finished: the caller kills it
            return result
        finally:
            remove()

    def _stop(self, runner: Runner | None, reservation: Reservation | None) -> None:
        if runner is not None:
            runner.cancel()
            runner.shutdown()
        self._scheduler.release(reservation)

    # -- unload ------------------------------------------------------------------------------

    def unload(self, model: ModelRuntime, previous: Future[ModelStatus] | None) -> ModelStatus:
        """Stop the model's runner; a load or move in progress (already cancelled) ends first."""
        if previous is not None:
            with contextlib.suppress(BaseException):  # its failure was reported; unloading goes on
                previous.result()
        runner, reservation = model.begin_unload()
        try:
            self._stop(runner, reservation)
        finally:
            model.unloaded()
        if model.removed:
            self._on_removed(model)
        return model.status()

    def stop_at_close(self, model: ModelRuntime) -> None:
        """Stop whatever runner the model still has (the manager is closing)."""
        try:
            runner, reservation = model.begin_unload()
        except OrinError:  # an operation that did not end in time still holds it
            runner, reservation = model.runner, model.reservation
            self._stop(runner, reservation)
            return
        try:
            self._stop(runner, reservation)
        finally:
            model.unloaded()

    # -- runner deaths -----------------------------------------------------------------------

    def runner_exited(self, model: ModelRuntime, runner: Runner, died: RunnerDied | None) -> None:
        """A runner ended; when it died on its own while serving, the model is failed."""
        if died is None:
            return
        reservation = model.died(runner, str(died))
        if reservation is None:
            return  # an old runner of a move, or a runner that never served
        self._scheduler.release(reservation)
        log.warning("%s", died)
        self._error(model, str(died))
