"""Keys typed right after ``/`` belong to the chat input, not to the app's bindings: the
focus moves at once, before the next key of the same burst is handled."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import Input

from orin_console.testing.managers import make_core
from orin_console.tui.app import build_app

from tui_support import settle


def test_focusing_the_chat_input_takes_effect_at_once(workdir: Path) -> None:
    core = make_core(workdir)
    core.start()
    app = build_app(core, settings=core.settings, clock=lambda: 1_700_000_000.0)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: app.status is not None, what="the first status")
            box = app.query_one("#chat-input", Input)
            assert app.focused is not box
            app.action_focus_chat()
            # No await in between: Widget.focus() would only have scheduled the change, and
            # the keys already queued behind '/' would run the catalog's bindings ('a', 'l').
            assert app.focused is box
            await pilot.press("a", "l")
            assert box.value == "al"

    try:
        asyncio.run(main())
    finally:
        core.close()
    assert core.manager.model_status("alpha").state == "unloaded"  # 'l' did not load it
