"""The add-models dialog with a real manager: a good file shows its verdict and memory and is
added; a crafted file is refused with the reader's reason; cancel adds nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from textual.app import App
from textual.widgets import Button, Static

from orin_console.core.catalog.add import AddResult
from orin_console.testing.managers import make_core
from orin_console.tui.screens.add_models import AddModelsScreen, GGUFTree, gguf_paths

from gguf_craft import baseline
from tui_support import run, settle


class AddApp(App[None]):
    """Opens the dialog at once and keeps what it dismissed with."""

    def __init__(self, core: Any, start: Path | None = None) -> None:
        super().__init__()
        self.core = core
        self.start = start
        self.results: list[AddResult | None] = []

    def on_mount(self) -> None:
        self.push_screen(AddModelsScreen(self.core, start=self.start), self.results.append)


def crafted(path: Path) -> Path:
    """A GGUF whose header claims 60000 tensors: the reader must refuse it."""
    craft = baseline()
    craft.n_tensors = 60000
    path.write_bytes(craft.build())
    return path


def _verdict_text(app: App[None]) -> str:
    return str(app.screen.query_one("#add-verdict", Static).render())


def incoming(workdir: Path, name: str = "gamma.gguf") -> Path:
    """A copy of the tiny model under ``workdir/incoming`` (not in the catalog yet)."""
    folder = workdir / "incoming"
    folder.mkdir(exist_ok=True)
    return Path(shutil.copyfile(workdir / "alpha.gguf", folder / name))


def test_a_good_file_shows_its_verdict_and_memory_and_is_added(workdir: Path) -> None:
    new = incoming(workdir)
    with make_core(workdir) as core:
        app = AddApp(core)

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, AddModelsScreen)
                await pilot.press(*str(new), "enter")
                verdict = await settle(pilot, lambda: screen.verdict, what="the verdict")
                (item,) = verdict.accepted
                assert item.entry.id == "gamma" and item.info.architecture == "llama"
                assert item.prediction is not None and item.prediction.total > 0
                shown = _verdict_text(app)
                assert "✓ gamma.gguf: valid GGUF v3, llama" in shown
                assert "predicted" in shown and "weights" in shown and "admission: would fit now" in shown
                assert not screen.query_one("#add-confirm", Button).disabled
                await pilot.press("ctrl+s")
                await settle(pilot, lambda: app.results, what="the dialog to close")

        run(scenario())
        (result,) = app.results
        assert result is not None and [e.id for e in result.added] == ["gamma"]
        assert "gamma" in core.manager.catalog


def test_a_crafted_file_is_refused_with_its_reason_and_cancel_adds_nothing(workdir: Path) -> None:
    (workdir / "incoming").mkdir()
    bad = crafted(workdir / "incoming" / "evil\u202emodel.gguf")
    before = (workdir / "models.toml").read_text()
    with make_core(workdir) as core:
        app = AddApp(core)

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, AddModelsScreen)
                screen.check(bad)
                verdict = await settle(pilot, lambda: screen.verdict, what="the verdict")
                assert not verdict.accepted and len(verdict.refused) == 1
                assert "n_tensors" in verdict.refused[0].reason
                shown = _verdict_text(app)
                assert "✗ evil\ufffdmodel.gguf" in shown and "invalid GGUF: n_tensors" in shown
                assert "\u202e" not in shown
                assert screen.query_one("#add-confirm", Button).disabled
                await pilot.press("ctrl+s")  # refused: nothing happens
                await pilot.pause()
                assert app.screen is screen
                await pilot.press("escape")
                await settle(pilot, lambda: app.results, what="the dialog to close")

        run(scenario())
        assert app.results == [None]
        assert (workdir / "models.toml").read_text() == before


def test_the_browser_shows_folders_and_gguf_files_only(tmp_path: Path) -> None:
    for name in ("a.gguf", "B.GGUF", "notes.txt", ".hidden.gguf"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    shown = {p.name for p in gguf_paths(tmp_path.iterdir())}
    assert shown == {"a.gguf", "B.GGUF", "sub"}


def test_choosing_a_folder_in_the_browser_checks_every_file_in_it(workdir: Path) -> None:
    crafted(incoming(workdir).parent / "broken.gguf")
    with make_core(workdir) as core:
        app = AddApp(core, start=workdir)

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, AddModelsScreen)
                tree = screen.query_one(GGUFTree)
                tree.focus()
                await settle(pilot, lambda: any(str(n.label) == "incoming" for n in tree.root.children),
                             what="the tree to list the folder")
                node = next(n for n in tree.root.children if str(n.label) == "incoming")
                tree.move_cursor(node)
                await pilot.press("enter")
                verdict = await settle(pilot, lambda: screen.verdict, what="the verdict")
                assert [i.entry.id for i in verdict.accepted] == ["gamma"]
                assert [r.path.name for r in verdict.refused] == ["broken.gguf"]

        run(scenario())
