"""Snapshots of the chat pane and the add dialog: fixed data, fixed size, no blinking cursor."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input

from tests.tui_support import ChatApp, ScriptedEngine, settle

ANSWER = ["Here is a list:\n\n", "- **one**\n", "- `two`\n\n", "Done [bold]x[/bold]."]


def test_chat_pane_with_a_finished_answer(snap_compare: Any) -> None:
    app = ChatApp(ScriptedEngine(ANSWER))

    async def ask(pilot: Any) -> None:
        app.query_one("#chat-input", Input).cursor_blink = False
        await pilot.press(*"Give me a list", "enter")
        await settle(pilot, lambda: app.finished, what="the answer")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=ask)
