"""The sampler: one background thread that reads the best working source at a steady rate.

Sources are tried in order of preference (jtop, NVML, psutil). Each tick reads the best source
that is open; when it fails, the sampler closes it, says why and how to fix it (a log warning
and a :class:`~orin_console.core.events.bus.TelemetrySourceChanged` event) and reads the next one
in the same tick, so a sample is never skipped. A better source that failed or was not there is
probed again with a growing backoff (``retry_initial_s`` doubling up to ``retry_max_s``) and
taken back as soon as it answers. A source whose failure is permanent (library not installed,
no driver) is not probed again.

Every sample lands in a bounded history (for sparklines), is published on the event bus as a
:class:`~orin_console.core.events.bus.TelemetrySample`, and carries the age after which it counts
as stale (three intervals, at least one second), so any reader can tell stale data from fresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from orin_console.core.events.bus import EventBus, TelemetrySample, TelemetrySourceChanged
from orin_console.core.telemetry.base import Sample, SourceUnavailable, TelemetryError, TelemetrySource

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """How one source stands, for the operator (CLI table, TUI, API)."""

    name: str
    state: str
    """``active``, ``standby`` (open, a better one is active), ``retrying`` (will be probed
    again), ``unavailable`` (will not be probed again), ``closed`` (works, not in use: a better
    source is active or the sampler stopped) or ``untried``."""
    reason: str | None = None
    fix: str | None = None
    retry_in_s: float | None = None


class _Slot:
    """The sampler's bookkeeping for one source."""

    def __init__(self, source: TelemetrySource, backoff: float) -> None:
        self.source = source
        self.open = False
        self.tried = False
        self.permanent = False
        self.reason: str | None = None
        self.fix: str | None = None
        self.next_attempt = 0.0
        self.backoff = backoff


class Sampler:
    """Samples telemetry on a background thread.

    Args:
        sources: in order of preference; the last should be one that always works (psutil).
        bus: where samples and source changes are published (optional).
        interval_s: seconds between samples.
        history: samples kept (oldest dropped first).
        stale_after_s: age at which a sample is stale (default ``max(3 * interval_s, 1.0)``).
        retry_initial_s, retry_max_s: the backoff for probing a better source again.
        clock: a monotonic clock (tests may pass their own).
    """

    def __init__(
        self,
        sources: Sequence[TelemetrySource],
        *,
        bus: EventBus | None = None,
        interval_s: float = 1.0,
        history: int = 300,
        stale_after_s: float | None = None,
        retry_initial_s: float = 2.0,
        retry_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not sources:
            raise ValueError("a sampler needs at least one source")
        if interval_s <= 0 or history < 1:
            raise ValueError("interval_s must be positive and history at least 1")
        self.bus = bus
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s if stale_after_s is not None else max(3 * interval_s, 1.0)
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._clock = clock
        self._slots = [_Slot(s, retry_initial_s) for s in sources]
        self._history: deque[Sample] = deque(maxlen=history)
        self._lock = threading.Lock()  # guards _history and _latest
        self._step_lock = threading.Lock()  # one tick at a time
        self._latest: Sample | None = None
        self._active: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        """Ticks run so far (for tests and the benchmark)."""

    @classmethod
    def from_settings(cls, settings: object, *, bus: EventBus | None = None, **kwargs: object) -> Sampler:
        """A sampler for ``settings.telemetry_source``, interval and history size."""
        from orin_console.core.telemetry import build_sources

        interval = float(getattr(settings, "telemetry_interval_s", 1.0))
        return cls(
            build_sources(str(getattr(settings, "telemetry_source", "auto")), interval_s=interval),
            bus=bus,
            interval_s=interval,
            history=int(getattr(settings, "telemetry_history", 300)),
            **kwargs,  # type: ignore[arg-type]
        )

    # -- reading -------------------------------------------------------------------------

    def sample_once(self) -> Sample:
        """Run one tick now and return its sample (also stored and published).

        Raises:
            TelemetryError: no source could produce a sample.
        """
        with self._step_lock:
            sample = self._step()
        if sample is None:
            raise TelemetryError("no telemetry source works: " + self._reasons())
        return sample

    def _step(self) -> Sample | None:
        now = self._clock()
        previous = self._active
        failure: tuple[str, str | None] | None = None
        for index, slot in enumerate(self._slots):
            if not slot.open:
                if slot.permanent or now < slot.next_attempt:
                    continue
                if not self._try_open(slot, now):
                    continue
            try:
                sample = slot.source.read()
            except SourceUnavailable as exc:
                self._fail(slot, now, exc.reason, exc.fix, permanent=not exc.retry)
                failure = failure or (f"{slot.source.name}: {exc.reason}", exc.fix)
                continue
            except Exception as exc:  # a source's bug must not stop telemetry
                log.exception("telemetry source %s failed", slot.source.name)
                self._fail(slot, now, f"{type(exc).__name__}: {exc}", None, permanent=False)
                failure = failure or (f"{slot.source.name}: {type(exc).__name__}: {exc}", None)
                continue
            self._close_below(index)
            sample = replace(sample, stale_after_s=self.stale_after_s)
            self._record(sample, previous, failure)
            return sample
        if previous is not None:
            self._active = None
            self._announce(previous, None, failure or ("every source failed", None))
        return None

    def _try_open(self, slot: _Slot, now: float) -> bool:
        first = not slot.tried
        slot.tried = True
        try:
            slot.source.open()
        except SourceUnavailable as exc:
            self._fail(slot, now, exc.reason, exc.fix, permanent=not exc.retry, quiet=not first)
            return False
        except Exception as exc:
            log.exception("telemetry source %s failed to open", slot.source.name)
            self._fail(slot, now, f"{type(exc).__name__}: {exc}", None, permanent=False)
            return False
        slot.open = True
        slot.reason = slot.fix = None
        slot.backoff = self.retry_initial_s
        return True

    def _fail(
        self, slot: _Slot, now: float, reason: str, fix: str | None, *, permanent: bool, quiet: bool = False
    ) -> None:
        if slot.open:
            self._safe_close(slot)
        slot.reason, slot.fix, slot.permanent = reason, fix, permanent
        slot.next_attempt = now + slot.backoff
        slot.backoff = min(slot.backoff * 2, self.retry_max_s)
        if not quiet:
            log.debug("telemetry source %s unavailable: %s", slot.source.name, reason)

    def _close_below(self, index: int) -> None:
        """A better source works: release the fallbacks, ready to be opened again at once."""
        for slot in self._slots[index + 1 :]:
            if slot.open:
                self._safe_close(slot)
                slot.reason = slot.fix = None
                slot.next_attempt, slot.backoff = 0.0, self.retry_initial_s

    @staticmethod
    def _safe_close(slot: _Slot) -> None:
        slot.open = False
        try:
            slot.source.close()
        except Exception:
            log.exception("telemetry source %s failed to close", slot.source.name)

    def _record(self, sample: Sample, previous: str | None, failure: tuple[str, str | None] | None) -> None:
        with self._lock:
            self._history.append(sample)
            self._latest = sample
        self._active = sample.source
        self.ticks += 1
        if sample.source != previous:
            self._announce(previous, sample.source, self._why(previous, sample.source, failure))
        if self.bus is not None:
            self.bus.publish(TelemetrySample(sample=sample))

    def _rank(self, name: str | None) -> int:
        return next((i for i, s in enumerate(self._slots) if s.source.name == name), len(self._slots))

    def _why(
        self, previous: str | None, current: str, failure: tuple[str, str | None] | None
    ) -> tuple[str, str | None]:
        if previous is not None and self._rank(current) < self._rank(previous):
            return f"{current} is back", None
        if failure is not None:
            return failure
        better = [s for s in self._slots[: self._rank(current)] if s.reason]
        if better:
            reasons = "; ".join(f"{s.source.name}: {s.reason}" for s in better)
            return reasons, next((s.fix for s in better if s.fix), None)
        return "preferred source", None

    def _announce(self, previous: str | None, current: str | None, why: tuple[str, str | None]) -> None:
        reason, fix = why
        if current is None or previous is not None:
            degraded = self._rank(current) > self._rank(previous)
        else:  # at start: worth a warning when a better source could be fixed
            degraded = fix is not None
        fix_text = f" - fix: {fix}" if fix else ""
        if degraded:
            log.warning("telemetry: %s -> %s: %s%s", previous or "start", current or "none", reason, fix_text)
        else:
            log.info("telemetry source: %s (%s)", current, reason)
        if self.bus is not None:
            self.bus.publish(TelemetrySourceChanged(previous=previous, current=current, reason=reason, fix=fix))

    def _reasons(self) -> str:
        return "; ".join(
            f"{s.source.name}: {s.reason}" + (f" (fix: {s.fix})" if s.fix else "") for s in self._slots if s.reason
        ) or "no source could be opened"

    # -- what readers see ----------------------------------------------------------------

    def latest(self) -> Sample | None:
        """The newest sample, or None before the first."""
        with self._lock:
            return self._latest

    def history(self, n: int | None = None) -> list[Sample]:
        """The last ``n`` samples (all kept ones by default), oldest first."""
        with self._lock:
            items = list(self._history)
        return items if n is None else items[-n:] if n > 0 else []

    @property
    def active_source(self) -> str | None:
        """The source the newest sample came from (None before the first / when all failed)."""
        return self._active

    def is_stale(self, now: float | None = None) -> bool:
        """True when there is no sample or the newest is older than :attr:`stale_after_s`."""
        latest = self.latest()
        return latest is None or latest.is_stale(self._clock() if now is None else now)

    def status(self) -> list[SourceStatus]:
        """Each source's state, reason and fix, in order of preference."""
        now = self._clock()
        out = []
        for slot in self._slots:
            name = slot.source.name
            if slot.open:
                state = "active" if name == self._active else "standby"
            elif slot.permanent:
                state = "unavailable"
            elif slot.tried and slot.reason is None:
                state = "closed"
            elif slot.tried:
                state = "retrying"
            else:
                state = "untried"
            retry = max(0.0, slot.next_attempt - now) if state == "retrying" else None
            out.append(SourceStatus(name, state, slot.reason, slot.fix, retry))
        return out

    # -- the thread ----------------------------------------------------------------------

    def start(self) -> Sampler:
        """Start the background thread (the first sample is taken at once)."""
        if self._thread is not None:
            raise RuntimeError("the sampler was already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="telemetry-sampler", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        deadline = time.monotonic()
        while not self._stop.is_set():
            try:
                with self._step_lock:
                    self._step()
            except Exception:  # the thread must outlive any bug in a tick
                log.exception("telemetry tick failed")
            deadline += self.interval_s
            now = time.monotonic()
            if deadline < now:  # late (suspended, overloaded): skip the missed ticks
                deadline = now
            self._stop.wait(deadline - now)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, wait for it, and close every source. Safe to call twice."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("telemetry sampler did not stop within %.1f s", timeout)
        with self._step_lock:
            for slot in self._slots:
                if slot.open:
                    self._safe_close(slot)
        self._active = None

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
