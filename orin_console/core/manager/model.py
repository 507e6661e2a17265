"""One catalog model inside the manager: its runner, state, and generation queue.

The manager owns the decisions; a slot only holds the model's moving parts and enforces
"one generation at a time per runner, a bounded queue, a full queue is a clear busy error".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING

from orin_console.core.catalog.store import CatalogEntry
from orin_console.core.manager.types import ModelBusy, ModelState, ModelStatus

if TYPE_CHECKING:
    from orin_console.core.gguf import GGUFInfo
    from orin_console.core.memory.prediction import Prediction
    from orin_console.core.runner import Chunk, Generation, LoadResult, Runner
    from orin_console.core.telemetry.process import ProcessMemory


def memory_total(m: ProcessMemory) -> int:
    """RSS + swap + GPU bytes of one measurement."""
    return m.rss + (m.swap or 0) + (m.gpu or 0)


class Slot:
    """Mutable per-model state; every field is guarded by :attr:`lock`."""

    def __init__(self, entry: CatalogEntry, queue_limit: int) -> None:
        self.entry = entry
        self.queue_limit = queue_limit
        self.lock = threading.RLock()
        self.state = ModelState.UNLOADED
        self.tier = "disk"
        self.target_tier: str | None = None
        self.runner: Runner | None = None
        self.op: Future[ModelStatus] | None = None
        self.op_target: str | None = None
        self.progress: float | None = None
        self.info: GGUFInfo | None = None
        self.prediction: Prediction | None = None
        self.measured: ProcessMemory | None = None
        self.load_result: LoadResult | None = None
        self.load_seconds: float | None = None
        self.move_seconds_per_gb: float | None = None
        self.error: str | None = None
        self.removed = False
        self._gen_cond = threading.Condition(self.lock)
        self.generating = False
        self.waiting = 0

    # -- the generation queue -------------------------------------------------------------

    def acquire(self) -> None:
        """Take the model's one generation place, queueing behind at most ``queue_limit``.

        Raises:
            ModelBusy: the queue is full.
        """
        with self._gen_cond:
            if self.generating:
                if self.waiting >= self.queue_limit:
                    raise ModelBusy(
                        f"`{self.entry.id}` is busy: one generation running and {self.waiting} "
                        f"queued (the limit); try again shortly or pick another model"
                    )
                self.waiting += 1
                try:
                    self._gen_cond.wait_for(lambda: not self.generating)
                finally:
                    self.waiting -= 1
            self.generating = True

    def release(self) -> None:
        """Give the generation place to the next in the queue."""
        with self._gen_cond:
            self.generating = False
            self._gen_cond.notify()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the generation place (no generation runs) for a runner swap or stop."""
        with self._gen_cond:
            self._gen_cond.wait_for(lambda: not self.generating)
            self.generating = True
        try:
            yield
        finally:
            self.release()

    # -- snapshot -------------------------------------------------------------------------

    def measured_total(self) -> int | None:
        """RSS + swap + GPU bytes of the runner as last measured."""
        return memory_total(self.measured) if self.measured is not None else None

    def resident_kind(self) -> str | None:
        """How the weights are held: pinned, resident-not-pinned, or pageable."""
        if self.state not in (ModelState.READY, ModelState.MOVING) or self.load_result is None:
            return None
        if self.tier == "swap":
            return "pageable"
        return "pinned" if self.load_result.pinned else "resident, not pinned"

    def status(self) -> ModelStatus:
        """A consistent snapshot."""
        with self.lock:
            predicted = self.prediction.total if self.prediction is not None else None
            measured = self.measured_total()
            error = None
            if predicted is not None and measured:
                error = (predicted - measured) / measured
            notes: list[str] = []
            if self.load_result is not None and self.state in (ModelState.READY, ModelState.MOVING):
                notes.extend(self.load_result.notes)
                if self.load_result.pin_problem and self.tier == "ram":
                    notes.append(self.load_result.pin_problem)
            return ModelStatus(
                model_id=self.entry.id,
                state=self.state,
                tier=self.tier,
                target_tier=self.target_tier,
                preferred_tier=self.entry.tier,
                pin=self.entry.pin,
                resident=self.resident_kind(),
                progress=self.progress,
                pid=self.runner.pid if self.runner is not None and self.runner.alive else None,
                predicted_bytes=predicted,
                prediction=self.prediction.describe() if self.prediction is not None else None,
                measured_bytes=measured,
                prediction_error=error,
                load_seconds=self.load_seconds,
                move_seconds_per_gb=self.move_seconds_per_gb,
                error=self.error,
                busy=self.generating,
                queued=self.waiting,
                notes=tuple(dict.fromkeys(notes)),
            )


class ManagedStream:
    """The caller's view of one generation: chunks, with the queue place released at the end.

    Iterate it for :class:`~orin_console.core.runner.Chunk` s. Closing it early (or leaving a
    ``with`` block) cancels the generation. The place in the model's queue is released exactly
    once, whether the stream finished, failed, or was closed before it started.
    """

    def __init__(self, slot: Slot, generation: Generation,
                 on_chunk: Callable[[Chunk], None], on_end: Callable[[], None]) -> None:
        self.model_id = slot.entry.id
        self._slot = slot
        self._gen = generation
        self._on_chunk = on_chunk
        self._on_end = on_end
        self._released = False
        self._release_lock = threading.Lock()

    def _release(self) -> None:
        with self._release_lock:
            if self._released:
                return
            self._released = True
        self._slot.release()
        self._on_end()

    def __iter__(self) -> ManagedStream:
        return self

    def __next__(self) -> Chunk:
        try:
            chunk = next(self._gen)
        except BaseException:
            self._release()
            raise
        self._on_chunk(chunk)
        if chunk.done:
            self._release()
        return chunk

    def cancel(self) -> None:
        """Ask the runner to stop this generation (it ends within one token)."""
        self._gen.cancel()

    def close(self) -> None:
        """Cancel if still running and release the queue place."""
        try:
            self._gen.close()
        finally:
            self._release()

    def __enter__(self) -> ManagedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_released", True):
            self.close()
