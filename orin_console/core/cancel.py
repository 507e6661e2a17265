"""Cooperative cancellation for waits in the core (a queue place, a load, a generation).

A :class:`CancelToken` is made by the caller (the API cancels it when its client goes away, the
TUI when the operator presses escape) and passed down; every wait in the core watches it and
raises :class:`Cancelled` promptly once it is set. Thread-safe; cancelling twice is harmless.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from orin_console.core.errors import OrinError


class Cancelled(OrinError):
    """The caller cancelled the request (while queued, loading or generating)."""


class CancelToken:
    """A one-way flag with callbacks: once cancelled, always cancelled."""

    __slots__ = ("_callbacks", "_event", "_lock", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []
        self.reason = "cancelled"

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` has been called."""
        return self._event.is_set()

    def cancel(self, reason: str = "cancelled") -> None:
        """Set the flag and run the callbacks (once, on the calling thread)."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout``; whether it was cancelled."""
        return self._event.wait(timeout)

    def on_cancel(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Run ``callback`` when cancelled (at once if already); returns a function that
        removes it."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)

                def remove() -> None:
                    with self._lock:
                        if callback in self._callbacks:
                            self._callbacks.remove(callback)

                return remove
        callback()
        return lambda: None

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` when cancelled."""
        if self._event.is_set():
            raise Cancelled(self.reason)
