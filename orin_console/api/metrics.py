"""Prometheus metrics for one app: requests, generations, loads, memory and telemetry.

One :class:`ApiMetrics` per app (``app.state.metrics``), each with its own
:class:`~prometheus_client.CollectorRegistry` (never the global one, so two apps in one
process, or two tests, never share counts). Three sources:

- **Requests** are counted by :class:`RequestMetricsMiddleware`, a small ASGI middleware
  inside the guard (a request the guard refuses, 400/401/413, is not counted): by method,
  route template (``/v1/chat/completions``, ``/models/{model_id}``; ``unmatched`` for a path no
  route serves, so a scanner cannot blow up the label set) and status.
- **Generations, loads, refusals, crashes** come from the core's events through one bus
  subscription (a callback thread, closed by :meth:`ApiMetrics.close` on the app's shutdown):
  every generation counts, whoever asked (API, TUI, CLI in the same process). A load is a
  ``loading``/``moving`` -> ``ready`` transition, a load failure ``loading`` -> ``failed``, a
  crash ``ready``/``unloading`` -> ``failed`` (the runner died while serving), a refusal a
  :class:`~orin_console.core.events.kinds.ManagerError` whose ``kind`` is ``AdmissionRefused``
  (its type, not its wording).
- **Queue depth, model states, memory per tier, the machine's memory and telemetry** are read
  at scrape time from ``core.manager.status()`` and ``core.sampler.latest()`` by a custom
  collector, so they are never stale and need no bookkeeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orin_console.core import Core
from orin_console.core.events.bus import Subscription
from orin_console.core.events.kinds import (
    Event,
    GenerationFinished,
    GenerationStarted,
    ManagerError,
    ModelStateChanged,
    Snapshot,
)
from orin_console.core.manager.types import ModelState, SystemStatus

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE", "ApiMetrics", "RequestMetricsMiddleware"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "orin"
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOK_S_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 2560.0)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
MAX_TRACKED_REQUESTS = 10_000
"""Bound on generations started and not yet finished that the source label is kept for."""
_SERVING = (ModelState.READY, ModelState.UNLOADING)
_LOADING = (ModelState.LOADING, ModelState.MOVING)


class ApiMetrics:
    """The metrics of one app over one core.

    Args:
        core: the core served (its bus is subscribed to; its manager and sampler read at
            scrape time).
        subscribe: subscribe to the core's events now (False: requests and scrape-time
            figures only).
    """

    def __init__(self, core: Core, *, subscribe: bool = True) -> None:
        self.core = core
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests served, by method, route "
                                "template and status (requests the guard refuses are not counted).",
                                ("method", "route", "status"), registry=r)
        self.request_seconds = Histogram(f"{PREFIX}_http_request_duration_seconds",
                                         "Time to serve a request (a stream: until its end).",
                                         ("route",), buckets=DURATION_BUCKETS, registry=r)
        self.generations = Counter(f"{PREFIX}_generations", "Generations ended, by model, who asked "
                                   "and how they ended (stop, length, cancelled, error).",
                                   ("model", "source", "finish_reason"), registry=r)
        self.tokens = Counter(f"{PREFIX}_generated_tokens", "Tokens generated, by model.",
                              ("model",), registry=r)
        self.ttft = Histogram(f"{PREFIX}_ttft_seconds", "Time to first token (the runner's: prompt "
                              "evaluation included), by model.", ("model",), buckets=TTFT_BUCKETS,
                              registry=r)
        self.tok_per_s = Histogram(f"{PREFIX}_tokens_per_second", "Decode speed after the first "
                                   "token, by model.", ("model",), buckets=TOK_S_BUCKETS, registry=r)
        self.loads = Counter(f"{PREFIX}_model_loads", "Loads and tier moves completed, by model and "
                             "the tier loaded into.", ("model", "tier"), registry=r)
        self.load_failures = Counter(f"{PREFIX}_model_load_failures", "Loads that failed (the runner "
                                     "did not start or llama.cpp refused the file).", ("model",), registry=r)
        self.refusals = Counter(f"{PREFIX}_admission_refusals", "Loads and moves refused by admission "
                                "control (would not fit).", ("model",), registry=r)
        self.crashes = Counter(f"{PREFIX}_runner_crashes", "Runners that died while serving.",
                               ("model",), registry=r)
        self.registry.register(_StatusCollector(core))
        self._states: dict[str, ModelState] = {}
        self._sources: dict[str, str] = {}  # request id -> who asked, until it finishes
        self._lock = threading.Lock()
        self._sub: Subscription | None = None
        if subscribe:
            self._sub = core.bus.subscribe(
                self._on_event, kinds=(ModelStateChanged, GenerationStarted, GenerationFinished, ManagerError),
                name="api-metrics", snapshot=True)

    # -- events (the subscription's thread) ---------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, GenerationStarted):
            if len(self._sources) < MAX_TRACKED_REQUESTS:
                self._sources[event.request_id] = event.source
        elif isinstance(event, GenerationFinished):
            self._finished(event)
        elif isinstance(event, ModelStateChanged):
            self._state_changed(event.model_id, event.status.state, event.status.tier)
        elif isinstance(event, ManagerError):
            if event.model_id is not None and event.kind == "AdmissionRefused":
                self.refusals.labels(event.model_id).inc()
        elif isinstance(event, Snapshot) and isinstance(event.status, SystemStatus):
            with self._lock:  # where every model stands: later transitions count from here
                self._states = {m.model_id: m.state for m in event.status.models}

    def _finished(self, event: GenerationFinished) -> None:
        model = event.model_id
        reason = "error" if event.error else event.finish_reason
        source = self._sources.pop(event.request_id, "unknown")  # unknown: ended before it started
        self.generations.labels(model, source, reason).inc()
        if event.tokens > 0:
            self.tokens.labels(model).inc(event.tokens)
        if event.ttft_s is not None:
            self.ttft.labels(model).observe(event.ttft_s)
        if event.tok_per_s is not None:
            self.tok_per_s.labels(model).observe(event.tok_per_s)

    def _state_changed(self, model: str, state: ModelState, tier: str) -> None:
        with self._lock:
            before = self._states.get(model)
            self._states[model] = state
        if before == state:
            return
        if state == ModelState.READY and before in _LOADING:
            self.loads.labels(model, tier).inc()
        elif state == ModelState.FAILED and before == ModelState.LOADING:
            self.load_failures.labels(model).inc()
        elif state == ModelState.FAILED and before in _SERVING:
            self.crashes.labels(model).inc()

    # -- requests ------------------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request (called by :class:`RequestMetricsMiddleware`)."""
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    # -- output --------------------------------------------------------------------------------

    def render(self) -> bytes:
        """Everything, in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def close(self) -> None:
        """End the event subscription (idempotent); the app calls it on shutdown."""
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()


class _StatusCollector(Collector):
    """Figures read when scraped: queue depth, states, memory per tier, telemetry."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def describe(self) -> list[Metric]:
        return []  # unchecked: the families vary with the catalog and the telemetry source

    def collect(self) -> Iterator[Metric]:
        try:
            status = self.core.manager.status()
        except Exception as exc:  # noqa: BLE001 - a closed or failing core must not fail the scrape
            log.debug("metrics: no status: %s", exc)
            status = None
        if status is not None:
            yield from _status_metrics(status)
        sampler = self.core.sampler
        sample = sampler.latest() if sampler is not None else None
        if sample is not None:
            yield from _telemetry_metrics(sample)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = (), unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels), unit=unit)


def _status_metrics(status: SystemStatus) -> Iterator[Metric]:
    models = status.models
    queued = _gauge("queue_depth", "Generations waiting for the model (not counting the running one).",
                    ("model",))
    busy = _gauge("model_busy", "1 while the model generates.", ("model",))
    state = _gauge("model_state", "1 for the model's current state.", ("model", "state"))
    predicted = _gauge("model_predicted_bytes", "Admission's prediction for the model in its tier.",
                       ("model", "tier"))
    measured = _gauge("model_measured_bytes", "The runner's RSS + swap (+ GPU) as measured.",
                      ("model", "tier"))
    per_tier_predicted: dict[str, int] = {}
    per_tier_measured: dict[str, int] = {}
    for m in models:
        queued.add_metric([m.model_id], m.queued)
        busy.add_metric([m.model_id], 1 if m.busy else 0)
        for s in ModelState:
            state.add_metric([m.model_id, s.value], 1 if m.state == s else 0)
        if m.tier == "disk":
            continue
        if m.predicted_bytes is not None:
            predicted.add_metric([m.model_id, m.tier], m.predicted_bytes)
            per_tier_predicted[m.tier] = per_tier_predicted.get(m.tier, 0) + m.predicted_bytes
        if m.measured_bytes is not None:
            measured.add_metric([m.model_id, m.tier], m.measured_bytes)
            per_tier_measured[m.tier] = per_tier_measured.get(m.tier, 0) + m.measured_bytes
    yield from (queued, busy, state, predicted, measured)
    total = _gauge("models", "Models in the catalog.")
    total.add_metric([], len(models))
    yield total
    budget = _gauge("tier_budget_bytes", "The tier's budget.", ("tier",))
    reserved = _gauge("tier_reserved_bytes", "Bytes the scheduler has reserved in the tier (each "
                      "runner's prediction until measured, then the larger; loads in flight included).",
                      ("tier",))
    tier_predicted = _gauge("tier_predicted_bytes", "Sum of the predictions of the models serving "
                            "from the tier.", ("tier",))
    tier_measured = _gauge("tier_measured_bytes", "Sum of the measurements of the models serving "
                           "from the tier (those measured so far).", ("tier",))
    tier_models = _gauge("tier_models", "Models holding a reservation in the tier.", ("tier",))
    for t in status.tiers:
        budget.add_metric([t.tier], t.budget)
        reserved.add_metric([t.tier], t.used)
        tier_predicted.add_metric([t.tier], per_tier_predicted.get(t.tier, 0))
        tier_measured.add_metric([t.tier], per_tier_measured.get(t.tier, 0))
        tier_models.add_metric([t.tier], len(t.models))
    yield from (budget, reserved, tier_predicted, tier_measured, tier_models)
    for name, doc, value in (
        ("mem_available_bytes", "MemAvailable as admission control reads it.", status.mem_available),
        ("swap_free_bytes", "Free swap as admission control reads it.", status.swap_free),
        ("memory_reserve_bytes", "Memory kept free for the system.", status.reserve),
    ):
        gauge = _gauge(name, doc)
        gauge.add_metric([], value)
        yield gauge


_TELEMETRY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("mem_total", "telemetry_ram_total_bytes", "Machine RAM."),
    ("mem_used", "telemetry_ram_used_bytes", "RAM used by processes (total - free - buffers - cache)."),
    ("mem_available", "telemetry_ram_available_bytes", "MemAvailable."),
    ("mem_gpu_shared", "telemetry_gpu_shared_bytes", "RAM the GPU holds (Jetson nvmap)."),
    ("gpu_mem_total", "telemetry_gpu_memory_total_bytes", "Dedicated GPU memory (discrete GPU)."),
    ("gpu_mem_used", "telemetry_gpu_memory_used_bytes", "Dedicated GPU memory in use (discrete GPU)."),
    ("swap_total", "telemetry_swap_total_bytes", "Swap size."),
    ("swap_used", "telemetry_swap_used_bytes", "Swap used."),
    ("cpu_percent", "telemetry_cpu_percent", "CPU load, percent."),
    ("gpu_load", "telemetry_gpu_load_percent", "GPU load, percent."),
    ("gpu_freq_hz", "telemetry_gpu_frequency_hertz", "GPU clock."),
    ("emc_load", "telemetry_emc_load_percent", "Memory controller bandwidth used, percent."),
    ("power_w", "telemetry_power_watts", "Board input power (VDD_IN), or the GPU's draw (NVML)."),
    ("fan_percent", "telemetry_fan_percent", "Fan speed, percent."),
)


def _telemetry_metrics(sample: Any) -> Iterator[Metric]:
    info = _gauge("telemetry_info", "1, labelled with the telemetry source in use.", ("source",))
    info.add_metric([str(sample.source)], 1)
    yield info
    age = _gauge("telemetry_sample_age_seconds", "Age of the latest sample.")
    age.add_metric([], max(0.0, time.monotonic() - sample.mono))
    yield age
    for attr, name, doc in _TELEMETRY_FIELDS:
        value = getattr(sample, attr, None)
        if value is not None:
            gauge = _gauge(name, doc)
            gauge.add_metric([], float(value))
            yield gauge
    temps = dict(sample.temperatures or {})
    if temps:
        gauge = _gauge("telemetry_temperature_celsius", "Temperature per sensor.", ("sensor",))
        for sensor, value in sorted(temps.items()):
            gauge.add_metric([str(sensor)], float(value))
        yield gauge
    rails = dict(getattr(sample, "power_rails_w", None) or {})
    if rails:
        gauge = _gauge("telemetry_power_rail_watts", "Power per rail.", ("rail",))
        for rail, value in sorted(rails.items()):
            gauge.add_metric([str(rail)], float(value))
        yield gauge


class RequestMetricsMiddleware:
    """Counts every HTTP request by method, route template and status, and times it.

    Args:
        app: the ASGI app.
        metrics: where to count.
    """

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception before the response starts is a 500 for the client
        started = time.perf_counter()

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(str(scope.get("method", "?")), str(route), status,
                                         time.perf_counter() - started)
