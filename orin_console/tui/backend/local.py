"""The console over a core in this process: :class:`InProcessBackend`.

Events come from the core's bus through :class:`~orin_console.tui.bridge.CoreBridge`; every
call goes straight to the manager, the engine and the optimiser (in the caller's worker
thread). The caller (the CLI, a test) owns the core: it starts it before the console opens
and closes it after, which stops every runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orin_console.core.catalog.add import AddResult
from orin_console.core.catalog.store import Catalog
from orin_console.core.manager.types import ModelStatus
from orin_console.core.memory.admission import Decision
from orin_console.core.placement.current import current_plan
from orin_console.core.placement.optimiser import MoveOutcome, apply
from orin_console.core.placement.plan import Move, Plan
from orin_console.core.units import format_size
from orin_console.tui.backend import convert
from orin_console.tui.bridge import CoreBridge

if TYPE_CHECKING:
    from textual.app import App

    from orin_console.core.engine.inference import Engine
    from orin_console.core.service import Core
    from orin_console.tui.backend import ChatEngine, ChatStream
    from orin_console.tui.screens.add_verdict import Verdict
    from orin_console.tui.widgets.catalog import FileFacts

__all__ = ["InProcessBackend", "LocalChat"]


class LocalChat:
    """The chat pane's engine over ``core.engine``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def stream_quick(self, prompt: str, *, mode: Any = "auto", model: str | None = None,
                     preferred: str | None = None, params: Any = None, source: str = "tui") -> ChatStream:
        stream: ChatStream = self._engine.stream_quick(prompt, mode=mode, model=model, preferred=preferred,
                                                       params=params, source=source)
        return stream

    def catalog_ids(self) -> Sequence[str]:
        return [entry.id for entry in self._engine.manager.catalog]


class InProcessBackend:
    """The console's back end over a started ``core`` (see the module docstring)."""

    attached = False
    label = "in-process"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.chat: ChatEngine = LocalChat(core.engine)
        self._bridge: CoreBridge | None = None
        # each header read once per file (the manager's prediction cache reads it), as the API does
        self._facts = core.manager.file_facts

    @property
    def telemetry(self) -> bool:
        return self.core.sampler is not None

    @property
    def add_folder(self) -> Path:
        return self.core.manager.catalog.path.parent

    def start(self, app: App[Any]) -> None:
        self._bridge = CoreBridge(self.core, app)
        self._bridge.start()

    def stop(self) -> None:
        if self._bridge is not None:
            self._bridge.stop()

    def startup_lines(self) -> list[tuple[str, str]]:
        settings = self.core.settings
        lines = [("info", f"catalog: {len(self.core.manager.catalog.entries)} models; RAM tier "
                          f"{format_size(settings.ram_budget_bytes)}, swap tier "
                          f"{format_size(settings.swap_budget_bytes)}; ? for help")]
        if self.core.sampler is None:
            lines.append(("info", "telemetry off: gauges show nothing"))
        return lines

    # -- models ---------------------------------------------------------------------------

    def plan(self, model_id: str, tier: str | None) -> Decision:
        return self.core.manager.plan(model_id, tier)

    def load(self, model_id: str, tier: str) -> Future[ModelStatus]:
        return self.core.manager.load(model_id, tier)

    def unload(self, model_id: str) -> Future[ModelStatus]:
        return self.core.manager.unload(model_id)

    def toggle_pin(self, model_id: str) -> ModelStatus:
        manager = self.core.manager
        return manager.pin(model_id, not manager.catalog.get(model_id).pin)

    # -- placement ------------------------------------------------------------------------

    def placement_plan(self) -> tuple[Plan, dict[str, str]]:
        return current_plan(self.core)  # the plan every console (and the API) shows

    def apply_move(self, plan: Plan, move: Move) -> MoveOutcome:
        (outcome,) = apply(self.core.manager, replace(plan, moves=(move,)))
        return outcome

    # -- the catalog ----------------------------------------------------------------------

    def add_preview(self, path: Path) -> Verdict:
        from orin_console.tui.screens.add_verdict import check_path

        return check_path(self.core.manager, path)

    def add(self, path: Path) -> AddResult:
        return self.core.manager.add_models(path)

    def file_facts(self, catalog: Catalog) -> dict[str, FileFacts]:
        return {mid: convert.facts_from_core(f) for mid, f in self._facts.for_catalog(catalog).items()}
