"""The manager: the one facade the TUI, the API and the CLI use.

It wires the parts that own each concern and keeps the public calls in one place:

- the :class:`~orin_console.core.memory.scheduler.Scheduler` owns every memory decision
  (admission, reservations of loads and moves in flight);
- a :class:`~orin_console.core.manager.model.ModelRuntime` per catalog model is its load state
  machine and generation queue;
- :class:`~orin_console.core.manager.loads.LoadTasks` carries out loads, moves and unloads on
  threads the manager joins at close;
- the :class:`~orin_console.core.manager.watcher.CatalogWatcher` applies edits of
  ``models.toml``; the :class:`~orin_console.core.manager.recorder.MeasurementRecorder` measures
  runners after load and use.

Constructing a manager starts nothing: the spare runner starts with the first load, the GPU
probe with the first RAM-tier prediction, the watcher with :meth:`Manager.start`.

    with Manager(load_settings()) as manager:
        manager.load("smollm2").result()          # a Future; progress arrives as events
        for chunk in manager.generate("smollm2", GenerateRequest(prompt="Hi")):
            print(chunk.text, end="")
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import psutil

from orin_console.core.cancel import Cancelled, CancelToken
from orin_console.core.catalog.add import AddResult, add_models
from orin_console.core.catalog.store import Catalog, CatalogStore
from orin_console.core.errors import OrinError
from orin_console.core.events.bus import EventBus
from orin_console.core.events.kinds import (
    CatalogChanged,
    ManagerError,
    ModelStateChanged,
    TierUsageChanged,
)
from orin_console.core.file_facts import FileFactsCache
from orin_console.core.manager.loads import LoadTasks, Operations
from orin_console.core.manager.model import ModelRuntime, default_tier
from orin_console.core.manager.predictions import PredictionCache
from orin_console.core.manager.preview import Verdict, preview_add
from orin_console.core.manager.recorder import MeasurementRecorder
from orin_console.core.manager.stream import GenerationReport, ManagedStream
from orin_console.core.manager.types import (
    ManagerClosed,
    ModelInTransition,
    ModelState,
    ModelStatus,
    ModelUnavailable,
    SystemStatus,
    tier_usages,
)
from orin_console.core.manager.watcher import CatalogWatcher
from orin_console.core.memory.admission import AdmissionRefused, AdmissionRequest, Budgets, Decision, MachineMemory
from orin_console.core.memory.measurements import Corrections
from orin_console.core.memory.prediction import Prediction
from orin_console.core.memory.scheduler import Reserved, Scheduler
from orin_console.core.placement.usage import UsageTracker
from orin_console.core.runner import GenerateRequest, LoadResult, Runner, SpareRunners
from orin_console.core.runner.tiers import RunnerConfig
from orin_console.core.settings import Settings
from orin_console.core.telemetry import Sampler
from orin_console.core.tier import Tier, parse_tier

log = logging.getLogger(__name__)

_request_ids = itertools.count(1)

CLOSING = "the console is shutting down"


def new_request_id() -> str:
    """A request id unique in this console run ("r1", "r2", ...)."""
    return f"r{next(_request_ids)}"


def _machine_memory() -> MachineMemory:
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    return MachineMemory(mem_available=vm.available, swap_free=sw.free,
                         mem_total=vm.total, swap_total=sw.total)


def wait_for(future: Future[ModelStatus], timeout: float | None, cancel: CancelToken | None) -> ModelStatus:
    """``future.result(timeout)`` that also returns (raising :class:`Cancelled`) when
    ``cancel`` is cancelled; the load itself goes on for whoever else waits on it."""
    if cancel is None:
        return future.result(timeout)
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    remove = cancel.on_cancel(done.set)
    try:
        if not done.wait(timeout):
            raise FutureTimeout(f"the load did not finish within {timeout} s")
    finally:
        remove()
    if not future.done():
        raise Cancelled(cancel.reason)
    return future.result()


class Manager:
    """Thread-safe facade over the catalog, the scheduler and the runners.

    Args:
        settings: budgets, reserve, catalog path, state folder.
        bus: the event bus to publish on (a new one by default).
        budgets: override the budgets from ``settings`` (tests).
        machine_memory: where ``MemAvailable`` and free swap come from (tests pass a fake).
        runner_env: extra environment for every runner (e.g. test hooks).
        n_threads: decode threads per runner (None: llama-cpp-python's default).
        queue_limit: generations that may wait per model before "busy".
        watch_interval_s: how often the catalog file is checked for edits (0: never).
        gpu_offload: whether the llama.cpp build offloads to a GPU; None asks it once, at the
            first RAM-tier prediction.
        telemetry: a telemetry sampler whose latest sample gives each runner's GPU memory
            (jtop's per-process figures on a Jetson, NVML on a desktop GPU); without one,
            runners are measured from /proc alone.
        spare_runner: keep one warm runner process (llama_cpp imported, no model, ~40 MB),
            from the first load on, so later loads and tier moves skip the Python start.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        budgets: Budgets | None = None,
        machine_memory: Callable[[], MachineMemory] = _machine_memory,
        runner_env: Mapping[str, str] | None = None,
        n_threads: int | None = None,
        queue_limit: int = 4,
        watch_interval_s: float = 1.0,
        gpu_offload: bool | None = None,
        spare_runner: bool = True,
        telemetry: Sampler | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus or EventBus()
        self.budgets = budgets or Budgets.from_settings(settings)
        self.store = CatalogStore(settings.catalog_path)
        state_dir = Path(settings.state_dir).expanduser()
        self.corrections = Corrections.in_state_dir(state_dir)
        self.usage = UsageTracker(path=state_dir / "usage.json")
        self._machine_memory = machine_memory
        self._runner_env = dict(runner_env or {})
        self._queue_limit = queue_limit
        self._spare_runner = spare_runner
        self._spares: SpareRunners | None = None
        self._lock = threading.RLock()
        self._models: dict[str, ModelRuntime] = {}
        self._closed = False
        self.predictions = PredictionCache(self.corrections, gpu_offload=gpu_offload, python=sys.executable)
        self.file_facts = FileFactsCache(self.predictions.header)
        """Each catalog file's display facts (size, quantisation...), read once per file: the one
        cache every front end shows them from."""
        self.scheduler = Scheduler(lambda: self.budgets, machine_memory, pinned=self._is_pinned,
                                   busy=self._is_busy, on_change=self._reservations_changed)
        self.recorder = MeasurementRecorder(self.corrections, telemetry, on_recorded=self.predictions.invalidate)
        self._ops = Operations()
        self._tasks = LoadTasks(catalog=lambda: self.catalog, scheduler=self.scheduler,
                                predictions=self.predictions, recorder=self.recorder, bus=self.bus,
                                new_runner=self._new_runner, n_threads=n_threads, on_removed=self._forget)
        self._watcher = CatalogWatcher(self.store, watch_interval_s, on_change=self._catalog_changed,
                                       on_error=lambda message: self.bus.publish(ManagerError(message=message)))
        self._sync_catalog(self.store.load())

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Manager:
        """Start watching the catalog file for edits (a bad edit is refused, the last good stays)."""
        self._watcher.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting work, cancel loads and moves in flight (their starting runners are
        killed), stop every runner and the spare, join every thread the manager started, and
        save usage. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            models = list(self._models.values())
        self._watcher.stop(timeout)
        for model in models:
            model.queue.close(CLOSING)
            token = model.op_token
            if token is not None:
                token.cancel(CLOSING)
        if not self._ops.join(timeout):
            log.warning("a load or unload did not end within %.0f s of close()", timeout)
        for model in models:
            self._tasks.stop_at_close(model)
        with self._lock:
            spares, self._spares = self._spares, None
        if spares is not None:
            spares.close()
        try:
            self.usage.save()
        except OSError as exc:
            log.warning("could not save usage to %s: %s", self.usage.path, exc)

    def __enter__(self) -> Manager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ManagerClosed("the manager is closed; start a new console to load or generate")

    def _new_runner(self, model: ModelRuntime, config: object) -> Runner:
        assert isinstance(config, RunnerConfig)
        with self._lock:
            if self._spare_runner and self._spares is None and not self._closed:
                self._spares = SpareRunners(sys.executable, (), self._runner_env)
            spares = self._spares
        return Runner(model.model_id, config, env=self._runner_env, spares=spares,
                      on_exit=lambda r, died: self._tasks.runner_exited(model, r, died),
                      first_token_timeout_s=self.settings.first_token_timeout_s,
                      token_gap_timeout_s=self.settings.token_gap_timeout_s)

    # -- catalog ----------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """The catalog in force."""
        return self.store.current

    def add_models(self, path: str | Path, **options: object) -> AddResult:
        """Validate GGUF files at ``path`` and add them to the catalog (see :func:`add_models`)."""
        result = add_models(self.store, Path(path), **options)
        self._catalog_changed(result.catalog)
        return result

    def preview_add(self, path: str | Path, **options: object) -> Verdict:
        """What :meth:`add_models` would add from ``path``, writing nothing: the entries proposed,
        the files refused with the reason, each one's prediction and admission per loaded tier
        (see :func:`~orin_console.core.manager.preview.preview_add`). Blocking (reads headers)."""
        return preview_add(self, Path(path), **options)

    def remove_model(self, model_id: str) -> None:
        """Unload (if loaded) and remove a model from the catalog; the file stays."""
        self.unload(model_id).result()
        self._catalog_changed(self.store.remove(model_id))

    def pin(self, model_id: str, pinned: bool = True) -> ModelStatus:
        """Pin (or unpin) a model: the usage-based plan keeps a pinned model in its tier."""
        self._catalog_changed(self.store.update(model_id, pin=pinned))
        return self.model_status(model_id)

    def _catalog_changed(self, catalog: Catalog) -> None:
        self._sync_catalog(catalog)
        self.bus.publish(CatalogChanged(model_ids=tuple(e.id for e in catalog)))

    def _sync_catalog(self, catalog: Catalog) -> None:
        with self._lock:
            for entry in catalog:
                model = self._models.get(entry.id)
                if model is None:
                    self._models[entry.id] = ModelRuntime(entry, self._queue_limit, self._publish_state)
                else:
                    model.renew(entry)
            gone = [self._models[mid] for mid in self._models if mid not in catalog]
        for model in gone:
            model.removed = True
            if model.runner is not None or model.state != ModelState.UNLOADED:
                if not self._closed:
                    self.unload(model.model_id)
            else:
                self._forget(model)
            self.usage.forget(model.model_id)

    def _forget(self, model: ModelRuntime) -> None:
        with self._lock:
            if self._models.get(model.model_id) is model:
                del self._models[model.model_id]

    def _model(self, model_id: str) -> ModelRuntime:
        with self._lock:
            model = self._models.get(model_id)
        if model is None or model.removed:
            self.catalog.get(model_id)  # raises CatalogError naming the known ids
            raise ModelUnavailable(f"`{model_id}` was removed from the catalog")
        return model

    def _is_pinned(self, model_id: str) -> bool:
        model = self._models.get(model_id)  # no lock: called under the scheduler's
        return model is not None and model.entry.pin

    def _is_busy(self, model_id: str) -> bool:
        model = self._models.get(model_id)
        return model is not None and model.queue.generating

    # -- status -----------------------------------------------------------------------------

    def model_status(self, model_id: str) -> ModelStatus:
        """One model's status."""
        return self._model(model_id).status()

    def model_statuses(self) -> tuple[ModelStatus, ...]:
        """Every model's status, without the tiers and the machine's memory (no system call:
        what routing a request needs)."""
        with self._lock:
            return tuple(model.status() for model in self._models.values())

    def status(self) -> SystemStatus:
        """Every model, each tier's reserved memory (loads and moves in flight included) against
        its budget, and the machine's free memory."""
        models = self.model_statuses()
        tiers = tier_usages(self.scheduler.reservations(), self.budgets)
        machine = self._machine_memory()
        return SystemStatus(models, tiers, machine.mem_available, machine.swap_free, self.budgets.reserve)

    def _publish_state(self, model: ModelRuntime) -> None:
        self.bus.publish(ModelStateChanged(model_id=model.model_id, status=model.status()))

    def _reservations_changed(self, reservations: tuple[Reserved, ...]) -> None:
        self.bus.publish(TierUsageChanged(tiers=tier_usages(reservations, self.budgets)))

    # -- admission --------------------------------------------------------------------------

    def tier_for(self, model_id: str) -> Tier:
        """The tier a request without a named tier loads ``model_id`` into: its catalog tier,
        or swap for a model whose catalog tier is ``disk``. The one rule every caller uses."""
        return default_tier(self._model(model_id).entry)

    def prediction(self, model_id: str, tier: str | Tier) -> Prediction:
        """What a runner of ``model_id`` in the loaded ``tier`` would occupy (cached per file).

        Raises:
            GGUFError: the file is missing or invalid.
            OrinError: ``tier`` is not a loaded tier.
        """
        model = self._model(model_id)
        target = parse_tier(tier)
        if target is Tier.DISK:
            raise OrinError("the disk tier holds no runner; predict for ram or swap")
        return self.predictions.predict(model.entry, self.catalog.model_path(model.entry), target)

    def plan(self, model_id: str, tier: str | Tier | None = None) -> Decision:
        """Dry run: would loading (or moving) ``model_id`` into ``tier`` be admitted, and why?

        The scheduler's own decision over its reservations now (so it agrees with a load
        asked for at the same moment); nothing is loaded or reserved. ``tier`` defaults to
        :meth:`tier_for`. Starts no process (see
        :class:`~orin_console.core.manager.predictions.PredictionCache` for the GPU question).
        """
        model = self._model(model_id)
        target = parse_tier(tier) if tier is not None else default_tier(model.entry)
        prediction = _EMPTY_PREDICTION if target is Tier.DISK else self.prediction(model_id, target)
        return self.scheduler.plan(AdmissionRequest(model_id, prediction, target.value))

    # -- load, move, unload -----------------------------------------------------------------

    def load(self, model_id: str, tier: str | Tier | None = None) -> Future[ModelStatus]:
        """Load ``model_id`` into ``tier`` (default: :meth:`tier_for`) in the background.

        A model already loaded elsewhere is moved. Requests for the same load share one
        future; the result is the model's status, or the error (admission refusal, invalid
        file, load failure, :class:`Cancelled`) with its reason.
        """
        self._check_open()
        model = self._model(model_id)
        target = parse_tier(tier) if tier is not None else default_tier(model.entry)
        if target is Tier.DISK:
            return self.unload(model_id)
        with model.lock:
            if model.op is not None and not model.op.done():
                if model.op_target is target:
                    return model.op
                if model.op_target is Tier.DISK:
                    raise ModelInTransition(f"`{model_id}` is being unloaded; wait for it to finish, then load it")
                where = model.op_target.value if model.op_target is not None else "?"
                raise ModelInTransition(f"`{model_id}` is {model.state.value} (on its way to {where}); "
                                        "wait for it to finish, or unload it")
            if model.state == ModelState.READY and model.tier is target and model.runner is not None:
                done: Future[ModelStatus] = Future()
                done.set_result(model.status())
                return done
            token = CancelToken()
            model.op_target, model.op_token = target, token
            model.op = self._ops.submit(lambda: self._tasks.load(model, target, token), f"orin-load-{model_id}")
            return model.op

    def move(self, model_id: str, tier: str | Tier) -> Future[ModelStatus]:
        """Move a model to another tier (``disk`` unloads it); same as :meth:`load`."""
        return self.load(model_id, tier)

    def unload(self, model_id: str) -> Future[ModelStatus]:
        """Stop the model's runner (its memory really comes back) in the background.

        A load or move in progress is cancelled (its starting runner is killed and its
        reservation released), so an unload asked for during a load always wins. Also used
        for models just removed from the catalog.
        """
        self._check_open()
        with self._lock:
            model = self._models.get(model_id)
        if model is None:
            raise ModelUnavailable(f"`{model_id}` is not in the catalog")
        with model.lock:
            previous = model.op if model.op is not None and not model.op.done() else None
            if previous is not None and model.op_target is Tier.DISK:
                return previous
            superseded = model.op_token if previous is not None else None
            model.op_target, model.op_token = Tier.DISK, None
            model.op = future = self._ops.submit(lambda: self._tasks.unload(model, previous),
                                                 f"orin-unload-{model_id}")
        if superseded is not None:  # outside the lock: cancelling kills the starting runner
            superseded.cancel(f"`{model_id}` was unloaded")
        return future

    # -- generation -------------------------------------------------------------------------

    def _ready_runner(self, model: ModelRuntime, timeout: float | None, cancel: CancelToken | None) -> None:
        if model.serving_runner() is not None:
            return  # warm: no file work, no plan
        with model.lock:  # a load or move under way: a generation takes whatever tier it reaches
            pending = model.op if model.op is not None and not model.op.done() else None
            if model.op_target is Tier.DISK:
                pending = None  # an unload: asking to load now is refused (ModelInTransition)
        try:
            if pending is not None:
                wait_for(pending, timeout, cancel)
                if model.serving_runner() is not None:
                    return
            wait_for(self.load(model.model_id), timeout, cancel)  # restarts a failed or unloaded model
        except Cancelled as exc:
            if cancel is not None and cancel.cancelled:
                raise  # this request was cancelled (its client went away)
            # the load it waited for was stopped (an unload won): not this client's doing
            raise ModelUnavailable(f"`{model.model_id}` could not serve: its load was stopped ({exc}); "
                                   "ask again to restart it") from None
        if model.serving_runner() is None:
            raise ModelUnavailable(f"`{model.model_id}` is not loaded: {model.unavailable_reason()}")

    def generate(self, model_id: str, request: GenerateRequest, *,
                 load_timeout: float | None = None, request_id: str | None = None,
                 source: str = "core", route: object | None = None,
                 explanation: str | None = None, cancel: CancelToken | None = None) -> ManagedStream:
        """Generate with ``model_id``, loading (or restarting) it first when needed.

        One generation runs per model; up to ``queue_limit`` more wait their turn, and
        beyond that :class:`~orin_console.core.manager.types.ModelBusy` is raised at once.
        ``cancel`` ends a wait for the load or in the queue (raising :class:`Cancelled` and
        freeing the place) and, once generating, stops the generation within one token.

        Returns:
            A stream of chunks; the last has ``done=True`` and the stats.

        Raises:
            ModelBusy: the queue is full.
            Cancelled: ``cancel`` was cancelled while waiting.
            AdmissionRefused, GGUFError, RunnerError: the model could not be loaded.
        """
        self._check_open()
        model = self._model(model_id)
        for restart in (False, True):
            self._ready_runner(model, load_timeout, cancel)
            model.queue.acquire(cancel)
            if model.serving_runner() is not None:
                break
            model.queue.release()
            dead = model.runner
            if dead is not None and not dead.alive:
                dead.wait(5.0)  # its death is still being recorded (the model becomes failed)
            if restart or model.state != ModelState.FAILED:
                raise ModelUnavailable(f"`{model_id}` stopped: {model.unavailable_reason()}; ask again to restart it")
            # Its runner died while this request waited in the queue: the request did not
            # start, so it restarts the model once, as a new request would (found by
            # stress.faults: queued clients got the death of a generation not theirs).
        try:
            runner = model.serving_runner()
            if runner is None:
                raise ModelUnavailable(f"`{model_id}` stopped: {model.unavailable_reason()}; ask again to restart it")
            generation = runner.generate(request)
        except BaseException:
            model.queue.release()
            raise
        report = GenerationReport(self.bus, self.usage, model_id, request_id or new_request_id(),
                                  after=lambda: self._after_use(model))
        report.started(source, route, explanation)
        self._publish_state(model)
        return ManagedStream(model, generation, report.on_chunk, report.on_end, cancel=cancel)

    def _after_use(self, model: ModelRuntime) -> None:
        self._measure_after_use(model)
        self._publish_state(model)

    def _measure_after_use(self, model: ModelRuntime) -> None:
        memory = self.recorder.measure(model.runner)
        if memory is None:
            return
        model.record_measurement(memory, keep_larger=True)
        reservation, total = model.reservation, model.measured_total()
        if reservation is None or total is None:
            return
        try:
            self.scheduler.measured(reservation, total)
        except AdmissionRefused as exc:  # it grew past its tier's budget while serving
            message = f"{exc}; `{model.model_id}` is unloaded to keep the tier within its budget"
            log.warning("%s", message)
            self.bus.publish(ManagerError(message=message))
            with contextlib.suppress(OrinError):  # an operation in progress ends it anyway
                self.unload(model.model_id)

    def cancel(self, model_id: str) -> bool:
        """Stop the model's generation in progress (within one token); whether there was one."""
        runner = self._model(model_id).runner
        return runner.cancel() if runner is not None else False

    def load_result(self, model_id: str) -> LoadResult | None:
        """What the model's runner reported at its last load (pinning, GPU layers, notes)."""
        return self._model(model_id).load_result


_EMPTY_PREDICTION = Prediction(weights=0, kv_cache=0, compute=0, overhead=0, tier=Tier.SWAP.value, n_ctx=0,
                               basis="model", compute_at_load=0, details={})
