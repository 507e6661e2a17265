"""The scheduler: the one owner of memory decisions (DESIGN.md, "The core as a service").

Every load, tier move, restart, preload and plan step asks :meth:`Scheduler.reserve` before
a runner starts; nothing else decides. The decision itself is admission's pure rule
(:func:`~orin_console.core.memory.admission.plan_load`); the scheduler feeds it the
reservations as residents and serialises decide-and-reserve under one lock (the loads
themselves run in parallel, outside it).

A :class:`Reservation` counts a runner's memory from the moment it is admitted: its
prediction until it is measured, then the larger of prediction and measurement, but never past
its tier's budget: a runner measured bigger than its tier can hold is refused
(:class:`AdmissionRefused`) and stopped by the caller. While a load
is in flight its memory is not yet visible in ``MemAvailable``, so the scheduler subtracts
in-flight reservations from the machine's figure before deciding. A move reserves in the
target tier while the old runner still holds its own reservation (make-before-break); the
old one is released when the old runner stops. A reservation is released when its load fails
or is cancelled and when its model is unloaded or its runner dies.

Invariant at every moment: each tier's reserved bytes <= its budget, and (for memory that
is not yet visible) the total fits what the machine has minus the reserve.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

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
from orin_console.core.tier import LOADED_TIERS, Tier, parse_tier
from orin_console.core.units import format_size

__all__ = ["Reservation", "Reserved", "Scheduler"]


def _over_budget(reservation: Reservation, measured: int, free: int, budget: int) -> Decision:
    """The refusal of a runner that measures more than its tier can hold."""
    label = reservation.tier.label
    summary = (f"`{reservation.model_id}` measures {format_size(measured)} in the {label}, more than the "
               f"{format_size(reservation.predicted)} predicted, and does not fit: it was stopped")
    return Decision(ok=False, model_id=reservation.model_id, tier=reservation.tier.value, action="load",
                    needed={"total": measured}, free={"tier": free},
                    reasons=(f"{label} has {format_size(free)} free of its {format_size(budget)} budget",
                             "later predictions of this model include the measurement"),
                    summary=summary)


class Reservation:
    """Memory held for one runner (loading, moving or loaded); changed only by the scheduler.

    Attributes:
        model_id: the model.
        tier: the tier it counts against (``ram`` or ``swap``).
        predicted: admission's prediction, bytes.
        file_backed: the part of the prediction that is clean mapped file pages.
        measured: the runner's measured bytes, once measured.
        in_flight: its memory is not yet visible in the machine's ``MemAvailable``.
    """

    __slots__ = ("file_backed", "in_flight", "measured", "model_id", "predicted", "tier")

    def __init__(self, model_id: str, tier: Tier, predicted: int, file_backed: int) -> None:
        self.model_id = model_id
        self.tier = tier
        self.predicted = predicted
        self.file_backed = file_backed
        self.measured: int | None = None
        self.in_flight = True

    @property
    def bytes(self) -> int:
        """What it counts: the prediction until measured, then the larger of the two."""
        return max(self.predicted, self.measured or 0)

    def __repr__(self) -> str:
        state = "in flight" if self.in_flight else "loaded"
        return f"Reservation({self.model_id!r}, {self.tier.value}, {self.bytes} B, {state})"


@dataclass(frozen=True)
class Reserved:
    """A snapshot of one reservation (for status and tests)."""

    model_id: str
    tier: Tier
    bytes: int
    in_flight: bool


class Scheduler:
    """Decide and reserve memory for runners, one decision at a time.

    Args:
        budgets: the budgets in force (read at every decision: the operator may change them).
        machine_memory: the machine's memory now (``MemAvailable``, free swap).
        pinned: whether a model is pinned (never suggested for a move or an unload).
        busy: whether a model is generating now (said in suggestions).
        on_change: called with every reservation after each change, under the
            scheduler's lock (so calls arrive in order); it must not block or call back.
    """

    def __init__(
        self,
        budgets: Callable[[], Budgets],
        machine_memory: Callable[[], MachineMemory],
        *,
        pinned: Callable[[str], bool] = lambda _mid: False,
        busy: Callable[[str], bool] = lambda _mid: False,
        on_change: Callable[[tuple[Reserved, ...]], None] | None = None,
    ) -> None:
        self._budgets = budgets
        self._machine_memory = machine_memory
        self._pinned = pinned
        self._busy = busy
        self._on_change = on_change
        self._lock = threading.Lock()
        self._held: list[Reservation] = []

    # -- decisions ---------------------------------------------------------------------------

    def _residents(self) -> list[Resident]:
        residents = []
        for r in self._held:
            file_backed = min(r.file_backed, r.bytes) if r.tier is Tier.SWAP else 0
            residents.append(Resident(r.model_id, r.tier.value, r.bytes, pinned=self._pinned(r.model_id),
                                      busy=self._busy(r.model_id), file_backed=file_backed))
        return residents

    def _machine(self) -> MachineMemory:
        """The machine's memory less what in-flight reservations will take (not yet visible)."""
        machine = self._machine_memory()
        pending = sum(r.bytes for r in self._held if r.in_flight)
        if pending == 0:
            return machine
        from_ram = min(pending, max(0, machine.mem_available))
        from_swap = min(pending - from_ram, max(0, machine.swap_free))
        return MachineMemory(mem_available=machine.mem_available - from_ram - (pending - from_ram - from_swap),
                             swap_free=machine.swap_free - from_swap,
                             mem_total=machine.mem_total, swap_total=machine.swap_total)

    def plan(self, request: AdmissionRequest) -> Decision:
        """The dry run: what :meth:`reserve` would decide now (nothing is reserved)."""
        with self._lock:
            return plan_load(request, self._residents(), self._budgets(), self._machine())

    def reserve(self, request: AdmissionRequest, *, file_backed: int = 0) -> tuple[Reservation, Decision]:
        """Admit and reserve a load (or move) into ``request.tier``.

        Args:
            request: the model, its prediction and the target tier (``ram`` or ``swap``).
            file_backed: the prediction's clean mapped file pages (swap tier weights).

        Returns:
            The reservation (release it with :meth:`release`) and admission's decision.

        Raises:
            AdmissionRefused: it does not fit; the decision itemises why.
            ValueError: the disk tier, or a model that already holds the target tier.
        """
        tier = parse_tier(request.tier)
        if tier not in LOADED_TIERS:
            raise ValueError("the disk tier holds no memory; unload instead of reserving")
        with self._lock:
            if any(r.model_id == request.model_id and r.tier is tier for r in self._held):
                raise ValueError(f"`{request.model_id}` already holds the {tier.label}")
            decision = admit(request, self._residents(), self._budgets(), self._machine())
            reservation = Reservation(request.model_id, tier, request.prediction.total, file_backed)
            self._held.append(reservation)
            self._changed()
        return reservation, decision

    # -- bookkeeping -------------------------------------------------------------------------

    def settle(self, reservation: Reservation, measured: int | None) -> None:
        """The runner has loaded: its memory is now visible to the machine; record its size.

        Raises:
            AdmissionRefused: ``measured`` is more than was reserved and the tier's budget
                cannot hold the difference; nothing changed (see :meth:`measured`).
        """
        with self._lock:
            if measured is not None and measured > 0:
                self._grow(reservation, measured)
            reservation.in_flight = False
            if reservation in self._held:
                self._changed()

    def measured(self, reservation: Reservation, measured: int) -> None:
        """A measurement (after load or after use): the reservation grows when the runner did.

        A reservation grows only within its tier's budget: the invariant holds even when a
        prediction was wrong. A runner that measures more than its tier can hold is refused
        here, nothing changes, and the caller stops it (the load fails, or the model is
        unloaded after use) with the reason.

        Raises:
            AdmissionRefused: the growth does not fit the tier's budget.
        """
        with self._lock:
            if self._grow(reservation, measured):
                self._changed()

    def _grow(self, reservation: Reservation, measured: int) -> bool:
        """Record ``measured`` (the lock held); whether the reservation's bytes changed."""
        if measured <= (reservation.measured or 0):
            return False
        before = reservation.bytes
        after = max(reservation.predicted, measured)
        if after > before and reservation in self._held:
            budget = self._budgets().of(reservation.tier)
            others = sum(r.bytes for r in self._held if r.tier is reservation.tier and r is not reservation)
            if others + after > budget:
                raise AdmissionRefused(_over_budget(reservation, measured, budget - others, budget))
        reservation.measured = measured
        return reservation.bytes != before and reservation in self._held

    def release(self, reservation: Reservation | None) -> None:
        """Give the reservation back (the load failed or was cancelled, the runner stopped).

        Releasing twice, or releasing None, is harmless.
        """
        if reservation is None:
            return
        with self._lock:
            if reservation in self._held:
                self._held.remove(reservation)
                self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self._snapshot())

    # -- views -------------------------------------------------------------------------------

    def _reserved(self) -> dict[Tier, int]:
        out = dict.fromkeys(LOADED_TIERS, 0)
        for r in self._held:
            out[r.tier] += r.bytes
        return out

    def reserved(self) -> dict[Tier, int]:
        """Reserved bytes per loaded tier (loading, moving and loaded runners)."""
        with self._lock:
            return self._reserved()

    def _snapshot(self) -> tuple[Reserved, ...]:
        return tuple(Reserved(r.model_id, r.tier, r.bytes, r.in_flight) for r in self._held)

    def reservations(self) -> tuple[Reserved, ...]:
        """Every reservation now, oldest first."""
        with self._lock:
            return self._snapshot()

    def in_flight(self) -> int:
        """Bytes reserved by loads and moves whose memory is not yet visible to the machine."""
        with self._lock:
            return sum(r.bytes for r in self._held if r.in_flight)
