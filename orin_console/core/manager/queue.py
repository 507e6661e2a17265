"""One model's generation queue: one generation at a time, a bounded queue, a clear "busy".

:class:`GenerationQueue` gives out the model's one generation place. Up to ``limit`` callers
wait their turn; one more is refused at once with :class:`ModelBusy`. Every wait is
cancellable (a cancelled waiter leaves the queue), and closing the queue (the manager closes)
refuses every waiting and future caller. :meth:`~GenerationQueue.exclusive` holds the place
with no generation running, for a runner swap. The queue shares its model's lock, so a status
snapshot taken under that lock sees it consistently.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from orin_console.core.cancel import Cancelled, CancelToken
from orin_console.core.manager.types import ModelBusy, ModelUnavailable

__all__ = ["GenerationQueue"]


class GenerationQueue:
    """The generation place of one model and the callers waiting for it.

    Args:
        model_id: the model's id (messages only).
        limit: callers that may wait beyond the running generation.
        lock: the model's lock (the queue's condition uses it).
    """

    def __init__(self, model_id: str, limit: int, lock: threading.RLock) -> None:
        self.model_id = model_id
        self.limit = limit
        self._cond = threading.Condition(lock)
        self._generating = False
        self._waiting = 0
        self._closed: str | None = None

    @property
    def generating(self) -> bool:
        """A generation (or an exclusive holder) has the place now."""
        return self._generating

    @property
    def waiting(self) -> int:
        """Callers queued behind it."""
        return self._waiting

    def acquire(self, cancel: CancelToken | None = None) -> None:
        """Take the model's one generation place, queueing behind at most ``limit``.

        Raises:
            ModelBusy: the queue is full.
            Cancelled: ``cancel`` was cancelled while waiting (the place in the queue is freed).
            ModelUnavailable: the manager closed while waiting.
        """
        remove = cancel.on_cancel(self._wake) if cancel is not None else None
        try:
            with self._cond:
                self._check_waiting(cancel)
                if self._generating:
                    if self._waiting >= self.limit:
                        raise ModelBusy(
                            f"`{self.model_id}` is busy: one generation running and {self._waiting} "
                            f"queued (the limit); try again shortly or pick another model"
                        )
                    self._waiting += 1
                    try:
                        self._cond.wait_for(
                            lambda: not self._generating or self._closed is not None
                            or (cancel is not None and cancel.cancelled))
                    finally:
                        self._waiting -= 1
                    self._check_waiting(cancel)
                self._generating = True
        finally:
            if remove is not None:
                remove()

    def _check_waiting(self, cancel: CancelToken | None) -> None:
        if self._closed is not None:
            raise ModelUnavailable(f"`{self.model_id}`: {self._closed}")
        if cancel is not None and cancel.cancelled:
            raise Cancelled(cancel.reason)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def release(self) -> None:
        """Give the generation place to the next in the queue."""
        with self._cond:
            self._generating = False
            self._cond.notify_all()

    def close(self, reason: str) -> None:
        """Refuse every waiting and future generation with ``reason`` (the manager closes)."""
        with self._cond:
            self._closed = reason
            self._cond.notify_all()

    @contextmanager
    def exclusive(self, cancel: CancelToken | None = None) -> Iterator[None]:
        """Hold the generation place (no generation runs) for a runner swap.

        Raises:
            Cancelled: ``cancel`` was cancelled while waiting for the generation to end.
        """
        remove = cancel.on_cancel(self._wake) if cancel is not None else None
        try:
            with self._cond:
                self._cond.wait_for(lambda: not self._generating or (cancel is not None and cancel.cancelled))
                if cancel is not None and cancel.cancelled:
                    raise Cancelled(cancel.reason)
                self._generating = True
        finally:
            if remove is not None:
                remove()
        try:
            yield
        finally:
            self.release()
