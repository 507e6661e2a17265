"""The plan screen with a real manager on the tiny pair: it shows the optimiser's plan with
reasons and moves, applies it move by move, and asks before a move that unloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App
from textual.widgets import Static

from orin_console.core.manager.types import ModelState
from orin_console.core.placement.optimiser import MoveOutcome
from orin_console.testing.managers import make_core
from orin_console.tui.screens.plan import PlanScreen

from tui_support import run, settle


class PlanApp(App[None]):
    """Opens the plan screen at once and keeps what it dismissed with."""

    def __init__(self, core: Any) -> None:
        super().__init__()
        self.core = core
        self.results: list[list[MoveOutcome] | None] = []

    def on_mount(self) -> None:
        self.push_screen(PlanScreen(self.core), self.results.append)


def _text(app: App[None], selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def test_the_plan_is_shown_and_applied_move_by_move(workdir: Path) -> None:
    with make_core(workdir, optimiser=True) as core:
        for _ in range(5):
            core.manager.usage.record("alpha")
        app = PlanApp(core)

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, PlanScreen)
                plan = await settle(pilot, lambda: screen.plan, what="the plan")
                assert core.optimiser is not None and core.optimiser.latest is plan  # the optimiser's round
                assert [(m.kind, m.model_id, m.to_tier) for m in plan.moves] == [("load", "alpha", "ram")]
                placements = _text(app, "#plan-placements")
                assert "alpha disk → ram:" in placements and "beta stays in disk:" in placements
                assert "1. load alpha disk → ram" in _text(app, "#plan-moves")
                await pilot.press("a")
                await settle(pilot, lambda: screen.state == "applied", timeout=60, what="the moves")
                assert "✓ 1. load alpha" in _text(app, "#plan-moves")
                assert "applied: 1 of 1 moves done" in _text(app, "#plan-status")
                await pilot.press("escape")
                await settle(pilot, lambda: app.results, what="the screen to close")

        run(scenario())
        (outcomes,) = app.results
        assert outcomes is not None and [o.status for o in outcomes] == ["done"]
        assert core.manager.model_status("alpha").tier == "ram"


def test_a_move_that_unloads_asks_first(workdir: Path) -> None:
    with make_core(workdir) as core:
        core.manager.load("beta").result(60)  # no usage: the plan unloads it
        app = PlanApp(core)

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, PlanScreen)
                plan = await settle(pilot, lambda: screen.plan, what="the plan")
                assert [(m.kind, m.model_id) for m in plan.moves] == [("unload", "beta")]
                await pilot.press("a")
                assert screen.state == "confirming" and "unloads beta" in _text(app, "#plan-status")
                await pilot.press("n")
                assert screen.state == "ready" and "nothing was changed" in _text(app, "#plan-status")
                assert core.manager.model_status("beta").state == ModelState.READY
                await pilot.press("a", "y")
                await settle(pilot, lambda: screen.state == "applied", timeout=60, what="the unload")
                assert "✓ 1. unload beta" in _text(app, "#plan-moves")

        run(scenario())
        assert core.manager.model_status("beta").state == ModelState.UNLOADED
