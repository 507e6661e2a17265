"""The one adapter between the core and the console: core bus events -> Textual messages.

The bridge subscribes to the core's bus (its callback runs on the subscription's own thread)
and posts :mod:`~orin_console.tui.messages` to the app with ``post_message``, which is
thread-safe. Nothing here touches a widget.

- **Coalesced state.** Model state, tier usage, load progress and catalog events only mark
  the status dirty; a flusher thread reads ``manager.status()`` (off the event loop: it asks
  the OS for free memory) and posts one :class:`StatusUpdated` at most every
  ``min_interval_s`` (0.2 s: five repaints a second however fast the core goes).
- **Coalesced telemetry.** The latest sample wins, posted on the same cadence.
- **Log lines** for what an operator must see: loads and their progress in quarters, state
  changes, failures with their reason, refused catalog edits, telemetry fallbacks and their
  fix, placement-plan changes, generations from other front ends (the API).

:class:`EventRelay` is the part both back ends share (events in, messages out, coalesced);
:class:`CoreBridge` feeds it from the core's bus and reads the status from the manager, the
remote back end (:mod:`orin_console.tui.backend.remote`) feeds it the server's events rebuilt as
core events and reads the status it keeps from them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from orin_console.core.events.kinds import (
    CatalogChanged,
    Event,
    GenerationFinished,
    GenerationStarted,
    LoadProgress,
    ManagerError,
    ModelStateChanged,
    PlanChanged,
    Snapshot,
    TelemetrySample,
    TelemetrySourceChanged,
    TierUsageChanged,
)
from orin_console.core.manager.types import ModelState, ModelStatus, SystemStatus
from orin_console.core.text import sanitize
from orin_console.core.units import format_size
from orin_console.tui.messages import LogLine, StatusUpdated, TelemetryUpdated

if TYPE_CHECKING:
    from textual.app import App

    from orin_console.core.catalog.store import Catalog
    from orin_console.core.events.bus import Subscription
    from orin_console.core.placement.usage import UsageRecord
    from orin_console.core.service import Core

_STATUS_EVENTS = (ModelStateChanged, TierUsageChanged, LoadProgress, CatalogChanged, Snapshot,
                  GenerationFinished)
_KINDS = (*_STATUS_EVENTS, TelemetrySample, ManagerError, TelemetrySourceChanged, PlanChanged,
          GenerationStarted)
"""What the bridge reads: not ``TokenGenerated`` (the chat pane reads its own stream), so the
manager does not build a token event per token for the console."""
_HISTORY = 120


def _clean(text: object) -> str:
    return sanitize(str(text))


def describe_state(status: ModelStatus, previous: ModelStatus | None) -> tuple[str, str] | None:
    """The log line for a model's new status (level, text), or None when nothing an operator
    cares about changed (a new measurement, a queue length)."""
    if previous is not None and (previous.state, previous.tier, previous.target_tier) == (
            status.state, status.tier, status.target_tier):
        return None
    mid = _clean(status.model_id)
    size = status.measured_bytes or status.predicted_bytes
    sized = f" ({format_size(size)})" if size else ""
    match status.state:
        case ModelState.LOADING:
            return "info", f"{mid}: loading into {status.target_tier or status.tier}{sized}"
        case ModelState.MOVING:
            return "info", f"{mid}: moving {status.tier} → {status.target_tier}"
        case ModelState.READY:
            secs = status.load_seconds
            took = ("" if secs is None else f", loaded in {secs:.1f} s" if secs >= 0.1
                    else f", loaded in {secs * 1000:.0f} ms")
            return "info", f"{mid}: ready in {status.tier}{sized}{took}"
        case ModelState.UNLOADING:
            return "info", f"{mid}: unloading from {status.tier}"
        case ModelState.UNLOADED:
            return None if previous is None else ("info", f"{mid}: unloaded (disk)")
        case ModelState.FAILED:
            return "error", f"{mid}: failed: {sanitize(status.error or 'no reason given')}"
    return None  # pragma: no cover - every state is matched above


class EventRelay:
    """Core events in, console messages out, coalesced (see the module docstring).

    Feed it with :meth:`on_event` from any one thread; :meth:`read_status` (a subclass's)
    gives the status a flush posts.

    Args:
        app: the Textual app receiving the messages.
        min_interval_s: the least time between two status (or telemetry) messages.
    """

    def __init__(self, app: App[Any], *, min_interval_s: float = 0.2) -> None:
        self.app = app
        self.min_interval_s = min_interval_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._status_dirty = True  # the first flush shows the status at start
        self._sample: Any = None
        self._source_note = ""
        self._history: list[Any] = []
        self._models: dict[str, ModelStatus] = {}
        self._progress_step: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self.own_requests: set[str] = set()
        """Request ids this console sent through the API (not logged as another front end's)."""
        self.deferred: tuple[type[Event], ...] = ()
        """Status events whose repaint the back end asks for itself (:meth:`mark_dirty`) once it
        has what they changed (an attached console fetches the catalog first): a repaint now
        would show the old state and hold the right one back by the minimum interval."""

    def read_status(self) -> tuple[SystemStatus, Catalog | None, Mapping[str, UsageRecord]]:
        """The status, catalog and usage to post (called on the flusher's thread)."""
        raise NotImplementedError  # pragma: no cover - each back end reads its own

    def start_flusher(self) -> None:
        """Start the flusher thread."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._flush_loop, name="orin-tui-bridge", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop_flusher(self) -> None:
        """Stop the flusher (safe to call twice)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def mark_dirty(self) -> None:
        """The status changed: post a new one at the next flush."""
        with self._lock:
            self._status_dirty = True
        self._wake.set()

    def set_source_note(self, note: str) -> None:
        """The telemetry source's note (a fallback and its fix; empty when none), as a snapshot says."""
        with self._lock:
            self._source_note = note
            self._sample = self._sample or (self._history[-1] if self._history else None)
        self._wake.set()

    def forget_models(self, statuses: Iterable[ModelStatus]) -> None:
        """Start over from ``statuses`` (a snapshot): the next state changes are logged against these."""
        self._models = {s.model_id: s for s in statuses}
        self._progress_step.clear()

    # -- the bus's thread ---------------------------------------------------------------------

    def _log(self, level: str, text: str, *, notify: bool = False) -> None:
        self.app.post_message(LogLine(level, text, notify=notify))

    def on_event(self, event: Event) -> None:
        """One core event (from the bus's thread, or the remote back end's)."""
        if isinstance(event, _STATUS_EVENTS) and not isinstance(event, self.deferred):
            with self._lock:
                self._status_dirty = True
            self._wake.set()
        if isinstance(event, TelemetrySample):
            with self._lock:
                self._sample = event.sample
                self._history.append(event.sample)
                del self._history[:-_HISTORY]
            self._wake.set()
        elif isinstance(event, ModelStateChanged):
            line = describe_state(event.status, self._models.get(event.model_id))
            self._models[event.model_id] = event.status
            if event.status.state != ModelState.LOADING and event.status.state != ModelState.MOVING:
                self._progress_step.pop(event.model_id, None)
            if line is not None:
                self._log(*line, notify=line[0] == "error")
        elif isinstance(event, LoadProgress):
            step = int(event.fraction * 4)  # log quarters, not every fraction
            if 0 < step < 4 and self._progress_step.get(event.model_id, 0) < step:
                self._progress_step[event.model_id] = step
                self._log("info", f"{_clean(event.model_id)}: {step * 25}% loaded into {_clean(event.tier)}")
        elif isinstance(event, ManagerError):
            who = f"{_clean(event.model_id)}: " if event.model_id else ""
            self._log("error", who + sanitize(event.message), notify=True)
        elif isinstance(event, TelemetrySourceChanged):
            self._on_source_changed(event)
        elif isinstance(event, PlanChanged):
            self._on_plan(event.plan)
        elif isinstance(event, CatalogChanged):
            self._log("info", f"catalog reloaded: {len(event.model_ids)} models")
        elif isinstance(event, GenerationStarted) and event.source != "tui" \
                and event.request_id not in self.own_requests:
            self._log("info", f"{_clean(event.source)} request {_clean(event.request_id)} → "
                              f"{_clean(event.model_id)}")
        elif isinstance(event, GenerationFinished):
            self._on_finished(event)

    def _on_source_changed(self, event: TelemetrySourceChanged) -> None:
        fix = f"; fix: {sanitize(event.fix)}" if event.fix else ""
        # at start, a source that could be fixed (jtop down on a Jetson) is a fallback too
        if (event.previous is None and not event.fix) or (event.current is not None and event.current != "psutil"
                                                          and event.previous == "psutil"):
            level = "info"
        else:
            level = "warning"
        text = (f"telemetry: {_clean(event.previous or 'none')} → {_clean(event.current or 'none')}: "
                f"{sanitize(event.reason)}{fix}")
        with self._lock:
            self._source_note = "" if level == "info" else f"{sanitize(event.reason)}{fix}"
        self._log(level, text, notify=level == "warning")

    def _on_plan(self, plan: object) -> None:
        moves = getattr(plan, "moves", ())
        if not moves:
            self._log("info", "placement plan: every model is where it belongs")
            return
        described = "; ".join(sanitize(m.describe()) for m in moves)
        self._log("info", f"placement plan changed ({len(moves)} moves, `o` to review): {described}")

    def _on_finished(self, event: GenerationFinished) -> None:
        mid = _clean(event.model_id)
        if event.error:
            self._log("error", f"{mid}: request {_clean(event.request_id)} failed: {sanitize(event.error)}")
        elif event.finish_reason == "cancelled":
            self._log("info", f"{mid}: request {_clean(event.request_id)} stopped after {event.tokens} tokens")

    # -- the flusher thread -------------------------------------------------------------------

    def _flush_loop(self) -> None:
        last = 0.0
        while not self._stopping.is_set():
            self._wake.wait()
            if self._stopping.is_set():
                return
            wait = last + self.min_interval_s - time.monotonic()
            if wait > 0 and self._stopping.wait(wait):
                return
            self._wake.clear()
            last = time.monotonic()
            self.flush()

    def flush(self) -> None:
        """Post what changed since the last flush (the flusher calls it; tests may too)."""
        with self._lock:
            status_dirty, self._status_dirty = self._status_dirty, False
            sample, self._sample = self._sample, None
            history = tuple(self._history)
            note = self._source_note
        if status_dirty:
            try:
                status, catalog, usage = self.read_status()
            except Exception as exc:  # noqa: BLE001 - a closing manager must not kill the bridge
                self._log("warning", f"status unavailable: {sanitize(str(exc))}")
            else:
                self.app.post_message(StatusUpdated(status, catalog, usage))
        if sample is not None:
            self.app.post_message(TelemetryUpdated(sample, history, note))


def _fallback_note(core: Core) -> str:
    """The gauge line's note for a sampler already on a fallback: the first better source that
    could be fixed, with its reason and fix (as :meth:`EventRelay._on_source_changed` words it)."""
    sampler = core.sampler
    if sampler is None or sampler.active_source is None:
        return ""
    for source in sampler.status():
        if source.name == sampler.active_source:
            return ""
        if source.fix:
            return f"{sanitize(source.reason or source.state)}; fix: {sanitize(source.fix)}"
    return ""


class CoreBridge(EventRelay):
    """Bridges ``core.bus`` to ``app`` (see the module docstring).

    Args:
        core: the started core.
        app: the Textual app receiving the messages.
        min_interval_s: the least time between two status (or telemetry) messages.
    """

    def __init__(self, core: Core, app: App[Any], *, min_interval_s: float = 0.2) -> None:
        super().__init__(app, min_interval_s=min_interval_s)
        self.core = core
        self._sub: Subscription | None = None

    def start(self) -> None:
        """Subscribe and start the flusher thread (call once, from the app's loop)."""
        self.forget_models(self.core.manager.model_statuses())
        self._sub = self.core.bus.subscribe(self.on_event, kinds=_KINDS)
        note = _fallback_note(self.core)  # a fallback announced before this subscription: show it too
        with self._lock:
            self._source_note = self._source_note or note
        self.start_flusher()

    def stop(self) -> None:
        """Unsubscribe and stop the flusher (safe to call twice)."""
        self._stopping.set()
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        self.stop_flusher()

    def read_status(self) -> tuple[SystemStatus, Catalog | None, Mapping[str, UsageRecord]]:
        manager = self.core.manager
        return manager.status(), manager.catalog, manager.usage.snapshot()
