"""Events the core publishes on its :class:`~orin_console.core.events.bus.EventBus`.

Front ends subscribe to these (the TUI bridges them to Textual messages with
``post_message``; the API streams them). Publishing never blocks the core.

Two classes of event (see :mod:`orin_console.core.events.bus` for the delivery rules):

- **state events** (everything not listed below): never dropped for a slow subscriber;
- **high-rate events** (:class:`TokenGenerated`, :class:`LoadProgress`,
  :class:`~orin_console.core.events.bus.TelemetrySample`): coalesced per
  :meth:`~orin_console.core.events.bus.Event.coalesce_key` for a subscriber that falls behind.

A subscriber that asks for it (or that overflowed) also receives a
:class:`~orin_console.core.events.bus.Snapshot` of the whole state to resynchronise from.
Every event here is importable from this module, the bus's own kinds included.

Every generation has a ``request_id`` (unique per console run) and a ``source``
(``"tui"``, ``"api"``, ``"cli"`` or ``"core"`` for the preloader and tests).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from orin_console.core.events.bus import Event, Snapshot, TelemetrySample, TelemetrySourceChanged

__all__ = [
    "CatalogChanged", "Event", "GenerationFinished", "GenerationStarted", "LoadProgress",
    "ManagerError", "ModelStateChanged", "PlanChanged", "Snapshot", "TelemetrySample",
    "TelemetrySourceChanged", "TierUsageChanged", "TokenGenerated",
]

if TYPE_CHECKING:
    from orin_console.core.manager.types import ModelStatus, TierUsage


@dataclass(frozen=True, slots=True)
class ModelStateChanged(Event):
    """A model's state or tier changed (loading, ready, moving, failed, unloaded...)."""

    model_id: str
    status: ModelStatus


@dataclass(frozen=True, slots=True)
class LoadProgress(Event):
    """Progress of a load or move, 0..1, as llama.cpp reports it (high-rate: coalesced)."""

    model_id: str
    tier: str
    fraction: float

    def coalesce_key(self) -> Hashable | None:
        """Per model: a slow subscriber gets the latest fraction."""
        return self.model_id


@dataclass(frozen=True, slots=True)
class TierUsageChanged(Event):
    """A tier's reserved memory changed (a load or move admitted, finished, failed or
    cancelled; an unload; a new measurement). Front ends redraw the tier map from this and
    never poll."""

    tiers: tuple[TierUsage, ...]


@dataclass(frozen=True, slots=True)
class GenerationStarted(Event):
    """A generation was routed to a model and queued or started.

    Attributes:
        request_id: unique per console run; token and finish events carry it.
        source: who asked: ``"tui"``, ``"api"``, ``"cli"`` or ``"core"``.
        model_id: the model that answers.
        route: the engine's route (task, mode, explanation), when the engine chose it.
        explanation: the route in one line ("code: fenced block; auto picked ...").
    """

    request_id: str
    source: str
    model_id: str
    route: object | None = None
    explanation: str | None = None


@dataclass(frozen=True, slots=True)
class TokenGenerated(Event):
    """A piece of streamed text (for watchers; the caller gets its own iterator). High-rate:
    for a slow subscriber the pending pieces of one request are merged into one event, so
    no text is lost."""

    request_id: str
    model_id: str
    text: str

    def coalesce_key(self) -> Hashable | None:
        """Per request: the pending pieces of one generation merge."""
        return self.request_id

    def merge(self, newer: Event) -> Event:
        """One event with this text followed by the newer one's (nothing is lost)."""
        if not isinstance(newer, TokenGenerated):  # pragma: no cover - the bus keys by type
            return newer
        return replace(newer, text=self.text + newer.text)


@dataclass(frozen=True, slots=True)
class GenerationFinished(Event):
    """A generation ended: how many tokens, how fast, and why it stopped (``error`` when it
    failed or was cancelled before its stats)."""

    request_id: str
    model_id: str
    tokens: int
    ttft_s: float | None
    tok_per_s: float | None
    finish_reason: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CatalogChanged(Event):
    """The catalog was reloaded (an edit on disk or through the manager)."""

    model_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlanChanged(Event):
    """The usage-based placement plan changed (the value is the plan object)."""

    plan: object


@dataclass(frozen=True, slots=True)
class ManagerError(Event):
    """Something went wrong that an operator should see (a refused catalog edit, a crash).

    ``kind`` is the error's class name when one was raised (``AdmissionRefused``,
    ``RunnerError``...), so a reader tells a refusal by its type, not by its wording."""

    message: str
    model_id: str | None = None
    kind: str | None = field(default=None, kw_only=True)
