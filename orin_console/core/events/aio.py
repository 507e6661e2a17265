"""Events for asyncio front ends (the API): ``async for`` over a bus subscription.

Plain asyncio, no web framework. The subscription has no thread of its own: the publisher's
thread wakes the loop with ``loop.call_soon_threadsafe`` when an event lands in an empty
queue, and the loop takes events from the subscription's queue, so a slow consumer (a slow
HTTP client) gets the bus's delivery rules: state events in order and never dropped, tokens
merged per request, telemetry and progress latest-wins. Snapshots (which call the manager)
are made in a worker thread, never on the loop.

    async with aevents(core.bus, kinds=(ModelStateChanged, TokenGenerated), snapshot=True) as events:
        async for event in events:
            await send(event)

The subscription is closed when the iteration ends, when the task iterating is cancelled,
on ``aclose()`` / leaving the ``async with``, and when the stream is garbage-collected (so
``async for event in aevents(bus): ... break`` closes it too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from orin_console.core.events.bus import DEFAULT_MAXSIZE, Event, EventBus, Subscription

__all__ = ["EventStream", "aevents"]


class EventStream:
    """An asynchronous iterator of a bus's events; see :func:`aevents`.

    Args:
        bus: the event bus.
        kinds: event classes of interest (subclasses included).
        snapshot: deliver a :class:`~orin_console.core.events.bus.Snapshot` first (the bus
            must have a snapshot provider).
        maxsize: pending events before the subscription overflows and resynchronises.
    """

    def __init__(self, bus: EventBus, *, kinds: Iterable[type[Event]] = (Event,),
                 snapshot: bool = False, maxsize: int = DEFAULT_MAXSIZE) -> None:
        self._bus = bus
        self._kinds = tuple(kinds)
        self._snapshot = snapshot
        self._maxsize = maxsize
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._sub: Subscription | None = None
        self._closed = False

    @property
    def subscription(self) -> Subscription | None:
        """The bus subscription (None until the first event is awaited or after close)."""
        return self._sub

    async def _open(self) -> Subscription:
        if self._sub is not None:
            return self._sub
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def notify() -> None:  # on a publisher's thread: must not block
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to wake
                loop.call_soon_threadsafe(wake.set)

        self._loop, self._wake = loop, wake

        def subscribe() -> Subscription:
            return self._bus.subscribe(kinds=self._kinds, maxsize=self._maxsize, on_ready=notify,
                                       snapshot=self._snapshot)

        # a snapshot calls the manager: off the loop
        sub = await asyncio.to_thread(subscribe) if self._snapshot else subscribe()
        self._sub = sub
        return sub

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        try:
            sub = await self._open()
            assert self._wake is not None
            while True:
                self._wake.clear()
                item = sub._take_nowait()
                if item is not None:
                    if sub._needs_snapshot(item):
                        return await asyncio.to_thread(sub._resolve, item)
                    return sub._resolve(item)
                if sub.closed:
                    break
                await self._wake.wait()
        except BaseException:  # cancelled (client gone) or the snapshot failed
            self.close()
            raise
        self.close()
        raise StopAsyncIteration

    async def resync(self) -> None:
        """Ask for a snapshot now (made in a worker thread); it arrives after the events
        already pending.

        Raises:
            SnapshotUnavailable: the bus has no snapshot provider.
        """
        sub = await self._open()
        await asyncio.to_thread(sub.resync)

    def close(self) -> None:
        """Close the subscription (idempotent, from the loop or any thread)."""
        self._closed = True
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()

    async def aclose(self) -> None:
        """Close the subscription."""
        self.close()

    async def __aenter__(self) -> EventStream:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        sub = getattr(self, "_sub", None)
        if sub is not None:
            sub.close()


def aevents(bus: EventBus, *, kinds: Iterable[type[Event]] = (Event,), snapshot: bool = False,
            maxsize: int = DEFAULT_MAXSIZE) -> EventStream:
    """``async for event in aevents(bus, kinds=(...))``: the bus's events on the running loop.

    Args:
        bus: the event bus.
        kinds: event classes of interest (subclasses included).
        snapshot: deliver a snapshot first (the bus must have a snapshot provider).
        maxsize: pending events before the subscription overflows and resynchronises.
    """
    return EventStream(bus, kinds=kinds, snapshot=snapshot, maxsize=maxsize)
