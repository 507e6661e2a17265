"""A small typed event bus: core publishes, front ends subscribe.

Events are frozen dataclasses deriving from :class:`Event`. Every subscription owns a queue of
pending events, and :meth:`EventBus.publish` never blocks and never fails because of a
subscriber. Two delivery rules keep a slow subscriber both bounded and correct:

- **State events** (``coalesce_key() is None``: a model's state, the tier usage, a generation
  starting or finishing...) are never dropped and are delivered in the order they were
  published. A slow subscriber's queue grows for them up to ``maxsize`` pending events; at
  that hard cap the subscription *overflows*: its pending events are discarded and counted,
  :attr:`Subscription.overflowed` is set, and the next thing it receives is a
  :class:`Snapshot` (``reason="overflowed"``) of the whole state to resynchronise from.
- **High-rate events** (``coalesce_key()`` is a key: tokens, load progress, telemetry) are
  coalesced per key while one of the same key is still pending: the pending one is replaced
  by ``pending.merge(newer)`` (latest wins by default; token text is concatenated), which
  takes the newer one's place in the order. A subscriber that keeps up sees every event.

A subscription is either pulled (``sub.get(timeout)``, ``sub.drain()``) or, given a callback,
served by its own thread, which the subscription owns and joins on close (and the bus joins
every one on :meth:`EventBus.close`); a callback that raises is logged and counted, and
delivery carries on. A subscriber can ask for a :class:`Snapshot` when it subscribes
(``snapshot=True``) or at any time (:meth:`Subscription.resync`); the core registers what a
snapshot holds with :meth:`EventBus.set_snapshot_provider` (the manager's ``status()``).

    bus = EventBus()
    sub = bus.subscribe(kinds=(TelemetrySample,))
    bus.publish(TelemetrySample(sample=...))
    event = sub.get(timeout=1.0)
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from orin_console.core.telemetry.base import Sample

log = logging.getLogger(__name__)

DEFAULT_MAXSIZE: Final = 10_000
"""Pending events a subscription holds before it overflows (a few MB at most)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event. ``ts`` is the wall-clock time (``time.time()``) it was made.

    An event type says how it is delivered to a subscriber that falls behind:
    :meth:`coalesce_key` (None: a state event, never dropped) and :meth:`merge`.
    """

    ts: float = field(default_factory=time.time, kw_only=True)

    def coalesce_key(self) -> Hashable | None:
        """None for a state event; for a high-rate event, the key under which a pending
        event of the same type is merged with this one (the type is added by the bus)."""
        return None

    def merge(self, newer: Event) -> Event:
        """The one event that replaces a pending ``self`` and a ``newer`` one of the same
        type and key. Latest wins unless a type says otherwise."""
        return newer


@dataclass(frozen=True, slots=True)
class TelemetrySample(Event):
    """A new telemetry sample (gauges, sparklines). High-rate: latest wins."""

    sample: Sample

    def coalesce_key(self) -> Hashable | None:
        """One key for every sample: a slow subscriber gets the newest."""
        return ()


@dataclass(frozen=True, slots=True)
class TelemetrySourceChanged(Event):
    """The sampler switched telemetry source: a fallback (with the fix) or a recovery."""

    previous: str | None
    current: str | None
    reason: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot(Event):
    """The whole state, for a subscriber to resynchronise from. Never published on the bus:
    it is delivered to the one subscription that asked for it (whatever its ``kinds``), or
    that overflowed.

    Attributes:
        status: what the bus's snapshot provider returned (the manager's ``SystemStatus``);
            None when no provider is registered or it failed (then ``error`` says why).
        reason: ``"subscribed"`` (asked for on subscribe), ``"requested"``
            (:meth:`Subscription.resync`) or ``"overflowed"`` (pending events were discarded).
        dropped: how many pending events were discarded before this snapshot.
        error: why ``status`` is None, when it is.
    """

    status: object | None
    reason: str
    dropped: int = 0
    error: str | None = None


Callback = Callable[[Event], None]
SnapshotProvider = Callable[[], object]


class SnapshotUnavailable(RuntimeError):
    """A snapshot was asked for on a bus that has no snapshot provider."""


_OVERFLOW: Final = object()
"""Queue marker: the subscription overflowed; a snapshot is made when the consumer reaches it."""


class Subscription:
    """One subscriber's queue. Obtain it from :meth:`EventBus.subscribe`.

    Attributes:
        coalesced: high-rate events merged into a pending one of the same key.
        dropped: pending events discarded when the subscription overflowed.
        overflows: how many times it overflowed.
        failures: callback invocations that raised (callback subscriptions only).
    """

    def __init__(self, bus: EventBus, kinds: tuple[type[Event], ...], maxsize: int,
                 on_ready: Callable[[], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1 (got {maxsize}); leave it out for "
                             f"the default of {DEFAULT_MAXSIZE}")
        self.kinds = kinds
        self.maxsize = maxsize
        self.coalesced = 0
        self.dropped = 0
        self.overflows = 0
        self.failures = 0
        self._bus = bus
        self._on_ready = on_ready
        # seq -> (coalesce key or None, event or the overflow marker); oldest first
        self._queue: OrderedDict[int, tuple[Hashable | None, object]] = OrderedDict()
        self._pending: dict[Hashable, int] = {}  # coalesce key -> seq of its pending event
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._overflowed = False
        self._lost = 0  # events discarded by the overflow not yet reported in a snapshot
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        """Whether the subscription was closed (it receives nothing more)."""
        return self._closed

    @property
    def overflowed(self) -> bool:
        """True from an overflow until its resynchronising :class:`Snapshot` is taken."""
        return self._overflowed

    @property
    def pending(self) -> int:
        """Events waiting to be taken."""
        return len(self._queue)

    # -- the publisher's side ---------------------------------------------------------------

    def _offer(self, event: Event, key: Hashable | None) -> None:
        with self._cond:
            if self._closed:
                return
            was_empty = not self._queue
            if key is not None:
                seq = self._pending.get(key)
                if seq is not None:  # the same key is still pending: merge, take the newer place
                    _, older = self._queue.pop(seq)
                    assert isinstance(older, Event)
                    event = older.merge(event)
                    self.coalesced += 1
            if len(self._queue) >= self.maxsize:
                self._overflow()
            seq = next(self._seq)
            self._queue[seq] = (key, event)
            if key is not None:
                self._pending[key] = seq
            self._cond.notify()
        if was_empty:
            self._ready()

    def _overflow(self) -> None:
        """Discard every pending event (the lock is held) and queue the resync marker."""
        lost = sum(1 for _, item in self._queue.values() if item is not _OVERFLOW)
        self._queue.clear()
        self._pending.clear()
        self.dropped += lost
        self._lost += lost
        self.overflows += 1
        self._overflowed = True
        self._queue[next(self._seq)] = (None, _OVERFLOW)
        log.warning("event subscriber for %s fell %d events behind: it will resynchronise from "
                    "a snapshot", ", ".join(k.__name__ for k in self.kinds), self.maxsize)

    def _ready(self) -> None:
        if self._on_ready is None:
            return
        try:
            self._on_ready()
        except Exception:  # a subscriber's hook must not fail the publisher
            log.exception("event subscriber's wake-up hook failed")

    def _put_first(self, snapshot: Snapshot) -> None:
        with self._cond:
            seq = next(self._seq)
            self._queue[seq] = (None, snapshot)
            self._queue.move_to_end(seq, last=False)
            self._cond.notify()
        self._ready()

    # -- the subscriber's side ---------------------------------------------------------------

    def _take(self) -> object | None:
        """The oldest pending item, the lock held; None when empty."""
        if not self._queue:
            return None
        _, (key, item) = self._queue.popitem(last=False)
        if key is not None:
            del self._pending[key]
        return item

    def _resolve(self, item: object) -> Event:
        """An overflow marker becomes its snapshot (made now, outside the lock)."""
        if item is not _OVERFLOW:
            assert isinstance(item, Event)
            return item
        with self._cond:
            lost, self._lost = self._lost, 0
            self._overflowed = False
        return self._bus._snapshot("overflowed", lost, strict=False)

    def get(self, timeout: float | None = None) -> Event | None:
        """The oldest pending event; ``None`` on timeout or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue or self._closed, timeout):
                return None
            item = self._take()
        return None if item is None else self._resolve(item)

    def get_nowait(self) -> Event | None:
        """The oldest pending event, or None at once (an overflow's snapshot is made here)."""
        item = self._take_nowait()
        return None if item is None else self._resolve(item)

    def _take_nowait(self) -> object | None:
        """The oldest pending item unresolved: an event, or the overflow marker (the asyncio
        adapter makes that snapshot in a worker thread, off the event loop)."""
        with self._cond:
            return self._take()

    @staticmethod
    def _needs_snapshot(item: object) -> bool:
        return item is _OVERFLOW

    def drain(self) -> list[Event]:
        """Every pending event, oldest first, without waiting."""
        with self._cond:
            items = [item for _, item in self._queue.values()]
            self._queue.clear()
            self._pending.clear()
        return [self._resolve(item) for item in items]

    def resync(self) -> None:
        """Queue a :class:`Snapshot` (``reason="requested"``) of the state now, after the
        events already pending (they are older than it). Call it from the subscriber's side.

        Raises:
            SnapshotUnavailable: no snapshot provider is registered on the bus.
            Exception: whatever the provider raised.
        """
        snapshot = self._bus._snapshot("requested", 0, strict=True)
        with self._cond:
            if self._closed:
                return
            was_empty = not self._queue
            self._queue[next(self._seq)] = (None, snapshot)
            self._cond.notify()
        if was_empty:
            self._ready()

    def close(self) -> None:
        """Stop receiving; a callback thread finishes the event in hand and is joined."""
        self._bus.unsubscribe(self)

    def _shutdown(self, timeout: float) -> bool:
        """Close, wake every waiter, join the callback thread; whether it ended in time."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._pending.clear()
            self._cond.notify_all()
        self._ready()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("event subscriber thread %s is still in its callback %.1f s after close",
                        thread.name, timeout)
            return False
        return True

    def _serve(self, callback: Callback) -> None:
        while True:
            event = self.get()
            if event is None:
                return
            try:
                callback(event)
            except Exception:  # a subscriber's bug must not stop delivery
                self.failures += 1
                log.exception("event subscriber %r failed on %s", callback, type(event).__name__)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Thread-safe publish/subscribe for :class:`Event` objects; it owns every callback
    thread it starts and joins them on :meth:`close`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()
        self._provider: SnapshotProvider | None = None

    def set_snapshot_provider(self, provider: SnapshotProvider | None) -> None:
        """Register what a :class:`Snapshot` holds (``create_core`` registers the manager's
        ``status``). It is called on the subscriber's thread, never on a publisher's."""
        self._provider = provider

    def _snapshot(self, reason: str, dropped: int, *, strict: bool) -> Snapshot:
        provider = self._provider
        if provider is None:
            if strict:
                raise SnapshotUnavailable(
                    "no snapshot provider is registered on this event bus: build the core with "
                    "create_core (it registers the manager's status) or call "
                    "bus.set_snapshot_provider(...)")
            return Snapshot(status=None, reason=reason, dropped=dropped,
                            error="no snapshot provider is registered on the event bus")
        if strict:
            return Snapshot(status=provider(), reason=reason, dropped=dropped)
        try:
            return Snapshot(status=provider(), reason=reason, dropped=dropped)
        except Exception as exc:  # reported in the snapshot, delivery goes on
            log.exception("the event bus's snapshot provider failed")
            return Snapshot(status=None, reason=reason, dropped=dropped,
                            error=f"the snapshot provider failed: {exc}")

    def subscribe(
        self,
        callback: Callback | None = None,
        *,
        kinds: Iterable[type[Event]] = (Event,),
        maxsize: int = DEFAULT_MAXSIZE,
        name: str | None = None,
        snapshot: bool = False,
        on_ready: Callable[[], None] | None = None,
    ) -> Subscription:
        """Receive events that are instances of ``kinds``.

        Args:
            callback: called with each event on the subscription's own thread; leave it out
                to pull events with :meth:`Subscription.get`.
            kinds: event classes of interest (subclasses included).
            maxsize: pending events held before the subscription overflows and resynchronises
                from a snapshot (high-rate events take one place per key).
            name: the callback thread's name (for debugging).
            snapshot: deliver a :class:`Snapshot` (``reason="subscribed"``) first.
            on_ready: called (on the publisher's thread, so it must not block) when an event
                arrives in an empty queue, and on close; the asyncio adapter wakes its loop
                with it.

        Raises:
            SnapshotUnavailable: ``snapshot=True`` and no snapshot provider is registered.
        """
        sub = Subscription(self, tuple(kinds), maxsize, on_ready)
        with self._lock:
            self._subs = (*self._subs, sub)
        if snapshot:  # after registering: no change can fall between the snapshot and the events
            try:
                sub._put_first(self._snapshot("subscribed", 0, strict=True))
            except BaseException:
                self.unsubscribe(sub)
                raise
        if callback is not None:
            sub._thread = threading.Thread(
                target=sub._serve, args=(callback,), name=name or "event-subscriber", daemon=True
            )
            sub._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription, timeout: float = 1.0) -> bool:
        """Remove ``sub`` (idempotent) and join its callback thread (up to ``timeout`` s).

        Returns:
            Whether the callback thread has ended (True when there is none).
        """
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
        return sub._shutdown(timeout)

    def close(self, timeout: float = 2.0) -> bool:
        """Close every subscription and join every callback thread; whether all ended."""
        with self._lock:
            subs, self._subs = self._subs, ()
        return all([sub._shutdown(timeout) for sub in subs])

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every interested subscriber. Never blocks on a subscriber."""
        subs = self._subs  # an immutable snapshot: no lock held while offering
        if not subs:
            return
        key = event.coalesce_key()
        if key is not None:
            key = (type(event), key)
        for sub in subs:
            if isinstance(event, sub.kinds):
                sub._offer(event, key)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subs)

    def wants(self, kind: type[Event]) -> bool:
        """Whether any open subscription receives events of ``kind`` (so a publisher can skip
        building high-rate events nobody reads)."""
        return any(issubclass(kind, sub.kinds) for sub in self._subs)
