"""The console's add dialog with hostile paths typed into it: a NUL, a newline, a bidi
override, a path that does not exist, a FIFO, a folder without models, an unknown ``~user``,
a symlink loop. Each ends in a one-line verdict naming the problem (sanitised), the Add
button stays disabled, the app keeps running and the catalog is unchanged."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.widgets import Button, Input, Static

from orin_console.core.catalog.add import AddResult
from orin_console.testing.managers import make_core
from orin_console.tui.screens.add_models import AddModelsScreen

from tui_support import run, settle


class AddApp(App[None]):
    """Opens the dialog at once and keeps what it dismissed with."""

    def __init__(self, core: Any) -> None:
        super().__init__()
        self.core = core
        self.results: list[AddResult | None] = []

    def on_mount(self) -> None:
        self.push_screen(AddModelsScreen(self.core), self.results.append)


def _fifo(home: Path) -> str:
    os.mkfifo(home / "pipe.gguf")
    return str(home / "pipe.gguf")


def _loop(home: Path) -> str:
    (home / "loop.gguf").symlink_to(home / "loop.gguf")
    return str(home / "loop.gguf")


def _empty_folder(home: Path) -> str:
    (home / "empty").mkdir()
    return str(home / "empty")


# (what is typed, made from the work folder; words the verdict must hold)
CASES: dict[str, tuple[Callable[[Path], str], tuple[str, ...]]] = {
    "nul": (lambda h: f"{h}/a\x00b.gguf", ("NUL character",)),
    "newline": (lambda h: f"{h}/new\nline.gguf", ("no such file or folder", "new\ufffdline.gguf")),
    "bidi": (lambda h: f"{h}/evil\u202egguf.exe", ("no such file or folder", "evil\ufffdgguf.exe")),
    "escape": (lambda h: f"{h}/\x1b[2Jx.gguf", ("no such file or folder", "\ufffd[2Jx.gguf")),
    "missing": (lambda h: f"{h}/missing.gguf", ("no such file or folder",)),
    "fifo": (_fifo, ("not a regular file or a folder",)),
    "symlink-loop": (_loop, ("Too many levels of symbolic links",)),
    "empty-folder": (_empty_folder, ("no .gguf files in this folder",)),
    "unknown-user": (lambda h: "~no_such_user_here/x.gguf", ("no such file or folder",)),
    "very-long": (lambda h: f"{h}/{'x' * 300}.gguf", ("name too long",)),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_hostile_path_typed_into_the_add_dialog_is_refused_in_one_line(workdir: Path, kind: str) -> None:
    make, needles = CASES[kind]
    typed = make(workdir)
    before = (workdir / "models.toml").read_bytes()
    with make_core(workdir) as core:
        app = AddApp(core)

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, AddModelsScreen)
                field = screen.query_one("#add-path", Input)
                field.value = typed
                field.focus()
                await pilot.press("enter")
                verdict = await settle(pilot, lambda: screen.verdict, what="the verdict")
                assert not verdict.addable
                shown = str(screen.query_one("#add-verdict", Static).render())
                assert shown.startswith("✗ "), shown
                assert len(shown.strip().splitlines()) == 1, shown
                for needle in needles:
                    assert needle in shown, (needle, shown)
                for bad in ("\x00", "\n", "\x1b", "\u202e", "Traceback", "Error:"):
                    assert bad not in shown.strip(), (bad, shown)
                assert screen.query_one("#add-confirm", Button).disabled
                await pilot.press("ctrl+s")  # nothing to add: the dialog stays
                await pilot.pause()
                assert app.screen is screen
                await pilot.press("escape")
                await settle(pilot, lambda: app.results, what="the dialog to close")

        run(scenario())
        assert app.results == [None]
    assert (workdir / "models.toml").read_bytes() == before
