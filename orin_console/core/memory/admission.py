"""Admission control: may this model go into this tier now? Decided before any runner starts.

Pure functions over a snapshot: the request (model, :class:`~orin_console.core.memory.prediction.Prediction`,
target tier), the resident models, the budgets and the machine's memory. Nothing here
loads, measures or changes anything, so :func:`plan_load` (the dry run) and :func:`admit`
(the check before a load) always agree.

A load into tier ``T`` is admitted when its predicted total fits all three limits:

1. the per-model maximum (``max_model_gb``);
2. tier ``T``'s free budget: its budget minus the bytes of the models resident in it;
3. the machine: ``MemAvailable`` (plus free swap for the swap tier) minus the reserve.

**Moves are make-before-break.** DESIGN.md asks that a move keep the model available as long
as possible, so the new runner starts while the old one still serves: the machine must hold
both for a moment, and the whole prediction is checked against what is available now. The
model's bytes leave its old tier's budget (they never counted against the new one). When
only break-before-make fits the machine (the old runner stops first and gives back its
non-file memory), the move is admitted that way and the decision says the model will be
unavailable while it restarts.

**Suggestions** consider one action on one non-pinned resident at a time: moving it to the
other tier (preferred: it stays available) or unloading it. An action "would" help when,
after it, every limit holds. A move changes tier budgets only: the moved runner still holds
its memory until the kernel pages it out, so a move never counts as freeing machine memory.
Pinned models are never suggested; the text says they are pinned. When no single action is
enough, the smallest set of unloads found greedily is named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from orin_console.core.errors import OrinError
from orin_console.core.memory.prediction import Prediction
from orin_console.core.tier import Tier
from orin_console.core.units import format_size

if TYPE_CHECKING:
    from orin_console.core.settings import Settings

__all__ = [
    "AdmissionRefused",
    "AdmissionRequest",
    "Budgets",
    "Decision",
    "Limit",
    "MachineMemory",
    "Resident",
    "Suggestion",
    "admit",
    "plan_load",
]

MAX_UNHELPFUL = 4
"""At most this many "would not help" suggestions are listed."""


@dataclass(frozen=True)
class Budgets:
    """The limits from the settings, in bytes."""

    ram: int
    swap: int
    max_model: int
    reserve: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Budgets:
        """Take the budgets from :class:`~orin_console.core.settings.Settings`."""
        return cls(
            ram=settings.ram_budget_bytes,
            swap=settings.swap_budget_bytes,
            max_model=settings.max_model_bytes,
            reserve=settings.reserve_bytes,
        )

    def of(self, tier: str | Tier) -> int:
        """The budget of a loaded tier."""
        return self.ram if tier == Tier.RAM else self.swap


@dataclass(frozen=True)
class MachineMemory:
    """The machine's memory now, in bytes (``/proc/meminfo`` or jtop)."""

    mem_available: int
    swap_free: int
    mem_total: int | None = None
    swap_total: int | None = None


@dataclass(frozen=True)
class Resident:
    """A loaded model.

    Attributes:
        model_id: catalog id.
        tier: ``"ram"`` or ``"swap"``.
        bytes: what it occupies (measured, else predicted).
        pinned: the operator pinned it: never suggested for a move or an unload.
        busy: it is generating now (an unload or move waits for, or stops, that).
        file_backed: the part of ``bytes`` that is clean mapped file pages (the weights of
            a CPU runner), which ``MemAvailable`` already counts as reclaimable; ending the
            runner gives back only ``bytes - file_backed`` to the machine.
    """

    model_id: str
    tier: str
    bytes: int
    pinned: bool = False
    busy: bool = False
    file_backed: int = 0

    @property
    def frees(self) -> int:
        """Machine memory that ending this runner gives back."""
        return max(0, self.bytes - self.file_backed)


@dataclass(frozen=True)
class AdmissionRequest:
    """Load (or move) ``model_id`` into ``tier`` (``"disk"``: unload it)."""

    model_id: str
    prediction: Prediction
    tier: str


@dataclass(frozen=True)
class Limit:
    """One limit checked: what is needed against what is available (bytes)."""

    name: str
    """``"max_model"``, ``"tier"`` or ``"machine"``."""
    needed: int
    available: int
    text: str
    """The limit in operator words, e.g. "RAM tier has 1.2 GB free of its 5.0 GB budget"."""

    @property
    def ok(self) -> bool:
        """Whether the need fits."""
        return self.needed <= self.available


@dataclass(frozen=True)
class Suggestion:
    """One action on one other resident model, and whether it would make the load fit."""

    action: str
    """``"move"`` or ``"unload"``."""
    model_id: str
    from_tier: str
    to_tier: str | None
    helps: bool
    text: str


@dataclass(frozen=True)
class Decision:
    """The answer of admission control (a plan or an admitted load).

    Attributes:
        ok: whether the load (or move) may go ahead.
        model_id: the model asked about.
        tier: the target tier.
        action: ``"load"``, ``"move"``, ``"noop"`` (already there) or ``"unload"``.
        needed: bytes per component of the prediction, plus ``"total"``.
        free: ``"tier"``: the target tier's free budget; ``"machine"``: what the machine
            has for it after the reserve (both bytes; absent for unloads and no-ops).
        limits: every limit checked.
        reasons: the failed limits, in operator words (empty when ``ok``).
        suggestions: single moves or unloads, helpful ones first.
        together: models whose joint unload would make it fit, when no single action does.
        pinned: pinned models that were not considered.
        strategy: for moves, ``"make-before-break"`` or ``"break-before-make"``.
        frees: for unloads, the bytes given back to the tier.
        from_tier: where the model is now (None when not loaded).
        summary: the first clause of :meth:`explain`.
    """

    ok: bool
    model_id: str
    tier: str
    action: str
    needed: Mapping[str, int] = field(default_factory=dict)
    free: Mapping[str, int] = field(default_factory=dict)
    limits: tuple[Limit, ...] = ()
    reasons: tuple[str, ...] = ()
    suggestions: tuple[Suggestion, ...] = ()
    together: tuple[str, ...] = ()
    pinned: tuple[str, ...] = ()
    strategy: str | None = None
    frees: int = 0
    from_tier: str | None = None
    summary: str = ""

    def explain(self) -> str:
        """The decision as one line of text (DESIGN.md's itemised refusal)."""
        if self.ok:
            shown = [lim.text for lim in self.limits if lim.name != "max_model"]
            return "; ".join([self.summary, *shown]) + "."
        parts = [self.summary, *self.reasons, *(s.text for s in self.suggestions)]
        if self.together:
            parts.append(f"unloading {_names(self.together)} together would")
        elif not any(s.helps for s in self.suggestions):
            parts.append("no single move or unload of an unpinned model would make it fit")
        if self.pinned:
            verb = "is" if len(self.pinned) == 1 else "are"
            parts.append(f"{_names(self.pinned)} {verb} pinned")
        return "; ".join(parts) + "."


class AdmissionRefused(OrinError):
    """A load was refused; :attr:`decision` carries the itemised reasons."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(decision.explain())


def _names(ids: Sequence[str]) -> str:
    quoted = [f"`{i}`" for i in ids]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _limits(
    total: int, tier: str, others: Sequence[Resident], budgets: Budgets,
    machine: MachineMemory, *, tier_delta: int = 0, machine_delta: int = 0,
) -> tuple[Limit, ...]:
    used = sum(r.bytes for r in others if r.tier == tier)
    budget = budgets.of(tier)
    tier_free = budget - used + tier_delta
    name = Tier(tier).label
    swap = machine.swap_free if tier == Tier.SWAP else 0
    machine_free = machine.mem_available + swap - budgets.reserve + machine_delta
    source = f"MemAvailable {format_size(machine.mem_available)}"
    if tier == Tier.SWAP:
        source += f" + free swap {format_size(machine.swap_free)}"
    return (
        Limit("max_model", total, budgets.max_model,
              f"over the per-model maximum of {format_size(budgets.max_model)}"),
        Limit("tier", total, tier_free,
              f"{name} has {format_size(max(0, tier_free))} free of its {format_size(budget)} budget"),
        Limit("machine", total, machine_free,
              f"the machine has {format_size(max(0, machine_free))} available "
              f"({source} minus the {format_size(budgets.reserve)} reserve)"),
    )


def _other(tier: str) -> str:
    return Tier(tier).other.value


def _suggest(
    total: int, tier: str, others: Sequence[Resident], budgets: Budgets, machine: MachineMemory
) -> tuple[tuple[Suggestion, ...], tuple[str, ...]]:
    """Single actions on unpinned residents, and a joint unload when none suffices."""
    helpful: list[Suggestion] = []
    unhelpful: list[Suggestion] = []
    for r in sorted((r for r in others if not r.pinned), key=lambda r: r.bytes):
        rest = [o for o in others if o is not r]
        label = f"`{r.model_id}` ({r.tier}, {format_size(r.bytes)}{', busy' if r.busy else ''})"
        dest = _other(r.tier)
        dest_free = budgets.of(dest) - sum(o.bytes for o in rest if o.tier == dest)
        if dest == tier:
            move_ok = False  # it would compete with the request in the target tier
        else:
            moved = [*rest, Resident(r.model_id, dest, r.bytes)]
            move_ok = r.bytes <= dest_free and all(
                lim.ok for lim in _limits(total, tier, moved, budgets, machine)
            )
        unload_ok = all(
            lim.ok for lim in _limits(total, tier, rest, budgets, machine, machine_delta=r.frees)
        )
        if move_ok:
            helpful.append(Suggestion("move", r.model_id, r.tier, dest, True,
                                      f"moving {label} to {dest} would"))
        elif unload_ok:
            helpful.append(Suggestion("unload", r.model_id, r.tier, None, True,
                                      f"unloading {label} would"))
        else:
            unhelpful.append(Suggestion("unload", r.model_id, r.tier, None, False,
                                        f"unloading {label} would not help"))
    together: tuple[str, ...] = ()
    if not helpful:
        together = _joint_unload(total, tier, others, budgets, machine)
    helpful.sort(key=lambda s: s.action != "move")  # moves first: the model stays available
    return tuple(helpful + unhelpful[:MAX_UNHELPFUL]), together


def _joint_unload(
    total: int, tier: str, others: Sequence[Resident], budgets: Budgets, machine: MachineMemory
) -> tuple[str, ...]:
    """Greedily unload unpinned models (target tier first, largest first) until it fits."""
    if total > budgets.max_model:
        return ()
    order = sorted((r for r in others if not r.pinned), key=lambda r: (r.tier != tier, -r.bytes))
    rest = list(others)
    chosen: list[str] = []
    freed = 0
    for r in order:
        rest.remove(r)
        chosen.append(r.model_id)
        freed += r.frees
        if all(lim.ok for lim in _limits(total, tier, rest, budgets, machine, machine_delta=freed)):
            return tuple(chosen) if len(chosen) > 1 else ()
    return ()


def plan_load(
    request: AdmissionRequest,
    residents: Sequence[Resident],
    budgets: Budgets,
    machine: MachineMemory,
) -> Decision:
    """Decide whether a load (or move, or unload) may go ahead; changes nothing.

    Args:
        request: the model, its prediction and the target tier.
        residents: the models loaded now (the requested one included, if it is loaded).
        budgets: tier budgets, per-model maximum and reserve.
        machine: the machine's memory now.

    Returns:
        The decision, itemised. Never raises for a refusal: see :func:`admit`.

    Raises:
        ValueError: an unknown tier.
    """
    tier, mid = request.tier, request.model_id
    if tier not in tuple(Tier):
        raise ValueError(f"unknown tier {tier!r}; use one of ram, swap, disk")
    own = next((r for r in residents if r.model_id == mid), None)
    others = [r for r in residents if r.model_id != mid]
    if tier == Tier.DISK:
        if own is None:
            return Decision(True, mid, tier, "noop", summary=f"`{mid}` is not loaded")
        return Decision(True, mid, tier, "unload", frees=own.bytes, from_tier=own.tier,
                        summary=f"unloading `{mid}` frees {format_size(own.bytes)} "
                        f"of the {Tier(own.tier).label}")
    if own is not None and own.tier == tier:
        return Decision(True, mid, tier, "noop", from_tier=tier,
                        summary=f"`{mid}` is already in the {Tier(tier).label}")
    pred = request.prediction
    total = pred.total
    needed = MappingProxyType({**pred.components(), "total": total})
    limits = _limits(total, tier, others, budgets, machine)
    action = "load" if own is None else "move"
    strategy = "make-before-break" if own is not None else None
    if own is not None and not all(lim.ok for lim in limits):
        # Break-before-make: the old runner's memory comes back before the new one starts.
        bbm = _limits(total, tier, others, budgets, machine, machine_delta=own.frees)
        if all(lim.ok for lim in bbm):
            limits, strategy = bbm, "break-before-make"
    ok = all(lim.ok for lim in limits)
    free = MappingProxyType({lim.name: lim.available for lim in limits if lim.name != "max_model"})
    where = Tier(tier).label
    if own is None:
        head = f"`{mid}` fits the {where}" if ok else f"cannot load `{mid}` into the {where}"
    elif not ok:
        head = f"cannot move `{mid}` from {own.tier} to the {where}"
    elif strategy == "make-before-break":
        head = (f"can move `{mid}` from {own.tier} to the {where} (make-before-break: "
                "the old runner serves until the new one is ready)")
    else:
        head = (f"can move `{mid}` from {own.tier} to the {where} (break-before-make: "
                "the model is unavailable while it restarts)")
    summary = f"{head}: needs {format_size(total)} ({pred.describe()})"
    from_tier = own.tier if own is not None else None
    if ok:
        return Decision(True, mid, tier, action, needed, free, limits, strategy=strategy,
                        from_tier=from_tier, summary=summary)
    suggestions: tuple[Suggestion, ...] = ()
    together: tuple[str, ...] = ()
    if limits[0].ok:  # nothing but a smaller prediction helps a model over the maximum
        suggestions, together = _suggest(total, tier, others, budgets, machine)
    return Decision(
        False, mid, tier, action, needed, free, limits,
        reasons=tuple(lim.text for lim in limits if not lim.ok),
        suggestions=suggestions, together=together,
        pinned=tuple(r.model_id for r in others if r.pinned),
        strategy=strategy, from_tier=from_tier, summary=summary,
    )


def admit(
    request: AdmissionRequest,
    residents: Sequence[Resident],
    budgets: Budgets,
    machine: MachineMemory,
) -> Decision:
    """The check before a runner starts: :func:`plan_load`, raising when refused.

    Returns:
        The decision (``ok`` is True).

    Raises:
        AdmissionRefused: the load does not fit; the message and ``decision`` itemise why.
    """
    decision = plan_load(request, residents, budgets, machine)
    if not decision.ok:
        raise AdmissionRefused(decision)
    return decision
