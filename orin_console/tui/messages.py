"""The Textual messages that carry the core's events into the console.

The :class:`~orin_console.tui.bridge.CoreBridge` posts these to the app from the bus's
thread (``post_message`` is thread-safe); the app hands them to the widgets. High-rate ones
(:class:`StatusUpdated`, :class:`TelemetryUpdated`) may be replaced by a newer one still in
the queue (``can_replace``), so a burst of core events costs one repaint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orin_console.core.catalog.store import Catalog
    from orin_console.core.manager.types import SystemStatus
    from orin_console.core.memory.admission import Decision
    from orin_console.core.placement.usage import UsageRecord
    from orin_console.core.telemetry import Sample


class StatusUpdated(Message):
    """The manager's whole status (models, tiers, machine memory) after one or more changes,
    with the catalog in force and each model's usage (requests, tok/s)."""

    def __init__(self, status: SystemStatus, catalog: Catalog | None = None,
                 usage: Mapping[str, UsageRecord] | None = None) -> None:
        super().__init__()
        self.status = status
        self.catalog = catalog
        self.usage = usage if usage is not None else {}

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatusUpdated)


class TelemetryUpdated(Message):
    """A new telemetry sample, the recent history for sparklines, and the source's note
    (a fallback and its fix, or empty)."""

    def __init__(self, sample: Sample, history: tuple[Sample, ...] = (), source_note: str = "") -> None:
        super().__init__()
        self.sample = sample
        self.history = history
        self.source_note = source_note

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TelemetryUpdated)


class LogLine(Message):
    """A line for the log pane (and the log file), already sanitised.

    Attributes:
        level: ``info``, ``warning`` or ``error``.
        text: the line.
        notify: also show it as a notification (errors an operator must not miss).
    """

    def __init__(self, level: str, text: str, *, notify: bool = False) -> None:
        super().__init__()
        self.level = level
        self.text = text
        self.notify = notify


class PlanReady(Message):
    """Admission's dry run for an action the operator asked for (computed in a worker).

    Attributes:
        verb: what was asked: ``load``, ``move to ram``, ``move to swap``, ``unload``.
        model_id: the catalog model.
        tier: the target tier (``disk`` for an unload).
        decision: the manager's :class:`~orin_console.core.memory.admission.Decision`.
    """

    def __init__(self, verb: str, model_id: str, tier: str, decision: Decision) -> None:
        super().__init__()
        self.verb = verb
        self.model_id = model_id
        self.tier = tier
        self.decision = decision


class ApiServing(Message):
    """The API started beside the console (``--serve``) serves at ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


class BackendState(Message):
    """An attached console lost its server (``connected`` False: the console shows that it is
    reconnecting and since when) or has it again (its new state follows as a StatusUpdated).

    Attributes:
        connected: whether the server answers now.
        text: what to show, already sanitised.
        log: also write it in the log (the first failure and the reconnection, not every retry).
    """

    def __init__(self, connected: bool, text: str, *, log: bool = False) -> None:
        super().__init__()
        self.connected = connected
        self.text = text
        self.log = log
