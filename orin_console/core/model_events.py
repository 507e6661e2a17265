"""Events the manager publishes on the core's :class:`~orin_console.core.events.EventBus`.

Front ends subscribe to these (the TUI bridges them to Textual messages with
``post_message``; the API can stream them). Publishing never blocks the manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .events import Event

if TYPE_CHECKING:
    from .manager_types import ModelStatus


@dataclass(frozen=True, slots=True)
class ModelStateChanged(Event):
    """A model's state or tier changed (loading, ready, moving, failed, unloaded...)."""

    model_id: str
    status: ModelStatus


@dataclass(frozen=True, slots=True)
class LoadProgress(Event):
    """Progress of a load or move, 0..1, as llama.cpp reports it."""

    model_id: str
    tier: str
    fraction: float


@dataclass(frozen=True, slots=True)
class TokenGenerated(Event):
    """A piece of streamed text (for watchers; the caller gets its own iterator)."""

    model_id: str
    text: str


@dataclass(frozen=True, slots=True)
class GenerationFinished(Event):
    """A generation ended: how many tokens, how fast, and why it stopped."""

    model_id: str
    tokens: int
    ttft_s: float | None
    tok_per_s: float | None
    finish_reason: str


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
    """Something went wrong that an operator should see (a refused catalog edit, a crash)."""

    message: str
    model_id: str | None = None
