"""The placement plan against a live manager: gather the facts, apply the moves, and the
optional auto-optimiser that does both periodically.

:func:`plan_for` reads the manager (catalog, residency, usage, sizes from admission's
prediction or the runner's measurement) and calls
:func:`~orin_console.core.placement.plan.compute_plan`. :func:`apply` carries a plan out move by
move in a safe order (unloads, then demotions, then promotions, then loads), each asked of the
manager's scheduler (the one owner of memory decisions; nothing here pre-checks), so a tier
never goes over its budget: a move that does not fit now is refused with admission's itemised
reason and the rest go on. A model that is generating is
never unloaded (its answer would be cut off), and a model that is loading or moving is left
alone for that round.

:class:`AutoOptimiser` recomputes the plan every ``interval_s`` seconds, publishes
:class:`~orin_console.core.events.kinds.PlanChanged` when it changes, and applies it only
when enabled. It is **off by default**: the operator turns it on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orin_console.core.errors import OrinError
from orin_console.core.events.kinds import ManagerError, PlanChanged
from orin_console.core.manager.types import ModelState, ModelStatus
from orin_console.core.memory.admission import AdmissionRefused
from orin_console.core.placement.plan import ModelFacts, Move, Plan, PlanPolicy, compute_plan
from orin_console.core.tier import LOADED_TIERS, Tier
from orin_console.core.units import format_size

if TYPE_CHECKING:
    from orin_console.core.manager.manager import Manager
    from orin_console.core.settings import Settings

log = logging.getLogger(__name__)


def current_tier(status: ModelStatus | None) -> str:
    """Where a model is for planning: a load or move in progress counts as done."""
    if status is None:
        return Tier.DISK
    if status.state in (ModelState.LOADING, ModelState.MOVING) and status.target_tier:
        return status.target_tier
    if status.state == ModelState.READY and status.tier in LOADED_TIERS:
        return status.tier
    return Tier.DISK


def gather(manager: Manager) -> list[ModelFacts]:
    """Every catalog model's facts: tier now, decayed usage, size per loaded tier, pin."""
    statuses = {m.model_id: m for m in manager.status().models}
    usage = manager.usage.snapshot()
    limit = manager.budgets.max_model
    facts = []
    for entry in manager.catalog:
        status = statuses.get(entry.id)
        sizes: dict[str, int] = {}
        problem = None
        for tier in LOADED_TIERS:
            if status is not None and status.state == ModelState.READY and status.tier == tier:
                sizes[tier] = max(status.predicted_bytes or 0, status.measured_bytes or 0)
                continue
            try:
                sizes[tier] = manager.prediction(entry.id, tier).total
            except OrinError as exc:  # an unreadable or missing file
                problem = str(exc)
                break
        if problem is None and sizes and min(sizes.values()) > limit:
            problem = (f"needs {format_size(min(sizes.values()))}, over the per-model maximum of "
                       f"{format_size(limit)}")
        record = usage.get(entry.id)
        facts.append(ModelFacts(
            model_id=entry.id, tier=current_tier(status), demand=record.count if record else 0.0,
            sizes=sizes, pinned=entry.pin, preferred=entry.tier, priority=entry.priority,
            problem=problem,
        ))
    return facts


def plan_for(manager: Manager, *, previous: Plan | None = None, policy: PlanPolicy | None = None,
             now: float | None = None) -> Plan:
    """The placement plan for the manager's models now (nothing is changed).

    Sizes come from the manager's prediction cache: one GGUF header read per model file
    (tens of milliseconds for the demo models), none while the file is unchanged.
    """
    return compute_plan(gather(manager), manager.budgets, previous=previous, policy=policy, now=now)


@dataclass(frozen=True)
class MoveOutcome:
    """What happened to one move.

    Attributes:
        move: the move.
        status: ``done``, ``skipped`` (busy, in transition, or stale), ``refused`` (admission
            said no: it does not fit now) or ``failed`` (the load itself failed).
        detail: why, in operator words.
        seconds: how long it took.
    """

    move: Move
    status: str
    detail: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the move was made."""
        return self.status == "done"

    def describe(self) -> str:
        """One line."""
        return f"{self.move.kind} {self.move.model_id} {self.move.from_tier} → {self.move.to_tier}: " \
               f"{self.status} ({self.detail})"


def _obstacle(manager: Manager, move: Move) -> MoveOutcome | None:
    """Why a move must be skipped now, or None."""
    try:
        status = manager.model_status(move.model_id)
    except OrinError as exc:
        return MoveOutcome(move, "skipped", str(exc))
    if status.state in (ModelState.LOADING, ModelState.MOVING, ModelState.UNLOADING):
        return MoveOutcome(move, "skipped", f"{status.state.value} now; left alone this round")
    tier = current_tier(status)
    if tier != move.from_tier:
        return MoveOutcome(move, "skipped", f"stale: it is in {tier} now, not {move.from_tier}")
    if move.to_tier == Tier.DISK and (status.busy or status.queued):
        return MoveOutcome(move, "skipped", "generating; unloading now would cut the answer off")
    return None


def apply(manager: Manager, plan: Plan, *, timeout: float = 300.0) -> list[MoveOutcome]:
    """Carry out the plan's moves in order, each decided by the manager's scheduler.

    Args:
        manager: the manager.
        plan: a plan computed for this manager (its moves are from the residency then).
        timeout: seconds to wait for each load or move.

    Returns:
        One outcome per move, in the order they were tried.
    """
    outcomes = []
    for move in plan.moves:
        outcome = _obstacle(manager, move)
        if outcome is None:
            began = time.perf_counter()
            try:
                manager.move(move.model_id, move.to_tier).result(timeout)
                seconds = time.perf_counter() - began
                outcome = MoveOutcome(move, "done", f"in {seconds:.1f} s", seconds)
            except AdmissionRefused as exc:  # it does not fit now: nothing was started
                outcome = MoveOutcome(move, "refused", str(exc), time.perf_counter() - began)
            except FutureTimeout:
                outcome = MoveOutcome(move, "failed", f"did not finish within {timeout:.0f} s",
                                      time.perf_counter() - began)
            except OrinError as exc:
                outcome = MoveOutcome(move, "failed", str(exc), time.perf_counter() - began)
        log.info("plan: %s", outcome.describe())
        outcomes.append(outcome)
    return outcomes


def _shape(plan: Plan) -> tuple[object, ...]:
    """What makes two plans different for an operator (not the decayed figures in reasons)."""
    return (tuple(plan.placements.items()),
            tuple((m.model_id, m.from_tier, m.to_tier) for m in plan.moves))


class AutoOptimiser:
    """Recompute the plan periodically; publish changes; apply it when enabled.

    Args:
        manager: the manager.
        interval_s: seconds between rounds.
        enabled: apply the plan each round (off by default: the plan is only computed and
            published until the operator turns this on).
        policy: the plan's thresholds and hysteresis.
        apply_timeout: seconds to wait for each move.
        clock: wall-clock source (tests pass a fake).
    """

    def __init__(self, manager: Manager, *, interval_s: float = 300.0, enabled: bool = False,
                 policy: PlanPolicy | None = None, apply_timeout: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.manager = manager
        self.interval_s = interval_s
        self.enabled = enabled
        self.policy = policy or PlanPolicy()
        self.apply_timeout = apply_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: Plan | None = None
        self.last_outcomes: tuple[MoveOutcome, ...] = ()

    @classmethod
    def from_settings(cls, manager: Manager, settings: Settings) -> AutoOptimiser:
        """The optimiser as the settings ask (``auto_optimise``, ``auto_optimise_interval_s``)."""
        return cls(manager, interval_s=settings.auto_optimise_interval_s, enabled=settings.auto_optimise)

    def run_once(self) -> tuple[Plan, list[MoveOutcome]]:
        """One round: compute the plan, publish it if it changed, apply it if enabled."""
        with self._lock:
            previous = self.latest
            plan = plan_for(self.manager, previous=previous, policy=self.policy, now=self._clock())
            self.latest = plan
            if previous is None or _shape(plan) != _shape(previous):
                self.manager.bus.publish(PlanChanged(plan=plan))
            outcomes = apply(self.manager, plan, timeout=self.apply_timeout) \
                if self.enabled and plan.moves else []
            if outcomes:
                self.last_outcomes = tuple(outcomes)
            return plan, outcomes

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception as exc:
                log.exception("auto-optimise round failed")
                self.manager.bus.publish(ManagerError(message=f"auto-optimise round failed: {exc}"))

    def start(self) -> AutoOptimiser:
        """Start the background rounds (the first after ``interval_s``)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="orin-auto-optimise", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the rounds (a round in progress finishes first, up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> AutoOptimiser:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
