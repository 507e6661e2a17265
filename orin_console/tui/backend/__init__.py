"""What the console needs of a core: one protocol, two back ends.

The widgets, screens and actions talk to a :class:`ConsoleBackend` only, never to a core or a
client, so the same console runs over

- :class:`~orin_console.tui.backend.local.InProcessBackend`: a :class:`~orin_console.core.Core`
  in this process (its bus bridged by :class:`~orin_console.tui.bridge.CoreBridge`);
- :class:`~orin_console.tui.backend.remote.RemoteBackend`: a running server, through the SDK
  (events from ``GET /events?snapshot=1``, operations through its routes, answers as SSE).

Both hand the widgets the core's own value types (:class:`SystemStatus`, :class:`ModelStatus`,
:class:`Decision`, :class:`Catalog`, :class:`Sample`, :class:`Plan`), posted to the app as the
messages of :mod:`orin_console.tui.messages`; the remote one rebuilds them from the API's JSON
(:mod:`orin_console.tui.backend.convert`).

Every method that talks to the core or the server blocks: call it from a thread worker, never
from the event loop. ``load`` and ``unload`` return a :class:`~concurrent.futures.Future`, so a
worker can stop waiting when it is cancelled (the app quits) without cancelling the operation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from textual.app import App

    from orin_console.core.catalog.add import AddResult
    from orin_console.core.catalog.store import Catalog
    from orin_console.core.engine.types import Result
    from orin_console.core.manager.types import ModelStatus
    from orin_console.core.memory.admission import Decision
    from orin_console.core.placement.optimiser import MoveOutcome
    from orin_console.core.placement.plan import Move, Plan
    from orin_console.tui.screens.add_verdict import Verdict
    from orin_console.tui.widgets.catalog import FileFacts

__all__ = ["ChatEngine", "ChatStream", "ConsoleBackend", "NotSupported", "backend_of"]


class NotSupported(Exception):
    """The back end cannot do this (an attached console on a server without the route); the
    message says what is missing and the fix."""


@runtime_checkable
class ChatStream(Protocol):
    """One streamed answer, as the chat pane reads it: the model is chosen when the stream is
    made (``model_id``, ``will_load``, ``load_tier``); iterating yields the text pieces;
    ``result`` is set once it ends; ``cancel()`` (thread-safe) stops it within a token."""

    @property
    def model_id(self) -> str: ...

    @property
    def will_load(self) -> bool: ...

    @property
    def load_tier(self) -> str | None: ...

    @property
    def result(self) -> Result | None: ...

    def __iter__(self) -> Iterator[str]: ...

    def cancel(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class ChatEngine(Protocol):
    """What the chat pane asks: one streamed answer per prompt, and the models to cycle."""

    def stream_quick(self, prompt: str, *, mode: Any = "auto", model: str | None = None,
                     preferred: str | None = None, params: Any = None, source: str = "tui") -> ChatStream: ...

    def catalog_ids(self) -> Sequence[str]: ...


class ConsoleBackend(Protocol):
    """Everything the console's widgets, screens and actions need of a core.

    Attributes:
        label: ``in-process`` or ``attached to http://…`` (the status line shows it).
        attached: whether it talks to a server (quitting then leaves the models running).
        chat: the chat pane's engine.
        telemetry: whether telemetry samples will come (False: the gauges stay empty).
        add_folder: where the add dialog's browser opens.
    """

    label: str
    attached: bool
    chat: ChatEngine

    @property
    def telemetry(self) -> bool: ...

    @property
    def add_folder(self) -> Path: ...

    def start(self, app: App[Any]) -> None:
        """Start posting StatusUpdated, TelemetryUpdated, LogLine and BackendState to ``app``."""

    def stop(self) -> None:
        """Stop posting (the core, or the server, and its models go on: the caller owns them)."""

    def startup_lines(self) -> list[tuple[str, str]]:
        """(level, text) lines for the log when the console opens."""

    def plan(self, model_id: str, tier: str | None) -> Decision:
        """Admission's dry run for loading (or moving) ``model_id`` into ``tier`` (or ``disk``)."""

    def load(self, model_id: str, tier: str) -> Future[ModelStatus]:
        """Load or move ``model_id`` into ``tier``; the future ends with its status."""

    def unload(self, model_id: str) -> Future[ModelStatus]:
        """Unload ``model_id``; the future ends with its status."""

    def toggle_pin(self, model_id: str) -> ModelStatus:
        """Pin the model, or unpin it when it is pinned (read from the core, not a lagging status)."""

    def placement_plan(self) -> tuple[Plan, dict[str, str]]:
        """The placement plan to show and where each model is now."""

    def apply_move(self, plan: Plan, move: Move) -> MoveOutcome:
        """Apply one move of ``plan`` (re-checked by admission)."""

    def add_preview(self, path: Path) -> Verdict:
        """What adding ``path`` (a .gguf file or a folder) would do, writing nothing."""

    def add(self, path: Path) -> AddResult:
        """Add the GGUF files at ``path`` to the catalog."""

    def file_facts(self, catalog: Catalog) -> dict[str, FileFacts]:
        """Each catalog model's file size and quantisation (read from the files' headers)."""


def backend_of(backend: Any) -> ConsoleBackend:
    """``backend`` itself, or a core wrapped in its in-process back end (the screens' tests and
    tools open them over a core)."""
    from orin_console.core.service import Core

    if isinstance(backend, Core):
        from orin_console.tui.backend.local import InProcessBackend

        return InProcessBackend(backend)
    result: ConsoleBackend = backend
    return result
