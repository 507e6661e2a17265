"""The manager: the one facade the TUI, the API and the CLI use.

It owns every decision about models: the catalog (watched on disk), admission control before
any runner starts, loads and tier moves in the background (never blocking the caller; two
requests for the same load share it), unloads, pins, generation with a bounded queue per
model, usage records, and typed events for front ends. Each loaded model runs in its own
runner process, so a crash loses one model, never the console.

    with Manager(load_settings()) as manager:
        manager.load("smollm2").result()          # a Future; progress arrives as events
        for chunk in manager.generate("smollm2", GenerateRequest(prompt="Hi")):
            print(chunk.text, end="")
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psutil

from orin_console.core.memory.admission import (
    AdmissionRefused,
    AdmissionRequest,
    Budgets,
    Decision,
    MachineMemory,
    Resident,
    admit,
    plan_load,
)
from orin_console.core.catalog.store import Catalog, CatalogStore
from orin_console.core.errors import CatalogError, OrinError
from orin_console.core.events.bus import EventBus
from orin_console.core.gguf import read_gguf
from orin_console.core.catalog.add import AddResult, add_models
from orin_console.core.manager.types import ModelState, ModelStatus, ModelUnavailable, SystemStatus, TierUsage
from orin_console.core.memory.measurements import Corrections, model_identity
from orin_console.core.memory.prediction import GB, Prediction, predict
from orin_console.core.events.kinds import (
    CatalogChanged,
    GenerationFinished,
    GenerationStarted,
    LoadProgress,
    ManagerError,
    ModelStateChanged,
    TokenGenerated,
)
from orin_console.core.runner import Chunk, GenerateRequest, LoadResult, Runner, RunnerDied, SpareRunners, tier_config
from orin_console.core.settings import Settings
from orin_console.core.manager.model import ManagedStream, Slot, memory_total
from orin_console.core.telemetry import Sampler
from orin_console.core.telemetry.process import ProcessGone, ProcessMemory, measure_process
from orin_console.core.placement.usage import UsageTracker

log = logging.getLogger(__name__)

_request_ids = itertools.count(1)


def new_request_id() -> str:
    """A request id unique in this console run ("r1", "r2", ...)."""
    return f"r{next(_request_ids)}"

LOADED_TIERS = ("ram", "swap")


def _machine_memory() -> MachineMemory:
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    return MachineMemory(mem_available=vm.available, swap_free=sw.free,
                         mem_total=vm.total, swap_total=sw.total)


def _probe_gpu_offload(python: str) -> bool:
    """Whether this llama.cpp build offloads to a GPU, asked in a throw-away process.

    The console itself never imports llama.cpp (on a Jetson that would initialise CUDA in
    the console process).
    """
    code = "import llama_cpp, sys; sys.stdout.write(str(int(llama_cpp.llama_supports_gpu_offload())))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "1"


class Manager:
    """Thread-safe facade over the catalog, admission control and the runners.

    Args:
        settings: budgets, reserve, catalog path, state folder.
        bus: the event bus to publish on (a new one by default).
        budgets: override the budgets from ``settings`` (tests).
        machine_memory: where ``MemAvailable`` and free swap come from (tests pass a fake).
        runner_env: extra environment for every runner (e.g. test hooks).
        n_threads: decode threads per runner (None: llama-cpp-python's default).
        queue_limit: generations that may wait per model before "busy".
        watch_interval_s: how often the catalog file is checked for edits (0: never).
        gpu_offload: whether the llama.cpp build offloads to a GPU; None asks it once.
        telemetry: a telemetry sampler whose latest sample gives each runner's GPU memory
            (jtop's per-process figures on a Jetson, NVML on a desktop GPU); without one,
            runners are measured from /proc alone.
        spare_runner: keep one warm runner process (llama_cpp imported, no model, ~40 MB) so
            loads and tier moves skip the Python start and import.
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
        self._n_threads = n_threads
        self._queue_limit = queue_limit
        self._watch_interval_s = watch_interval_s
        self._gpu_offload = gpu_offload
        self._telemetry = telemetry
        self._lock = threading.RLock()
        self._slots: dict[str, Slot] = {}
        self._verified: dict[tuple[str, int, int], str] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="orin-load")
        self._spares = SpareRunners(sys.executable, (), self._runner_env) if spare_runner else None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._closed = False
        self._sync_catalog(self.store.load())

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Manager:
        """Start watching the catalog file for edits (a bad edit is refused, the last good stays)."""
        if self._watch_interval_s > 0 and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="orin-catalog-watch", daemon=True)
            self._watcher.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop every runner (their memory comes back), save usage, stop the watcher."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            runner = slot.runner
            if runner is not None:
                runner.cancel()
                runner.shutdown(timeout=timeout / 2)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._spares is not None:
            self._spares.close()
        if self._watcher is not None:
            self._watcher.join(timeout)
        try:
            self.usage.save()
        except OSError as exc:
            log.warning("could not save usage to %s: %s", self.usage.path, exc)

    def __enter__(self) -> Manager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def remove_model(self, model_id: str) -> None:
        """Unload (if loaded) and remove a model from the catalog; the file stays."""
        self.unload(model_id).result()
        self._catalog_changed(self.store.remove(model_id))

    def pin(self, model_id: str, pinned: bool = True) -> ModelStatus:
        """Pin (or unpin) a model: the usage-based plan keeps a pinned model in its tier."""
        self._catalog_changed(self.store.update(model_id, pin=pinned))
        return self.model_status(model_id)

    def _watch(self) -> None:
        while not self._stop.wait(self._watch_interval_s):
            try:
                catalog = self.store.reload_if_changed()
            except CatalogError as exc:
                self.bus.publish(ManagerError(message=f"catalog edit refused: {exc}"))
                continue
            except OSError as exc:  # pragma: no cover - a vanished folder, say
                self.bus.publish(ManagerError(message=f"cannot read the catalog: {exc}"))
                continue
            if catalog is not None:
                try:
                    self._catalog_changed(catalog)
                except Exception as exc:  # noqa: BLE001 - the watcher must outlive any one edit
                    log.exception("applying the catalog edit failed")
                    self.bus.publish(ManagerError(message=f"applying the catalog edit failed: {exc}"))

    def _catalog_changed(self, catalog: Catalog) -> None:
        self._sync_catalog(catalog)
        self.bus.publish(CatalogChanged(model_ids=tuple(e.id for e in catalog)))

    def _sync_catalog(self, catalog: Catalog) -> None:
        with self._lock:
            for entry in catalog:
                slot = self._slots.get(entry.id)
                if slot is None:
                    self._slots[entry.id] = Slot(entry, self._queue_limit)
                else:
                    with slot.lock:
                        slot.entry = entry
            gone = [mid for mid in self._slots if mid not in catalog]
        for mid in gone:
            slot = self._slots[mid]
            slot.removed = True
            if slot.runner is not None:
                self.unload(mid)
            else:
                with self._lock:
                    self._slots.pop(mid, None)
            self.usage.forget(mid)

    def _slot(self, model_id: str) -> Slot:
        with self._lock:
            slot = self._slots.get(model_id)
        if slot is None or slot.removed:
            self.catalog.get(model_id)  # raises CatalogError naming the known ids
            raise ModelUnavailable(f"`{model_id}` was removed from the catalog")
        return slot

    # -- status -----------------------------------------------------------------------------

    def model_status(self, model_id: str) -> ModelStatus:
        """One model's status."""
        return self._slot(model_id).status()

    def status(self) -> SystemStatus:
        """Every model, each tier's use of its budget, and the machine's free memory."""
        with self._lock:
            models = tuple(slot.status() for slot in self._slots.values())
        tiers = []
        for tier in LOADED_TIERS:
            members = [m for m in models if m.tier == tier]
            used = sum(max(m.predicted_bytes or 0, m.measured_bytes or 0) for m in members)
            tiers.append(TierUsage(tier, self.budgets.of(tier), used, tuple(m.model_id for m in members)))
        machine = self._machine_memory()
        return SystemStatus(models, tuple(tiers), machine.mem_available, machine.swap_free,
                            self.budgets.reserve)

    def _publish_state(self, slot: Slot) -> None:
        self.bus.publish(ModelStateChanged(model_id=slot.entry.id, status=slot.status()))

    # -- admission --------------------------------------------------------------------------

    def _gpu_layers(self, tier: str) -> int:
        if tier != "ram":
            return 0
        if self._gpu_offload is None:
            self._gpu_offload = _probe_gpu_offload(sys.executable)
        return -1 if self._gpu_offload else 0

    def _predict(self, slot: Slot, tier: str) -> Prediction:
        path = self.catalog.model_path(slot.entry)
        info = read_gguf(path)
        slot.info = info
        n_gpu = self._gpu_layers(tier)
        return predict(
            info, slot.entry.context, tier,
            n_gpu_layers=n_gpu,
            corrections=self.corrections, identity=model_identity(path, slot.entry.sha256),
        )

    def _residents(self) -> list[Resident]:
        with self._lock:
            slots = list(self._slots.values())
        residents = []
        for slot in slots:
            with slot.lock:
                if slot.runner is None or slot.tier not in LOADED_TIERS:
                    continue
                predicted = slot.prediction.total if slot.prediction is not None else 0
                size = max(predicted, slot.measured_total() or 0)
                file_backed = 0
                if slot.tier == "swap" and slot.prediction is not None:
                    file_backed = int(slot.prediction.details.get("weights_tensors", 0))
                residents.append(Resident(slot.entry.id, slot.tier, size, pinned=slot.entry.pin,
                                          busy=slot.generating, file_backed=file_backed))
        return residents

    def plan(self, model_id: str, tier: str | None = None) -> Decision:
        """Dry run: would loading (or moving) ``model_id`` into ``tier`` be admitted, and why?

        Nothing is loaded or changed. ``tier`` defaults to the catalog's preferred tier.
        """
        slot = self._slot(model_id)
        tier = tier or self._load_tier(slot)
        if tier == "disk":
            return plan_load(AdmissionRequest(model_id, _EMPTY_PREDICTION, "disk"),
                             self._residents(), self.budgets, self._machine_memory())
        self._check_tier(tier)
        prediction = self._predict(slot, tier)
        return plan_load(AdmissionRequest(model_id, prediction, tier), self._residents(),
                         self.budgets, self._machine_memory())

    @staticmethod
    def _check_tier(tier: str) -> None:
        if tier not in (*LOADED_TIERS, "disk"):
            raise OrinError(f"unknown tier '{tier}' (use ram, swap or disk)")

    # -- load, move, unload -----------------------------------------------------------------

    def load(self, model_id: str, tier: str | None = None) -> Future[ModelStatus]:
        """Load ``model_id`` into ``tier`` (default: its preferred tier) in the background.

        A model already loaded elsewhere is moved. Requests for the same load share one
        future; the result is the model's status, or the error (admission refusal, invalid
        file, load failure) with its reason.
        """
        slot = self._slot(model_id)
        tier = tier or self._load_tier(slot)
        self._check_tier(tier)
        if tier == "disk":
            return self.unload(model_id)
        with slot.lock:
            if slot.op is not None and not slot.op.done():
                if slot.op_target == tier:
                    return slot.op
                raise OrinError(
                    f"`{model_id}` is {slot.state.value} to {slot.op_target}; wait for it to finish"
                )
            if slot.state == ModelState.READY and slot.tier == tier and slot.runner is not None:
                done: Future[ModelStatus] = Future()
                done.set_result(slot.status())
                return done
            slot.op_target = tier
            slot.op = self._pool.submit(self._do_load, slot, tier)
            return slot.op

    @staticmethod
    def _load_tier(slot: Slot) -> str:
        """Where a load without a named tier goes: the preferred tier, or swap for a model
        whose catalog tier is ``disk`` (kept unloaded unless asked for)."""
        return slot.entry.tier if slot.entry.tier in LOADED_TIERS else "swap"

    def move(self, model_id: str, tier: str) -> Future[ModelStatus]:
        """Move a model to another tier (``disk`` unloads it); same as :meth:`load`."""
        return self.load(model_id, tier)

    def unload(self, model_id: str) -> Future[ModelStatus]:
        """Stop the model's runner (its memory really comes back) in the background.

        A load or move in progress finishes first, then the runner stops, so an unload asked
        for during a load always wins. Also used for models just removed from the catalog.
        """
        with self._lock:
            slot = self._slots.get(model_id)
        if slot is None:
            raise ModelUnavailable(f"`{model_id}` is not in the catalog")
        with slot.lock:
            in_progress = slot.op if slot.op is not None and not slot.op.done() else None
            if in_progress is not None and slot.op_target == "disk":
                return in_progress
            slot.op_target = "disk"
            slot.op = self._pool.submit(self._do_unload, slot, in_progress)
            return slot.op

    def _set(self, slot: Slot, **fields: object) -> None:
        with slot.lock:
            for key, value in fields.items():
                setattr(slot, key, value)
        self._publish_state(slot)

    def _verify_checksum(self, slot: Slot, path: Path) -> None:
        expected = slot.entry.sha256
        if not expected:
            return
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if self._verified.get(key) == expected:
            return
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise ModelUnavailable(
                f"`{slot.entry.id}`: {path} does not match the catalog's sha256 (the file changed "
                "or is corrupt); fetch it again or update sha256 in the catalog"
            )
        self._verified[key] = expected

    def _do_load(self, slot: Slot, tier: str) -> ModelStatus:
        mid = slot.entry.id
        moving = slot.runner is not None and slot.runner.alive and slot.state == ModelState.READY
        old_tier = slot.tier
        try:
            path = self.catalog.model_path(slot.entry)
            prediction = self._predict(slot, tier)  # validates the header first
            self._verify_checksum(slot, path)
            decision = admit(AdmissionRequest(mid, prediction, tier), self._residents(),
                             self.budgets, self._machine_memory())
        except AdmissionRefused as exc:
            self._refused(slot, exc)
            raise
        except OrinError as exc:
            self._fail(slot, exc, keep_running=moving)
            raise
        self._set(slot, state=ModelState.MOVING if moving else ModelState.LOADING,
                  target_tier=tier, progress=0.0, error=None)
        config = tier_config(tier, str(path), n_ctx=slot.entry.context, n_threads=self._n_threads,
                             gpu_offload=self._gpu_offload)
        started = time.monotonic()
        old = slot.runner if moving else None
        if old is not None and decision.strategy == "break-before-make":
            with slot.exclusive():
                old.shutdown()
            old = None
        runner = Runner(mid, config, env=self._runner_env, spares=self._spares,
                        on_exit=lambda r, died: self._on_runner_exit(slot, r, died))

        def progress(fraction: float) -> None:
            slot.progress = fraction
            self.bus.publish(LoadProgress(model_id=mid, tier=tier, fraction=fraction))

        try:
            result = runner.start(progress=progress)
        except OrinError as exc:
            self._fail(slot, exc, keep_running=old is not None)
            raise
        if old is not None:
            with slot.exclusive():  # in-flight generation on the old runner finishes first
                slot.runner = runner
            old.shutdown()
        seconds = time.monotonic() - started
        with slot.lock:
            slot.runner = runner
            slot.prediction = prediction
            slot.load_result = result
            slot.load_seconds = result.load_seconds
            if moving:
                slot.move_seconds_per_gb = seconds / max(path.stat().st_size / GB, 1e-9)
            slot.state, slot.tier, slot.target_tier, slot.progress = ModelState.READY, tier, None, None
        self._measure(slot, state="load")
        log.info("%s %s %s in %.2f s", mid, "moved to" if moving else "loaded into", tier, seconds)
        if moving:
            log.info("%s: move %s -> %s took %.3f s/GB", mid, old_tier, tier, slot.move_seconds_per_gb)
        self._publish_state(slot)
        return slot.status()

    def _do_unload(self, slot: Slot, previous: Future[ModelStatus] | None = None) -> ModelStatus:
        if previous is not None:
            try:
                previous.result()
            except Exception:  # noqa: BLE001 - its failure was reported; unloading goes on
                pass
        runner = slot.runner
        if runner is not None:
            self._set(slot, state=ModelState.UNLOADING, target_tier="disk")
            runner.cancel()
            runner.shutdown()
        with slot.lock:
            slot.runner, slot.state, slot.tier = None, ModelState.UNLOADED, "disk"
            slot.target_tier = slot.progress = slot.measured = None
            slot.error = None
        if slot.removed:
            with self._lock:
                self._slots.pop(slot.entry.id, None)
        self._publish_state(slot)
        return slot.status()

    def _fail(self, slot: Slot, exc: BaseException, *, keep_running: bool) -> None:
        message = str(exc)
        with slot.lock:
            slot.error = message
            slot.target_tier = slot.progress = None
            if not keep_running:
                slot.state, slot.tier, slot.runner = ModelState.FAILED, "disk", None
            else:
                slot.state = ModelState.READY
        self.bus.publish(ManagerError(message=message, model_id=slot.entry.id))
        self._publish_state(slot)

    def _refused(self, slot: Slot, exc: AdmissionRefused) -> None:
        """Admission said no: nothing was started, so the model stays as it was."""
        with slot.lock:
            slot.error = str(exc)
        self.bus.publish(ManagerError(message=str(exc), model_id=slot.entry.id))
        self._publish_state(slot)

    def _on_runner_exit(self, slot: Slot, runner: Runner, died: RunnerDied | None) -> None:
        if died is None:
            return
        with slot.lock:
            if slot.runner is not runner:
                return  # an old runner of a move, already replaced
        log.warning("%s", died)
        self._fail(slot, died, keep_running=False)

    def _measure_runner(self, slot: Slot) -> ProcessMemory | None:
        """The slot's runner measured from the OS (GPU bytes from the telemetry sample)."""
        runner = slot.runner
        if runner is None or runner.pid is None:
            return None
        sample = self._telemetry.latest() if self._telemetry is not None else None
        try:
            return measure_process(runner.pid, sample)
        except ProcessGone:
            return None

    def _measure(self, slot: Slot, state: str) -> None:
        prediction = slot.prediction
        memory = self._measure_runner(slot)
        if memory is None or prediction is None:
            return
        with slot.lock:
            slot.measured = memory
        path = self.catalog.model_path(slot.entry)
        try:
            self.corrections.record(model_identity(path, slot.entry.sha256), prediction,
                                    rss=memory.rss, uss=memory.uss, swap=memory.swap,
                                    gpu=memory.gpu, state=state)
        except (OSError, ValueError) as exc:
            log.warning("could not record the measurement of %s: %s", slot.entry.id, exc)

    # -- generation -------------------------------------------------------------------------

    def _ready_runner(self, slot: Slot, timeout: float | None) -> Runner:
        with slot.lock:
            runner = slot.runner
            ready = slot.state in (ModelState.READY, ModelState.MOVING) and runner is not None
        if ready and runner is not None and runner.alive:
            return runner
        self.load(slot.entry.id).result(timeout)  # restarts a failed or unloaded model
        with slot.lock:
            if slot.runner is None:
                raise ModelUnavailable(f"`{slot.entry.id}` is not loaded: {slot.error or 'unloaded'}")
            return slot.runner

    def generate(self, model_id: str, request: GenerateRequest, *,
                 load_timeout: float | None = None, request_id: str | None = None,
                 source: str = "core", route: object | None = None,
                 explanation: str | None = None) -> ManagedStream:
        """Generate with ``model_id``, loading (or restarting) it first when needed.

        One generation runs per model; up to ``queue_limit`` more wait their turn, and
        beyond that :class:`~orin_console.core.manager.types.ModelBusy` is raised at once.

        Returns:
            A stream of chunks; the last has ``done=True`` and the stats.

        Raises:
            ModelBusy: the queue is full.
            AdmissionRefused, GGUFError, RunnerError: the model could not be loaded.
        """
        slot = self._slot(model_id)
        self._ready_runner(slot, load_timeout)
        slot.acquire()
        try:
            runner = slot.runner
            if runner is None or not runner.alive:
                raise ModelUnavailable(f"`{model_id}` stopped: {slot.error or 'unloaded'}; ask again to restart it")
            generation = runner.generate(request)
        except BaseException:
            slot.release()
            raise
        rid = request_id or new_request_id()
        publish = self.bus.publish
        publish(GenerationStarted(request_id=rid, source=source, model_id=model_id, route=route,
                                  explanation=explanation))
        has_watchers = self.bus.subscriber_count > 0

        def on_chunk(chunk: Chunk) -> None:
            if chunk.text and has_watchers:
                publish(TokenGenerated(request_id=rid, model_id=model_id, text=chunk.text))
            if chunk.done and chunk.stats is not None:
                stats = chunk.stats
                self.usage.record(model_id, tokens=stats.tokens, ttft_s=stats.ttft_s, tok_per_s=stats.tok_per_s)
                publish(GenerationFinished(request_id=rid, model_id=model_id, tokens=stats.tokens, ttft_s=stats.ttft_s,
                                           tok_per_s=stats.tok_per_s, finish_reason=stats.finish_reason))

        def on_end() -> None:
            self._measure_after_use(slot)
            self._publish_state(slot)

        self._publish_state(slot)
        return ManagedStream(slot, generation, on_chunk, on_end)

    def _measure_after_use(self, slot: Slot) -> None:
        memory = self._measure_runner(slot)
        if memory is None:
            return
        with slot.lock:
            if memory_total(memory) > (slot.measured_total() or 0):
                slot.measured = memory

    def cancel(self, model_id: str) -> bool:
        """Stop the model's generation in progress (within one token); whether there was one."""
        runner = self._slot(model_id).runner
        return runner.cancel() if runner is not None else False

    def load_result(self, model_id: str) -> LoadResult | None:
        """What the model's runner reported at its last load (pinning, GPU layers, notes)."""
        return self._slot(model_id).load_result


_EMPTY_PREDICTION = Prediction(weights=0, kv_cache=0, compute=0, overhead=0, tier="swap", n_ctx=0,
                               basis="model", compute_at_load=0, details={})
