"""``GET /events``: the core's events as Server-Sent Events, and what every stream shares.

Each frame is ``event: <EventClassName>`` with ``data:`` a JSON object of its fields (see
:mod:`orin_console.api.serialize`). ``?kinds=ModelStateChanged,LoadProgress`` filters by
class name; ``?snapshot=1`` sends a ``Snapshot`` of the whole state first (the system status plus
:func:`~orin_console.api.state.snapshot_extras`: catalog, usage, budgets, telemetry and its
source, the latest plan), as does an overflow. Delivery follows
the bus's rules: state events in order and never dropped, tokens merged per request,
telemetry and progress latest-wins for a slow client. A comment line (``: ping``) every
15 s keeps proxies from closing an idle stream.

Shutdown: the server calls :func:`begin_shutdown` when it is told to stop (SIGTERM/SIGINT);
every open stream (events and generations) then ends with a last ``event: error`` whose data
is ``{"error": {"type": "ShuttingDown", ...}}``, so uvicorn's graceful shutdown is not held
open by streams that would never end by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.sse import EventSourceResponse

from orin_console.api.deps import CoreDep, app_state
from orin_console.api.errors import error_body
from orin_console.api.serialize import event_to_dict
from orin_console.api.state import snapshot_extras
from orin_console.core.events import kinds as event_kinds
from orin_console.core.events.aio import aevents
from orin_console.core.events.bus import Event, Snapshot

router = APIRouter(tags=["events"])

PING_INTERVAL_S = 15.0
SHUTDOWN_MESSAGE = "the server is shutting down; this stream ends here (retry once it is back)"

EVENT_KINDS: dict[str, type[Event]] = {
    name: getattr(event_kinds, name) for name in event_kinds.__all__
    if isinstance(getattr(event_kinds, name), type) and name not in ("Event", "Snapshot")
}
"""The class names ``?kinds=`` accepts (``Snapshot`` comes with ``?snapshot=1``)."""

_NAMES = "(?:" + "|".join(sorted(EVENT_KINDS)) + ")"
KINDS_PATTERN = rf"^(?![\s\S])|^[\s,]*{_NAMES}(?:\s*,[\s,]*{_NAMES})*[\s,]*$"
"""What :func:`_parse_kinds` takes, as ``/openapi.json`` documents it: nothing (every kind), or
known names separated by commas (blanks and empty items ignored). Documented, not enforced by
FastAPI, so a refusal names the unknown names rather than quoting this pattern."""


# -- shared by every stream ---------------------------------------------------------------------


class Shutdown:
    """A one-way "the server is stopping" flag streams watch (thread-safe).

    ``on_shutdown(callback)`` registers a callback (run at once if already shutting down);
    the returned function unregisters it. :meth:`begin` runs every callback once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0

    @property
    def is_set(self) -> bool:
        return self._set

    def on_shutdown(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            if not self._set:
                key = self._next
                self._next += 1
                self._callbacks[key] = callback

                def remove() -> None:
                    with self._lock:
                        self._callbacks.pop(key, None)

                return remove
        callback()
        return lambda: None

    def begin(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            with contextlib.suppress(Exception):
                callback()

    def waiter(self) -> tuple[asyncio.Event, Callable[[], None]]:
        """An asyncio event on the running loop set at shutdown, and its unregister function."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(event.set)

        return event, self.on_shutdown(wake)


def shutdown_of(app: FastAPI) -> Shutdown:
    """The app's shutdown flag (made on first use)."""
    return app_state(app, "orin_shutdown", Shutdown)


def begin_shutdown(app: FastAPI) -> None:
    """End every open stream of ``app`` with a final ``ShuttingDown`` error event (thread-safe;
    ``serve`` calls it on SIGTERM/SIGINT, before uvicorn waits for connections to close)."""
    shutdown_of(app).begin()


def sse(event: str, data: Any) -> bytes:
    """One SSE frame: ``event: <name>`` and one ``data:`` line of compact JSON (JSON escapes
    every newline, so the data is always one line)."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return f"event: {event}\ndata: {payload}\n\n".encode()


def shutting_down_frame() -> bytes:
    return sse("error", error_body("ShuttingDown", SHUTDOWN_MESSAGE))


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# -- GET /events --------------------------------------------------------------------------------


def _parse_kinds(kinds: str | None) -> tuple[type[Event], ...]:
    from orin_console.core.engine.types import ParameterError

    if not kinds:
        return (Event,)
    names = [name.strip() for name in kinds.split(",") if name.strip()]
    unknown = [name for name in names if name not in EVENT_KINDS]
    if unknown or not names:
        shown = ", ".join(repr(name[:40]) for name in unknown[:3]) or "nothing"
        raise ParameterError("kinds", shown, "comma-separated event names: " + ", ".join(sorted(EVENT_KINDS)))
    return tuple(EVENT_KINDS[name] for name in dict.fromkeys(names))


async def _event_frames(request: Request, core: Any, kinds: tuple[type[Event], ...],
                        snapshot: bool) -> AsyncIterator[bytes]:
    shutdown = shutdown_of(request.app)
    stop, unregister = shutdown.waiter()
    stopping: asyncio.Task[bool] | None = None
    pending: asyncio.Task[Event] | None = None
    try:
        async with aevents(core.bus, kinds=kinds, snapshot=snapshot) as events:
            iterator = events.__aiter__()
            stopping = asyncio.ensure_future(stop.wait())
            yield b": connected\n\n"
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait({pending, stopping}, timeout=PING_INTERVAL_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    yield shutting_down_frame()
                    return
                if pending in done:
                    finished: asyncio.Task[Event] = pending
                    pending = None
                    try:
                        event = finished.result()
                    except StopAsyncIteration:
                        return
                    name, data = event_to_dict(event)
                    if isinstance(event, Snapshot):  # what a late console needs to draw at once
                        data.update(await asyncio.to_thread(snapshot_extras, core))
                    yield sse(name, data)
                else:
                    yield b": ping\n\n"
    finally:
        unregister()
        if pending is not None and not pending.done():
            pending.cancel()
        if stopping is not None and not stopping.done():
            stopping.cancel()


@router.get(
    "/events",
    summary="The core's events as Server-Sent Events",
    responses={200: {"description": "Server-Sent Events", "content": {"text/event-stream": {"example":
        'event: ModelStateChanged\ndata: {"model_id":"qwen-0.5b","status":{"state":"ready",...},"ts":1767225600.1}\n\n'
        'event: LoadProgress\ndata: {"model_id":"qwen-0.5b","tier":"ram","fraction":0.5,"ts":1767225600.2}\n\n'}}},
               422: {"description": "An unknown name in `kinds`"}},
)
async def events(
    request: Request,
    core: CoreDep,
    kinds: Annotated[str | None, Query(max_length=1000, json_schema_extra={"pattern": KINDS_PATTERN}, description=(
        "Comma-separated event class names to receive (default: all), e.g. "
        "`ModelStateChanged,LoadProgress,TierUsageChanged`."), examples=["ModelStateChanged,LoadProgress"])] = None,
    snapshot: Annotated[bool, Query(description="Send a `Snapshot` of the whole state first.")] = False,
) -> EventSourceResponse:
    """Every event the core publishes: `ModelStateChanged`, `LoadProgress`, `TierUsageChanged`,
    `GenerationStarted`, `TokenGenerated`, `GenerationFinished`, `CatalogChanged`, `PlanChanged`,
    `ManagerError`, `TelemetrySample`, `TelemetrySourceChanged` (and `Snapshot`). `event:` is
    the class name; `data:` its fields as JSON. When the server shuts down the stream ends
    with `event: error` and `{"error": {"type": "ShuttingDown", ...}}`."""
    selected = _parse_kinds(kinds)
    return EventSourceResponse(_event_frames(request, core, selected, snapshot), headers=SSE_HEADERS)
