"""An attached console: :class:`RemoteBackend`, the console over a running server's API.

The SDK (:class:`~orin_console.client.OrinClient`, async httpx) runs on an asyncio loop of its
own, in a thread, so the UI loop never waits on the network; the console's workers call in with
:meth:`RemoteBackend.call`.

- **Events**: ``GET /events?snapshot=1``. The ``Snapshot`` that comes first draws the whole
  state at once; then each event is rebuilt as the core's own
  (:mod:`~orin_console.tui.backend.convert`) and fed to the same
  :class:`~orin_console.tui.bridge.EventRelay` the in-process console uses, which logs what an
  operator must see and posts the status at most five times a second. The status is kept here
  from the events (models from ``ModelStateChanged``, tiers from ``TierUsageChanged``, memory
  from the snapshot and the telemetry samples); the catalog and the usage figures from ``GET
  /models/list``, again after a ``CatalogChanged``, a finished generation or a pin.
- **Reconnect**: when the stream ends or breaks (the server stopped, restarted, was killed), or
  stays silent past :data:`SILENCE_S` while the server no longer answers, the console shows
  "reconnecting…" (a :class:`~orin_console.tui.messages.BackendState`) and retries with backoff
  (0.25 s doubling to :data:`MAX_BACKOFF_S`); the new snapshot redraws everything.
- **Operations** go through the SDK (``client.models.load/move/unload/pin/plan``), waiting on
  the server's operation; **answers** through :mod:`~orin_console.tui.backend.remote_chat`.

Stopping closes the client only: the server, its core and its models go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orin_console.client import OrinClient
from orin_console.client.errors import OrinClientError
from orin_console.core.catalog.store import Catalog
from orin_console.core.events.kinds import (
    CatalogChanged,
    GenerationFinished,
    GenerationStarted,
    ModelStateChanged,
    Snapshot,
    TelemetrySample,
    TierUsageChanged,
)
from orin_console.core.manager.types import ModelStatus, SystemStatus, TierUsage
from orin_console.core.text import sanitize
from orin_console.tui.backend import ChatEngine, convert
from orin_console.tui.backend.remote_chat import RemoteChat, core_error
from orin_console.tui.backend.remote_extra import RemoteCatalogOps
from orin_console.tui.bridge import EventRelay
from orin_console.tui.messages import BackendState, LogLine

if TYPE_CHECKING:
    from textual.app import App

    from orin_console.core.placement.usage import UsageRecord
    from orin_console.tui.widgets.catalog import FileFacts

__all__ = ["MAX_BACKOFF_S", "SILENCE_S", "RemoteBackend"]

T = TypeVar("T")
MAX_BACKOFF_S = 2.0
"""The longest wait between two reconnection attempts."""
SILENCE_S = 20.0
"""No event for this long: ask ``/system/health`` whether the server is still there."""
_REMOTE_CATALOG = Path("(server)")


class _Relay(EventRelay):
    """The shared relay, reading the status this back end keeps."""

    def __init__(self, backend: RemoteBackend, app: App[Any]) -> None:
        super().__init__(app)
        self._backend = backend
        self._status_dirty = False  # nothing to draw before the server's snapshot
        # their effect (a pin, the catalog, usage figures) comes with the /models/list refresh
        self.deferred = (CatalogChanged, GenerationFinished)

    def read_status(self) -> tuple[SystemStatus, Catalog | None, Mapping[str, UsageRecord]]:
        return self._backend.status_now()


class RemoteBackend(RemoteCatalogOps):
    """The console attached to the server at ``url`` (see the module docstring).

    Args:
        url: the server's base URL (``http://127.0.0.1:8000``).
        token: its bearer token (None: none, or ``$ORIN_TOKEN`` as the SDK reads it).
        min_interval_s: the least time between two status messages.
    """

    attached = True

    def __init__(self, url: str, *, token: str | None = None, min_interval_s: float = 0.2) -> None:
        self.url = url.rstrip("/")
        self.label = f"attached to {self.url}"
        self._token = token
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._models: dict[str, ModelStatus] = {}
        self._tiers: tuple[TierUsage, ...] = ()
        self._memory = (0, 0, 0)
        self._catalog: Catalog | None = None
        self._usage: dict[str, UsageRecord] = {}
        self._facts: dict[str, FileFacts] = {}
        self._telemetry_seen = False
        self._relay: _Relay | None = None
        self._app: App[Any] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="orin-attach", daemon=True)
        self._thread.start()
        self.client: OrinClient = self.call(self._make_client())
        self._events_task: Future[None] | None = None
        self._refresh_lock: asyncio.Lock | None = None
        self._refresh_task: asyncio.Future[None] | None = None
        self._refresh_again = False
        self.connected = False
        self.reconnects = 0
        """How many times the event stream was lost and taken up again."""
        self._own_requests: set[str] = set()
        self.chat: ChatEngine = RemoteChat(self.submit, self.client, self._catalog_ids, self._tier_of,
                                           self._own_requests)

    async def _make_client(self) -> OrinClient:
        return OrinClient(self.url, token=self._token)

    # -- the loop -------------------------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the back end's loop; its future (thread-safe)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the back end's loop and wait for it (from a worker thread, never the
        UI loop); the SDK's errors come back as the core's (:func:`core_error`)."""
        try:
            return self.submit(coro).result(timeout)
        except OrinClientError as exc:
            raise core_error(exc) from exc

    def check(self, timeout: float = 10.0) -> str:
        """Ask the server who it is before the console opens (``/system/health``, then the token
        with ``/system/status``); its version. Raises the error in the operator's words."""
        async def ask() -> str:
            health = await self.client.system.health()
            await self.client.system.status()
            return health.version

        return self.call(ask(), timeout)

    # -- life cycle -----------------------------------------------------------------------

    @property
    def telemetry(self) -> bool:
        return self._telemetry_seen

    @property
    def add_folder(self) -> Path:
        return Path.cwd()

    def startup_lines(self) -> list[tuple[str, str]]:
        return [("info", "attached: quitting leaves the server and its models running; ? for help")]

    def start(self, app: App[Any]) -> None:
        self._app = app
        self._relay = _Relay(self, app)
        self._relay.min_interval_s = self._min_interval_s
        self._relay.own_requests = self._own_requests
        self._relay.start_flusher()
        self._events_task = self.submit(self._follow_events())

    def stop(self) -> None:
        """Stop following the server and close the client (the server goes on)."""
        if self._events_task is not None:
            self._events_task.cancel()
        if self._relay is not None:
            self._relay.stop_flusher()
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self.submit(self._wind_down()).result(2)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(2)

    async def _wind_down(self) -> None:
        """End every task still on the loop (a catalog refresh, a stream's reader), then close
        the client: a task left pending when the loop stops is destroyed with a warning."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.aclose()

    # -- the status kept from the events -------------------------------------------------

    def status_now(self) -> tuple[SystemStatus, Catalog | None, Mapping[str, UsageRecord]]:
        with self._lock:
            order = [e.id for e in self._catalog] if self._catalog is not None else []
            models = [self._models[m] for m in order if m in self._models]
            models += [s for m, s in self._models.items() if m not in order]
            status = SystemStatus(tuple(models), self._tiers, *self._memory)
            return status, self._catalog, dict(self._usage)

    def _catalog_ids(self) -> Sequence[str]:
        catalog = self._catalog
        return [e.id for e in catalog] if catalog is not None else list(self._models)

    def _tier_of(self, model_id: str) -> str | None:
        catalog = self._catalog
        if catalog is not None and model_id in catalog:
            return catalog.get(model_id).tier.value
        return None

    def _apply(self, event: Any) -> None:
        """Keep the status from one event (the loop's thread)."""
        with self._lock:
            if isinstance(event, Snapshot) and isinstance(event.status, SystemStatus):
                status = event.status
                self._models = {m.model_id: m for m in status.models}
                self._tiers = status.tiers
                self._memory = (status.mem_available, status.swap_free, status.reserve)
            elif isinstance(event, ModelStateChanged):
                self._models[event.model_id] = event.status
            elif isinstance(event, TierUsageChanged):
                self._tiers = event.tiers
            elif isinstance(event, TelemetrySample):
                self._telemetry_seen = True
                s = event.sample
                available = s.mem_available if s.mem_available is not None else self._memory[0]
                swap_free = (s.swap_total - s.swap_used if s.swap_total is not None and s.swap_used is not None
                             else self._memory[1])
                self._memory = (available, swap_free, self._memory[2])

    async def _refresh_catalog(self) -> None:
        """The catalog, usage figures, file facts and the models' volatile fields from ``GET
        /models/list`` (one fetch at a time)."""
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            models = await self.client.models.list()
        raw = [m.to_dict() for m in models]
        with self._lock:
            self._catalog = convert.catalog(raw, _REMOTE_CATALOG)
            self._usage = convert.usage(raw)
            self._facts = convert.file_facts(raw)
            listed = {info.id for info in models}
            for gone in [m for m in self._models if m not in listed]:  # removed from the catalog
                del self._models[gone]
            for info in models:
                kept = self._models.get(info.id)
                if kept is None:  # added to the catalog: no state event yet
                    self._models[info.id] = convert.model_status(info.raw)
                elif (kept.state.value, kept.tier) == (info.state, info.tier):
                    # what changes without a state event (busy ends after a move's runner swap)
                    self._models[info.id] = replace(kept, busy=info.busy, queued=info.queued, pin=info.pin,
                                                    measured_bytes=info.measured_bytes or kept.measured_bytes)
        if self._relay is not None:
            self._relay.mark_dirty()

    def _post(self, message: BackendState) -> None:
        if self._app is not None:
            self._app.post_message(message)

    def _post_log(self, level: str, text: str) -> None:
        if self._app is not None:
            self._app.post_message(LogLine(level, text))

    # -- following the server -------------------------------------------------------------

    async def _follow_events(self) -> None:
        delay, lost_at, attempt = 0.25, 0.0, 0
        while True:
            error = ""
            try:
                await self._read_events(lost_at)
                error = "the event stream ended"
            except asyncio.CancelledError:
                raise
            except (OrinClientError, OSError) as exc:
                error = sanitize(str(exc))
            except Exception as exc:  # noqa: BLE001 - the console must keep trying, and say why
                error = f"{type(exc).__name__}: {sanitize(str(exc))}"
            if self.connected or not lost_at:
                lost_at, attempt = time.time(), 0
                delay = 0.25
            first = self.connected or attempt == 0
            self.connected = False
            attempt += 1
            since = time.strftime("%H:%M:%S", time.localtime(lost_at))
            if first:
                self._post_log("warning", f"lost {self.url} at {since} ({error[:200]}): reconnecting; "
                                          "the panes keep the state as it was then")
            self._post(BackendState(False, f"⚠ reconnecting to {self.url}… (lost at {since}, attempt "
                                           f"{attempt}): the panes show the state as it was then"))
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _read_events(self, lost_at: float) -> None:
        last = [time.monotonic()]
        watchdog = asyncio.ensure_future(self._watch_silence(last, asyncio.current_task()))
        try:
            async for server_event in self.client.events(snapshot=True):
                last[0] = time.monotonic()
                event = convert.event(server_event.kind, server_event.raw)
                if event is None:
                    continue
                self._apply(event)
                if isinstance(event, Snapshot):
                    await self._on_snapshot(event, server_event.raw, lost_at)
                elif isinstance(event, CatalogChanged):  # pins and tasks come from the catalog: fetch it
                    await self._refresh_quietly()  # before the relay draws, or the redraw waits its 0.2 s
                elif isinstance(event, GenerationStarted | GenerationFinished | ModelStateChanged):
                    self._schedule_refresh()
                if self._relay is not None:
                    self._relay.on_event(event)
        finally:
            watchdog.cancel()

    async def _on_snapshot(self, event: Snapshot, raw: Mapping[str, Any], lost_at: float) -> None:
        await self._refresh_catalog()
        if self._relay is not None:
            status = event.status
            self._relay.forget_models(status.models if isinstance(status, SystemStatus) else ())
            self._telemetry_from(raw, self._relay)
        was_lost = not self.connected and lost_at > 0
        if was_lost:
            self.reconnects += 1
        self.connected = True
        text = f"{self.label}: back after {time.time() - lost_at:.1f} s, state redrawn" if was_lost \
            else self.label
        self._post(BackendState(True, text, log=was_lost))

    def _schedule_refresh(self) -> None:
        """Fetch ``/models/list`` again after this event (the loop's thread): one fetch in flight,
        and one more after it when events came meanwhile, so the last fetch follows the last event."""
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.ensure_future(self._refresh_loop())
        else:
            self._refresh_again = True

    async def _refresh_loop(self) -> None:
        while True:
            self._refresh_again = False
            await self._refresh_quietly()
            if not self._refresh_again:
                return
            await asyncio.sleep(self._min_interval_s)  # under steady traffic: at most 5 fetches a second

    def _telemetry_from(self, raw: Mapping[str, Any], relay: EventRelay) -> None:
        """A snapshot's telemetry (a newer server's): the recent samples, so the gauges and their
        sparklines draw at once, and the source's fallback note with its fix."""
        history = raw.get("telemetry_history")
        samples = [convert.sample(s) for s in history if isinstance(s, Mapping)] if isinstance(history, list) else []
        if not samples and isinstance(raw.get("telemetry"), Mapping):
            samples = [convert.sample(raw["telemetry"])]
        for sample in samples:
            self._apply(TelemetrySample(sample))
            relay.on_event(TelemetrySample(sample))
        source = raw.get("telemetry_source")
        if isinstance(source, Mapping):
            note = source.get("note") if source.get("fallback") is True else ""
            relay.set_source_note(sanitize(note) if isinstance(note, str) else "")

    async def _refresh_quietly(self) -> None:
        with contextlib.suppress(Exception):  # the next event or snapshot tries again
            await self._refresh_catalog()

    async def _watch_silence(self, last: list[float], reader: asyncio.Task[Any] | None) -> None:
        """A server that vanished without closing the connection (a cable, a frozen machine)
        sends nothing: after :data:`SILENCE_S` of silence, a health check decides."""
        while True:
            await asyncio.sleep(SILENCE_S / 4)
            if time.monotonic() - last[0] < SILENCE_S:
                continue
            try:
                await asyncio.wait_for(self.client.system.health(), 5.0)
                last[0] = time.monotonic()
            except Exception:  # noqa: BLE001 - any failure means the stream is dead too
                if reader is not None:
                    reader.cancel()
                return
