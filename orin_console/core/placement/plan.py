"""Usage-based placement: which models belong in ``ram``, ``swap`` and ``disk``, and why.

:func:`compute_plan` is a pure function over a snapshot (each model's current tier, pin,
predicted or measured size per tier, and decayed usage) and the budgets. It returns a
:class:`Plan`: a frozen value that can be shown (:meth:`Plan.explain`), compared
(:meth:`Plan.diff`) and carried out (:func:`orin_console.core.placement.optimiser.apply`).

The algorithm (``docs/engine.md`` has the worked example):

1. **Pinned** models keep their tier (an unloaded pinned model goes to its catalog tier);
   their bytes count against the budgets first, whatever the usage says.
2. A model whose size cannot be predicted (an unreadable file) stays on disk.
3. A model **earns a loaded tier** with at least ``load_min`` decayed requests; a model that
   is loaded now keeps it down to ``keep_min`` (two thresholds, so a model at the edge does
   not load and unload on alternate rounds).
4. **RAM** goes to the eligible models whose catalog tier is ``ram``, in order of demand,
   greedily while they fit the RAM budget; **swap** the same way to the rest (a ``swap`` or
   ``disk`` catalog tier means swap at most); the others go to disk.
5. **Hysteresis.** A model that holds a tier now (the incumbent) competes for it with its
   demand raised by ``margin_ratio`` and ``margin_abs``, so a challenger displaces it only
   when clearly more used; and a placement younger than ``min_dwell_s`` (carried from the
   previous plan) is kept while it fits. Alternating traffic therefore settles instead of
   swapping two models every round.

Budgets only are checked here; the machine's free memory is checked by admission control
when the plan is applied, move by move.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from orin_console.core.memory.admission import Budgets
from orin_console.core.tier import LOADED_TIERS, Tier
from orin_console.core.units import format_size

_RANK: Final[dict[str, int]] = {Tier.RAM: 2, Tier.SWAP: 1, Tier.DISK: 0}
#: Moves are carried out in this order: room is made before it is used.
MOVE_ORDER: Final = ("unload", "demote", "promote", "load")


@dataclass(frozen=True)
class PlanPolicy:
    """The knobs of the plan.

    Attributes:
        load_min: decayed requests a model needs to be given a loaded tier (0.5: one
            request within the last half-life of the usage tracker, an hour by default).
        keep_min: a loaded model keeps a loaded tier down to this many (0.25: until its one
            request is two half-lives old).
        margin_ratio: an incumbent's demand counts this fraction more for its own tier...
        margin_abs: ...plus this many requests.
        min_dwell_s: a placement younger than this (seconds) is kept while it fits.
        ram_needs_preference: only models whose catalog tier is ``ram`` are placed in RAM
            (the GPU-backed, locked tier); the others are placed in swap at most. False lets
            usage promote any model into RAM.
    """

    load_min: float = 0.5
    keep_min: float = 0.25
    margin_ratio: float = 0.25
    margin_abs: float = 1.0
    min_dwell_s: float = 600.0
    ram_needs_preference: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.keep_min <= self.load_min:
            raise ValueError("need 0 <= keep_min <= load_min")
        if self.margin_ratio < 0 or self.margin_abs < 0 or self.min_dwell_s < 0:
            raise ValueError("margins and dwell time must not be negative")

    def describe(self) -> str:
        """The policy in one clause."""
        return (f"loaded from {self.load_min:g} recent requests, kept down to {self.keep_min:g}; "
                f"incumbents +{self.margin_ratio:.0%} +{self.margin_abs:g}; "
                f"dwell {self.min_dwell_s / 60:g} min")


@dataclass(frozen=True)
class ModelFacts:
    """What the plan knows about one catalog model.

    Attributes:
        model_id: catalog id.
        tier: where it is now (``ram``, ``swap`` or ``disk``; a load or move in progress
            counts as done).
        demand: decayed recent requests (the usage tracker's ``count``).
        sizes: predicted (or, where it runs now, measured) bytes per loaded tier; a tier
            missing here cannot hold the model.
        pinned: the catalog's ``pin``.
        preferred: the catalog's ``tier``.
        priority: the catalog's ``priority`` (breaks ties in demand).
        problem: why its size is unknown (an unreadable file, say).
    """

    model_id: str
    tier: str = "disk"
    demand: float = 0.0
    sizes: Mapping[str, int] = field(default_factory=dict)
    pinned: bool = False
    preferred: str = "swap"
    priority: int = 50
    problem: str | None = None


@dataclass(frozen=True)
class Move:
    """One change the plan asks for."""

    model_id: str
    from_tier: str
    to_tier: str
    reason: str

    @property
    def kind(self) -> str:
        """``unload``, ``demote`` (ram to swap), ``promote`` (swap to ram) or ``load``."""
        if self.to_tier == "disk":
            return "unload"
        if self.from_tier == "disk":
            return "load"
        return "promote" if _RANK[self.to_tier] > _RANK[self.from_tier] else "demote"

    def describe(self) -> str:
        """``"promote beta swap → ram: ..."``."""
        return f"{self.kind} {self.model_id} {self.from_tier} → {self.to_tier}: {self.reason}"


@dataclass(frozen=True)
class Change:
    """A placement that differs between two plans."""

    model_id: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Plan:
    """Where every catalog model belongs, why, and the moves from where they are now.

    Attributes:
        placements: model id -> ``ram``, ``swap`` or ``disk``.
        reasons: model id -> why, in operator words.
        moves: the changes from the current residency, in the order they are safe to make.
        used: bytes the placements occupy per loaded tier.
        budgets: the budget of each loaded tier.
        since: model id -> when the plan first gave it its placement (for the dwell time).
        created: when the plan was computed (``time.time()``).
        policy: the policy it was computed with.
    """

    placements: Mapping[str, str]
    reasons: Mapping[str, str]
    moves: tuple[Move, ...]
    used: Mapping[str, int]
    budgets: Mapping[str, int]
    since: Mapping[str, float]
    created: float
    policy: PlanPolicy = PlanPolicy()

    @property
    def fits(self) -> dict[str, bool]:
        """Whether each loaded tier's placements fit its budget (false only through pins)."""
        return {tier: self.used[tier] <= self.budgets[tier] for tier in LOADED_TIERS}

    def members(self, tier: str) -> list[str]:
        """The models placed in ``tier``, in catalog order."""
        return [mid for mid, where in self.placements.items() if where == tier]

    def diff(self, other: Plan | None) -> tuple[Change, ...]:
        """The placements that differ from ``other`` (an earlier plan), as ``before → after``."""
        before = other.placements if other is not None else {}
        ids = list(dict.fromkeys([*before, *self.placements]))
        return tuple(Change(mid, before.get(mid), self.placements.get(mid)) for mid in ids
                     if before.get(mid) != self.placements.get(mid))

    def explain(self) -> str:
        """The plan as text: each tier with its models and budget use, the reasons, the moves."""
        lines = [f"Placement plan ({self.policy.describe()})"]
        for tier in LOADED_TIERS:
            state = "" if self.fits[tier] else "  OVER BUDGET (pinned models)"
            lines.append(f"  {tier:<4}  {format_size(self.used[tier])} of {format_size(self.budgets[tier])}: "
                         f"{', '.join(self.members(tier)) or '(none)'}{state}")
        lines.append(f"  disk  {', '.join(self.members('disk')) or '(none)'}")
        lines.append("Why:")
        lines += [f"  {mid} → {self.placements[mid]}: {self.reasons[mid]}" for mid in self.placements]
        if self.moves:
            lines.append(f"Moves ({len(self.moves)}, in this order):")
            lines += [f"  {move.describe()}" for move in self.moves]
        else:
            lines.append("Moves: none (every model is where it belongs)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "placements": dict(self.placements), "reasons": dict(self.reasons),
            "moves": [{"model": m.model_id, "kind": m.kind, "from": m.from_tier, "to": m.to_tier,
                       "reason": m.reason} for m in self.moves],
            "used": dict(self.used), "budgets": dict(self.budgets), "fits": self.fits,
            "created": self.created,
        }


def _fmt(demand: float) -> str:
    return f"{demand:.2f}" if demand < 10 else f"{demand:.0f}"


class _Fill:
    """Budget accounting while the plan is built."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets: dict[str, int] = {tier: budgets.of(tier) for tier in LOADED_TIERS}
        self.used: dict[str, int] = dict.fromkeys(LOADED_TIERS, 0)
        self.holders: dict[str, list[str]] = {tier: [] for tier in LOADED_TIERS}

    def fits(self, facts: ModelFacts, tier: str) -> bool:
        size = facts.sizes.get(tier)
        return size is not None and self.used[tier] + size <= self.budgets[tier]

    def take(self, facts: ModelFacts, tier: str) -> None:
        self.used[tier] += facts.sizes.get(tier, 0)
        self.holders[tier].append(facts.model_id)

    def room(self, facts: ModelFacts, tier: str) -> str:
        size = facts.sizes.get(tier)
        free = max(0, self.budgets[tier] - self.used[tier])
        need = f"needs {format_size(size)}, " if size is not None else ""
        return f"{tier}: {need}{format_size(free)} free"


def compute_plan(models: Sequence[ModelFacts], budgets: Budgets, *, previous: Plan | None = None,
                 policy: PlanPolicy | None = None, now: float | None = None) -> Plan:
    """Place every model (see the module docstring for the rules).

    Args:
        models: every catalog model, in catalog order.
        budgets: the tier budgets.
        previous: the last plan, for the dwell time (None: no dwell protection).
        policy: thresholds and hysteresis (default :class:`PlanPolicy`).
        now: the wall-clock time (default ``time.time()``).

    Returns:
        The plan, with its moves from the models' current tiers.
    """
    policy = policy or PlanPolicy()
    now = time.time() if now is None else now
    fill = _Fill(budgets)
    placed: dict[str, str] = {}
    reasons: dict[str, str] = {}

    def settling(facts: ModelFacts, tier: str) -> bool:
        if previous is None or previous.placements.get(facts.model_id) != tier:
            return False
        return now - previous.since.get(facts.model_id, now) < policy.min_dwell_s

    def key(facts: ModelFacts, tier: str, incumbent_tiers: tuple[str, ...]) -> tuple[bool, float, int, str]:
        demand = facts.demand
        if facts.tier in incumbent_tiers:
            demand += demand * policy.margin_ratio + policy.margin_abs
        return (not settling(facts, tier), -demand, -facts.priority, facts.model_id)

    candidates: list[ModelFacts] = []
    for facts in models:
        mid = facts.model_id
        if facts.pinned:
            tier = facts.tier if facts.tier in LOADED_TIERS else facts.preferred
            placed[mid] = tier
            if tier in LOADED_TIERS:
                fill.take(facts, tier)
            reasons[mid] = f"pinned ({'stays in' if facts.tier == tier else 'loads into'} {tier})"
        elif facts.problem is not None or not facts.sizes:
            placed[mid] = "disk"
            reasons[mid] = f"cannot be placed: {facts.problem or 'its size is unknown'}"
        else:
            threshold = policy.keep_min if facts.tier in LOADED_TIERS else policy.load_min
            if facts.demand >= threshold:
                candidates.append(facts)
            else:
                placed[mid] = "disk"
                verb = "stay loaded" if facts.tier in LOADED_TIERS else "be loaded"
                reasons[mid] = (f"{_fmt(facts.demand)} recent requests (decayed); {threshold:g} "
                                f"needed to {verb}")

    misses: dict[str, list[str]] = {}
    for tier, incumbents in ((Tier.RAM, (Tier.RAM,)), (Tier.SWAP, LOADED_TIERS)):
        rest: list[ModelFacts] = []
        for facts in sorted(candidates, key=lambda f: key(f, tier, incumbents)):
            if tier == Tier.RAM and policy.ram_needs_preference and facts.preferred != Tier.RAM:
                rest.append(facts)  # its catalog tier is swap (or disk): swap at most
            elif fill.fits(facts, tier):
                fill.take(facts, tier)
                placed[facts.model_id] = tier
                reasons[facts.model_id] = _why(facts, tier, fill, settling(facts, tier), policy)
            else:
                held = f" (held by {', '.join(fill.holders[tier])})" if fill.holders[tier] else ""
                misses.setdefault(facts.model_id, []).append(f"no room in {fill.room(facts, tier)}{held}")
                rest.append(facts)
        candidates = rest
    for facts in candidates:
        placed[facts.model_id] = "disk"
        reasons[facts.model_id] = f"{_fmt(facts.demand)} recent requests, but nothing fits"
    for mid, missed in misses.items():
        reasons[mid] = "; ".join([reasons[mid], *missed])

    order = [f.model_id for f in models]
    placements = {mid: placed[mid] for mid in order}
    since = {mid: (previous.since.get(mid, now) if previous is not None
                   and previous.placements.get(mid) == where else now)
             for mid, where in placements.items()}
    current = {f.model_id: f.tier for f in models}
    moves = [Move(mid, current[mid], where, reasons[mid]) for mid, where in placements.items()
             if where != current[mid]]
    moves.sort(key=lambda m: MOVE_ORDER.index(m.kind))
    return Plan(MappingProxyType(placements), MappingProxyType({m: reasons[m] for m in order}),
                tuple(moves), MappingProxyType(dict(fill.used)), MappingProxyType(dict(fill.budgets)),
                MappingProxyType(since), now, policy)


def _why(facts: ModelFacts, tier: str, fill: _Fill, settling: bool, policy: PlanPolicy) -> str:
    used = f"{_fmt(facts.demand)} recent requests"
    size = format_size(facts.sizes[tier])
    if settling:
        return f"{used}; placed here less than {policy.min_dwell_s / 60:g} min ago, so it stays ({size})"
    if facts.tier == tier:
        return f"{used}; stays in {tier} (incumbents keep their tier unless clearly out-used) ({size})"
    return (f"{used}; fits {tier} ({size}; {tier} then holds {format_size(fill.used[tier])} of "
            f"{format_size(fill.budgets[tier])})")
