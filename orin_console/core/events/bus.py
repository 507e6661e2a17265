"""A small typed event bus: core publishes, front ends subscribe.

Events are frozen dataclasses deriving from :class:`Event`. Every subscription owns a bounded
queue: when a consumer falls behind, the oldest undelivered events are dropped and counted, so
:meth:`EventBus.publish` never blocks and never fails because of a subscriber. A subscription
is either pulled (``sub.get(timeout)``, ``sub.drain()``) or, given a callback, served by its own
daemon thread; a callback that raises is logged and counted, and the others carry on.

    bus = EventBus()
    sub = bus.subscribe(kinds=(TelemetrySample,), maxsize=100)
    bus.publish(TelemetrySample(sample=...))
    event = sub.get(timeout=1.0)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orin_console.core.telemetry.base import Sample

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event. ``ts`` is the wall-clock time (``time.time()``) it was made."""

    ts: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True, slots=True)
class TelemetrySample(Event):
    """A new telemetry sample (gauges, sparklines)."""

    sample: Sample


@dataclass(frozen=True, slots=True)
class TelemetrySourceChanged(Event):
    """The sampler switched telemetry source: a fallback (with the fix) or a recovery."""

    previous: str | None
    current: str | None
    reason: str
    fix: str | None = None


Callback = Callable[[Event], None]


class Subscription:
    """One subscriber's bounded queue. Obtain it from :meth:`EventBus.subscribe`."""

    def __init__(self, bus: EventBus, kinds: tuple[type[Event], ...], maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.kinds = kinds
        self.maxsize = maxsize
        self.dropped = 0
        """Events discarded because the queue was full (oldest first)."""
        self.failures = 0
        """Callback invocations that raised (callback subscriptions only)."""
        self._bus = bus
        self._queue: deque[Event] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _offer(self, event: Event) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self.maxsize:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(event)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Event | None:
        """The oldest pending event; ``None`` on timeout or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue or self._closed, timeout):
                return None
            return self._queue.popleft() if self._queue else None

    def drain(self) -> list[Event]:
        """Every pending event, oldest first, without waiting."""
        with self._cond:
            events = list(self._queue)
            self._queue.clear()
            return events

    def close(self) -> None:
        """Stop receiving; a callback thread finishes the event in hand and exits."""
        self._bus.unsubscribe(self)

    def _shutdown(self, timeout: float) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _serve(self, callback: Callback) -> None:
        while True:
            event = self.get()
            if event is None:
                return
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - a subscriber's bug must not stop delivery
                self.failures += 1
                log.exception("event subscriber %r failed on %s", callback, type(event).__name__)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Thread-safe publish/subscribe for :class:`Event` objects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()

    def subscribe(
        self,
        callback: Callback | None = None,
        *,
        kinds: Iterable[type[Event]] = (Event,),
        maxsize: int = 1000,
        name: str | None = None,
    ) -> Subscription:
        """Receive events that are instances of ``kinds``.

        Args:
            callback: called with each event on the subscription's own daemon thread; leave it
                out to pull events with :meth:`Subscription.get`.
            kinds: event classes of interest (subclasses included).
            maxsize: pending events kept before the oldest are dropped.
            name: the callback thread's name (for debugging).
        """
        sub = Subscription(self, tuple(kinds), maxsize)
        if callback is not None:
            sub._thread = threading.Thread(
                target=sub._serve, args=(callback,), name=name or "event-subscriber", daemon=True
            )
            sub._thread.start()
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    def unsubscribe(self, sub: Subscription, timeout: float = 1.0) -> None:
        """Remove ``sub`` (idempotent) and wait up to ``timeout`` s for its callback thread."""
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
        sub._shutdown(timeout)

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every interested subscriber. Never blocks on a subscriber."""
        for sub in self._subs:  # an immutable snapshot: no lock held while offering
            if isinstance(event, sub.kinds):
                sub._offer(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
