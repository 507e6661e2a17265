"""Keys typed right after ``/`` belong to the chat input, not to the app's bindings."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import Input

from orin_console.testing.managers import make_core
from orin_console.tui.app import build_app
from orin_console.tui.screens.add_models import AddModelsScreen

from tui_support import settle


def test_a_prompt_typed_at_once_after_slash_goes_to_the_input(workdir: Path) -> None:
    core = make_core(workdir)
    core.start()
    app = build_app(core, settings=core.settings, clock=lambda: 1_700_000_000.0)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: app.status is not None, what="the first status")
            await pilot.press("slash", "a", "l", "o", "u")  # one burst: no pause after '/'
            await pilot.pause()
            assert not isinstance(app.screen, AddModelsScreen)
            assert app.query_one("#chat-input", Input).value == "alou"

    try:
        asyncio.run(main())
    finally:
        core.close()
    assert core.manager.model_status("alpha").state == "unloaded"  # 'l' did not load it
