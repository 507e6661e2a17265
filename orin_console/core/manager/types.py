"""The manager's value types: model states, status snapshots and its errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from orin_console.core.errors import OrinError
from orin_console.core.text import sanitize_path
from orin_console.core.tier import LOADED_TIERS, Tier

if TYPE_CHECKING:
    from orin_console.core.memory.admission import Budgets
    from orin_console.core.memory.scheduler import Reserved


class ModelState(StrEnum):
    """Where a model is in its life cycle."""

    UNLOADED = "unloaded"
    """In the catalog, no runner (the disk tier)."""
    LOADING = "loading"
    READY = "ready"
    MOVING = "moving"
    """Changing tier; the old runner serves until the new one is ready (make-before-break)."""
    UNLOADING = "unloading"
    FAILED = "failed"
    """The runner died or the load failed; the next request or command restarts it."""


@dataclass(frozen=True)
class ModelStatus:
    """A snapshot of one catalog model, for the TUI, the API and the CLI.

    Attributes:
        model_id: catalog id.
        state: see :class:`ModelState`.
        tier: where it runs now: ``ram``, ``swap`` or ``disk`` (not loaded).
        target_tier: where a load or move in progress is taking it.
        preferred_tier: the catalog's ``tier``.
        pin: the catalog's ``pin`` (the plan keeps it where it is).
        resident: ``"pinned"`` (weights locked), ``"resident, not pinned"`` (locking was asked
            for but is impossible; see ``notes``), ``"pageable"`` (swap tier), or None.
        progress: 0..1 while loading or moving.
        pid: the runner process.
        predicted_bytes: admission's prediction for the current (or target) tier.
        prediction: the prediction itemised ("weights 0.1 + KV 0.0 + ... GB").
        measured_bytes: the runner's RSS + swap (+ GPU) from the OS, after load or use.
        prediction_error: (predicted - measured) / measured, when both are known.
        load_seconds: the last load's duration (llama.cpp's part).
        move_seconds_per_gb: the last tier move's seconds per GB of model file.
        error: why it failed, in operator words (signal, stderr tail, fix).
        busy: generating now.
        queued: generations waiting for this model.
        notes: plain sentences (CPU only, not pinned and how to fix it, ...).
    """

    model_id: str
    state: ModelState
    tier: str
    target_tier: str | None = None
    preferred_tier: str = Tier.SWAP.value
    pin: bool = False
    resident: str | None = None
    progress: float | None = None
    pid: int | None = None
    predicted_bytes: int | None = None
    prediction: str | None = None
    measured_bytes: int | None = None
    prediction_error: float | None = None
    load_seconds: float | None = None
    move_seconds_per_gb: float | None = None
    error: str | None = None
    busy: bool = False
    queued: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TierUsage:
    """One loaded tier: its budget and the memory the scheduler has reserved in it.

    Attributes:
        tier: ``ram`` or ``swap``.
        budget: the tier's budget, bytes.
        used: bytes reserved: each runner's prediction until measured, then the larger of
            the two; loads and moves in flight included (what is really committed).
        models: the models holding a reservation here (a moving model is in both tiers).
        in_flight: those of ``models`` still loading or moving into this tier.
    """

    tier: str
    budget: int
    used: int
    models: tuple[str, ...]
    in_flight: tuple[str, ...] = ()

    @property
    def free(self) -> int:
        """Budget left."""
        return max(0, self.budget - self.used)


@dataclass(frozen=True)
class SystemStatus:
    """Everything the console shows at once."""

    models: tuple[ModelStatus, ...]
    tiers: tuple[TierUsage, ...]
    mem_available: int
    swap_free: int
    reserve: int


def tier_usages(reservations: Sequence[Reserved], budgets: Budgets) -> tuple[TierUsage, ...]:
    """Each loaded tier's usage from the scheduler's reservations."""
    out = []
    for tier in LOADED_TIERS:
        here = [r for r in reservations if r.tier is tier]
        out.append(TierUsage(tier.value, budgets.of(tier.value), sum(r.bytes for r in here),
                             tuple(dict.fromkeys(r.model_id for r in here)),
                             tuple(dict.fromkeys(r.model_id for r in here if r.in_flight))))
    return tuple(out)


class ManagerClosed(OrinError):
    """The manager was closed: it accepts no more loads or generations."""


class ModelBusy(OrinError):
    """The model's generation queue is full; try again or pick another model."""


class ModelInTransition(ModelBusy):
    """The model is being loaded, moved or unloaded towards another tier than asked: retry once
    that has finished (a conflict with an operation in progress, not a bad request)."""


class ModelUnavailable(OrinError):
    """The model cannot serve: it failed to load, died, or was removed from the catalog."""


class ContextAboveTrained(OrinError):
    """A catalog entry asks for a context above the one its model was trained with.

    ``models add --context`` refuses such a context; a hand edit of ``models.toml`` is not
    caught by the catalog parser (it reads no model files), so the load refuses it, with the
    entry, both numbers and the fix (the API answers 422).

    Attributes:
        model_id: the catalog entry.
        context: the entry's ``context``.
        trained: the model's trained context (``<arch>.context_length`` in its GGUF header).
        path: the model file.
    """

    def __init__(self, model_id: str, context: int, trained: int, path: str) -> None:
        self.model_id = model_id
        self.context = context
        self.trained = trained
        self.path = path
        super().__init__(f"`{model_id}`: its context {context} in the catalog is above the model's trained "
                         f"context {trained} (the GGUF header of {sanitize_path(path)}); set context = {trained} "
                         f"or less in the entry for '{model_id}' in models.toml (`orin-console models list` "
                         "flags such entries)")
