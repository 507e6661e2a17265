"""Snapshots of the chat pane and the add dialog: fixed data, fixed size, no blinking cursor."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from test_tui_add_models import AddApp
from textual.widgets import Input

from orin_console.core.memory.admission import MachineMemory
from orin_console.testing.managers import make_core
from orin_console.tui.screens.add_models import AddModelsScreen

from tui_support import ChatApp, ScriptedEngine, settle

ANSWER = ["Here is a list:\n\n", "- **one**\n", "- `two`\n\n", "Done [bold]x[/bold]."]


def test_chat_pane_with_a_finished_answer(snap_compare: Any) -> None:
    app = ChatApp(ScriptedEngine(ANSWER))

    async def ask(pilot: Any) -> None:
        app.query_one("#chat-input", Input).cursor_blink = False
        await pilot.press(*"Give me a list", "enter")
        await settle(pilot, lambda: app.finished, what="the answer")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=ask)


def test_add_dialog_with_a_verdict(snap_compare: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    incoming = workdir / "incoming"
    incoming.mkdir()
    shutil.copyfile(workdir / "alpha.gguf", incoming / "gamma.gguf")
    monkeypatch.chdir(workdir)  # the tree's root and the typed path are relative: the same every run
    machine = MachineMemory(mem_available=6 * 2**30, swap_free=8 * 2**30)
    core = make_core(workdir, machine_memory=lambda: machine).start()
    app = AddApp(core, start=Path("incoming"))

    async def check(pilot: Any) -> None:
        screen = app.screen
        assert isinstance(screen, AddModelsScreen)
        screen.query_one("#add-path", Input).cursor_blink = False
        await pilot.press(*"incoming/gamma.gguf", "enter")
        await settle(pilot, lambda: screen.verdict, what="the verdict")
        await pilot.pause()

    try:
        assert snap_compare(app, terminal_size=(80, 24), run_before=check)
    finally:
        core.close()
