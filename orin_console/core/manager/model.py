"""One catalog model inside the manager: its load state machine (and its generation queue).

:class:`ModelRuntime` holds the model's moving parts (runner, reservation, prediction,
measurements) and changes them only through its transitions, each of which checks that it is
legal from the current state (an illegal one raises :class:`InvalidTransition`: a bug, never
an operator error)::

    UNLOADED/FAILED --begin_load--> LOADING --loaded--> READY --begin_unload--> UNLOADING --unloaded--> UNLOADED
    READY --begin_load(other tier)--> MOVING --loaded--> READY
    LOADING --failed--> FAILED          LOADING --cancelled--> UNLOADED
    MOVING --failed/cancelled--> READY (the old runner still serves) or FAILED (it is gone)
    READY/MOVING --died--> FAILED (READY) or MOVING without its old runner

It holds the model's :class:`~orin_console.core.manager.queue.GenerationQueue` ("one
generation at a time per runner, a bounded queue, a full queue is a clear busy error"; every
wait in it is cancellable). The manager owns the decisions. A
generation's stream is :class:`~orin_console.core.manager.stream.ManagedStream`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from orin_console.core.cancel import CancelToken
from orin_console.core.catalog.store import CatalogEntry
from orin_console.core.errors import OrinError
from orin_console.core.manager.queue import GenerationQueue
from orin_console.core.manager.types import ModelState, ModelStatus
from orin_console.core.tier import LOADED_TIERS, Tier

if TYPE_CHECKING:
    from orin_console.core.memory.prediction import Prediction
    from orin_console.core.memory.scheduler import Reservation
    from orin_console.core.runner import LoadResult, Runner
    from orin_console.core.telemetry.process import ProcessMemory

__all__ = ["InvalidTransition", "ManagedStream", "ModelRuntime", "default_tier", "memory_total"]


def memory_total(m: ProcessMemory) -> int:
    """RSS + swap + GPU bytes of one measurement."""
    return m.rss + (m.swap or 0) + (m.gpu or 0)


def default_tier(entry: CatalogEntry) -> Tier:
    """Where a request without a named tier loads ``entry``: its preferred tier, or swap for
    a model whose catalog tier is ``disk`` (kept unloaded unless asked for)."""
    return entry.tier if entry.tier in LOADED_TIERS else Tier.SWAP


class InvalidTransition(OrinError):
    """A state change that the load state machine does not allow (a bug in the caller)."""


class ModelRuntime:
    """A catalog model's state, runner and queue; every field is guarded by :attr:`lock`.

    Args:
        entry: the catalog entry.
        queue_limit: generations that may wait beyond the running one.
        on_change: called (outside the lock) after every transition, with this runtime.
    """

    def __init__(self, entry: CatalogEntry, queue_limit: int,
                 on_change: Callable[[ModelRuntime], None] | None = None) -> None:
        self.entry = entry
        self.lock = threading.RLock()
        self._on_change = on_change
        self._state = ModelState.UNLOADED
        self._tier = Tier.DISK
        self._target: Tier | None = None
        self._runner: Runner | None = None
        self._reservation: Reservation | None = None
        self._progress: float | None = None
        self._prediction: Prediction | None = None
        self._measured: ProcessMemory | None = None
        self._load_result: LoadResult | None = None
        self._load_seconds: float | None = None
        self._move_seconds_per_gb: float | None = None
        self._error: str | None = None
        self.op: Future[ModelStatus] | None = None
        """The load, move or unload in progress (or the last one)."""
        self.op_target: Tier | None = None
        self.op_token: CancelToken | None = None
        """Cancels :attr:`op` (a load or move): its starting runner is killed."""
        self.removed = False
        self.queue = GenerationQueue(entry.id, queue_limit, self.lock)
        """One generation at a time, the others queued (it shares :attr:`lock`)."""

    # -- read-only views ---------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The catalog id."""
        return self.entry.id

    @property
    def state(self) -> ModelState:
        """Where the model is in its life cycle."""
        return self._state

    @property
    def tier(self) -> Tier:
        """The tier it runs in now (``disk``: no runner)."""
        return self._tier

    @property
    def runner(self) -> Runner | None:
        """The runner serving it (the old one during a move)."""
        return self._runner

    @property
    def reservation(self) -> Reservation | None:
        """The memory the scheduler holds for its serving runner."""
        return self._reservation

    @property
    def prediction(self) -> Prediction | None:
        """Admission's prediction for the serving runner."""
        return self._prediction

    @property
    def measured(self) -> ProcessMemory | None:
        """The serving runner's memory as last measured."""
        return self._measured

    @property
    def load_result(self) -> LoadResult | None:
        """What the runner reported at its last load."""
        return self._load_result

    @property
    def error(self) -> str | None:
        """Why the last load, move or runner failed (None when all is well)."""
        return self._error

    def serving_runner(self) -> Runner | None:
        """The runner when the model can serve now (ready, or moving on its old runner)."""
        with self.lock:
            runner = self._runner
            if self._state in (ModelState.READY, ModelState.MOVING) and runner is not None and runner.alive:
                return runner
            return None

    def unavailable_reason(self) -> str:
        """Why the model cannot serve now, in words that match its state (a reason kept from an
        earlier refusal or failure is not the reason once the model was unloaded since)."""
        with self.lock:
            state, error = self._state, self._error
            target = self._target.value if self._target is not None else None
        if state in (ModelState.UNLOADING, ModelState.UNLOADED):
            return "it was unloaded"
        if state in (ModelState.LOADING, ModelState.MOVING):
            return f"it is {state.value} into the {target} tier"
        return error or f"it is {state.value}"

    # -- transitions -------------------------------------------------------------------------

    def _illegal(self, action: str) -> InvalidTransition:
        return InvalidTransition(f"`{self.model_id}`: cannot {action} while {self._state.value}")

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)

    def begin_load(self, tier: Tier) -> bool:
        """Start a load (from unloaded or failed) or a move (from ready, to another tier).

        Returns:
            Whether it is a move (the old runner serves meanwhile).
        """
        with self.lock:
            if self._state in (ModelState.UNLOADED, ModelState.FAILED):
                self._state, moving = ModelState.LOADING, False
            elif self._state == ModelState.READY and tier is not self._tier:
                self._state, moving = ModelState.MOVING, True
            else:
                raise self._illegal(f"start loading into {tier.value}")
            self._target, self._progress, self._error = tier, 0.0, None
        self._changed()
        return moving

    def progressed(self, fraction: float) -> None:
        """Load progress (0..1) of the load or move in progress."""
        with self.lock:
            if self._state in (ModelState.LOADING, ModelState.MOVING):
                self._progress = fraction

    def old_runner_stopped(self) -> tuple[Runner | None, Reservation | None]:
        """A break-before-make move: the old runner is let go before the new one starts.

        Returns:
            The old runner and its reservation, for the caller to stop and release.
        """
        with self.lock:
            if self._state != ModelState.MOVING:
                raise self._illegal("stop the old runner of a move")
            old = self._runner, self._reservation
            self._runner = self._reservation = self._measured = None
        self._changed()
        return old

    def loaded(self, runner: Runner, reservation: Reservation, prediction: Prediction,
               result: LoadResult, *, move_seconds_per_gb: float | None = None
               ) -> tuple[Runner | None, Reservation | None]:
        """The new runner is ready and serves from now on (hold :meth:`exclusive` for a move).

        Returns:
            The replaced runner and its reservation (a move), for the caller to stop and release.
        """
        with self.lock:
            if self._state not in (ModelState.LOADING, ModelState.MOVING) or self._target is None:
                raise self._illegal("finish a load")
            old = (self._runner, self._reservation) if self._state == ModelState.MOVING else (None, None)
            self._runner, self._reservation, self._prediction = runner, reservation, prediction
            self._load_result, self._load_seconds, self._measured = result, result.load_seconds, None
            if move_seconds_per_gb is not None:
                self._move_seconds_per_gb = move_seconds_per_gb
            self._state, self._tier, self._target, self._progress = ModelState.READY, self._target, None, None
        self._changed()
        return old

    def failed(self, message: str) -> None:
        """The load or move failed: a move falls back to its old runner when it still runs."""
        with self.lock:
            if self._state not in (ModelState.LOADING, ModelState.MOVING):
                raise self._illegal("fail a load")
            self._error = message
            self._settle_back(ModelState.FAILED)
        self._changed()

    def cancelled(self, message: str) -> None:
        """The load or move was cancelled: back to unloaded, or to the old runner of a move."""
        with self.lock:
            if self._state not in (ModelState.LOADING, ModelState.MOVING):
                raise self._illegal("cancel a load")
            self._error = message
            self._settle_back(ModelState.UNLOADED)
        self._changed()

    def _settle_back(self, without_runner: ModelState) -> None:
        self._target = self._progress = None
        runner = self._runner
        if self._state == ModelState.MOVING and runner is not None and runner.alive:
            self._state = ModelState.READY
            return
        self._state, self._tier, self._runner = without_runner, Tier.DISK, None
        self._measured = None

    def could_not_start(self, message: str) -> None:
        """The file failed its checks before anything started: a model that was not serving
        becomes failed with the reason; a serving one keeps serving and keeps the reason."""
        with self.lock:
            if self._state in (ModelState.UNLOADED, ModelState.FAILED):
                self._state = ModelState.FAILED
            elif self._state != ModelState.READY:
                raise self._illegal("report a file problem")
            self._error = message
        self._changed()

    def renew(self, entry: CatalogEntry) -> None:
        """The catalog entry was edited (same id)."""
        with self.lock:
            self.entry = entry

    def refused(self, message: str) -> None:
        """Admission said no: nothing started, the model stays as it was; the reason is kept."""
        with self.lock:
            self._error = message
        self._changed()

    def died(self, runner: Runner, message: str) -> Reservation | None:
        """The serving runner died on its own.

        Returns:
            Its reservation for the caller to release, or None when ``runner`` no longer
            serves (an old runner of a move, already replaced).
        """
        with self.lock:
            if runner is not self._runner:
                return None
            if self._state == ModelState.UNLOADING:
                # The unload in progress holds this runner and its reservation and releases
                # them itself; the death only ends what it was ending (failing the model here
                # made its ``unloaded()`` raise and released the reservation twice).
                return None
            reservation = self._reservation
            self._runner = self._reservation = self._measured = None
            self._error = message
            if self._state == ModelState.MOVING:
                pass  # the new runner is on its way; if it fails, the model is failed
            elif self._state == ModelState.READY:
                self._state, self._tier = ModelState.FAILED, Tier.DISK
            else:
                raise self._illegal("lose its runner")
        self._changed()
        return reservation

    def begin_unload(self) -> tuple[Runner | None, Reservation | None]:
        """Start an unload (from ready, failed or unloaded).

        Returns:
            The runner to stop and its reservation to release (None when none runs).
        """
        with self.lock:
            if self._state not in (ModelState.READY, ModelState.FAILED, ModelState.UNLOADED):
                raise self._illegal("start unloading")
            old = self._runner, self._reservation
            self._state, self._target = ModelState.UNLOADING, Tier.DISK
        self._changed()
        return old

    def unloaded(self) -> None:
        """The runner has stopped: the model is on disk only."""
        with self.lock:
            if self._state != ModelState.UNLOADING:
                raise self._illegal("finish an unload")
            self._state, self._tier, self._target = ModelState.UNLOADED, Tier.DISK, None
            self._runner = self._reservation = self._measured = None
            self._progress = self._error = None
        self._changed()

    def record_measurement(self, memory: ProcessMemory, *, keep_larger: bool = False) -> None:
        """The serving runner's memory from the OS (after load; after use, the larger)."""
        with self.lock:
            current = self._measured
            if keep_larger and current is not None and memory_total(current) >= memory_total(memory):
                return
            self._measured = memory

    # -- snapshot ----------------------------------------------------------------------------

    def measured_total(self) -> int | None:
        """RSS + swap + GPU bytes of the runner as last measured."""
        return memory_total(self._measured) if self._measured is not None else None

    def resident_kind(self) -> str | None:
        """How the weights are held: pinned, resident-not-pinned, or pageable."""
        if self._state not in (ModelState.READY, ModelState.MOVING) or self._load_result is None:
            return None
        if self._tier is Tier.SWAP:
            return "pageable"
        return "pinned" if self._load_result.pinned else "resident, not pinned"

    def status(self) -> ModelStatus:
        """A consistent snapshot."""
        with self.lock:
            predicted = self._prediction.total if self._prediction is not None else None
            measured = self.measured_total()
            error = None
            if predicted is not None and measured:
                error = (predicted - measured) / measured
            notes: list[str] = []
            serving = self._state in (ModelState.READY, ModelState.MOVING)
            if self._load_result is not None and serving:
                notes.extend(self._load_result.notes)
                if self._load_result.pin_problem and self._tier is Tier.RAM:
                    notes.append(self._load_result.pin_problem)
            runner = self._runner
            return ModelStatus(
                model_id=self.model_id,
                state=self._state,
                tier=self._tier.value,
                target_tier=self._target.value if self._target is not None else None,
                preferred_tier=self.entry.tier.value,
                pin=self.entry.pin,
                resident=self.resident_kind(),
                progress=self._progress,
                pid=runner.pid if runner is not None and runner.alive else None,
                predicted_bytes=predicted,
                prediction=self._prediction.describe() if self._prediction is not None else None,
                measured_bytes=measured,
                prediction_error=error,
                load_seconds=self._load_seconds,
                move_seconds_per_gb=self._move_seconds_per_gb,
                error=self._error,
                busy=self.queue.generating,
                queued=self.queue.waiting,
                notes=tuple(dict.fromkeys(notes)),
            )


from orin_console.core.manager.stream import ManagedStream  # noqa: E402  (its home; kept importable here)
