"""The add-models dialog: a path or a folder browser filtered to ``*.gguf``, each file's
validation by the bounded GGUF reader and its predicted memory, then the catalog write.

Nothing is written until the operator confirms: choosing a file only reads its header (and
the catalog); ``Add`` calls the back end's ``add(path)`` (in process ``manager.add_models``,
attached ``POST /models/add``), which validates again under the catalog's lock. The dialog
dismisses with the :class:`~orin_console.core.catalog.add.AddResult`, or None on cancel.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Static

from orin_console.core.catalog.add import AddResult
from orin_console.core.catalog.store import expand_user
from orin_console.core.errors import OrinError
from orin_console.core.text import sanitize, sanitize_path
from orin_console.tui.backend import NotSupported, backend_of
from orin_console.tui.screens.add_verdict import FileVerdict, Verdict, check_path, describe

__all__ = ["AddModelsScreen", "FileVerdict", "GGUFTree", "Verdict", "check_path", "gguf_paths"]

def gguf_paths(paths: Iterable[Path]) -> list[Path]:
    """The folders and ``*.gguf`` files among ``paths``, hidden entries left out."""
    return [p for p in paths if not p.name.startswith(".") and (p.suffix.lower() == ".gguf" or p.is_dir())]


class GGUFTree(DirectoryTree):
    """A folder browser that shows folders and ``*.gguf`` files only (no hidden entries)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return gguf_paths(paths)


class AddModelsScreen(ModalScreen[AddResult | None]):
    """Choose GGUF files, see their validation and predicted memory, add them to the catalog.

    | Key | Action | Description |
    | :- | :- | :- |
    | escape | `cancel` | Close without adding anything. |
    | ctrl+s | `add` | Add the checked files to the catalog. |

    Args:
        backend: the console's back end (:class:`~orin_console.tui.backend.ConsoleBackend`)
            or a core (wrapped in an in-process back end).
        start: the folder the browser opens at (default: the catalog's folder).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="add.cancel"),
        Binding("ctrl+s", "add", "Add", id="add.confirm"),
    ]

    DEFAULT_CSS = """
    AddModelsScreen {
        align: center middle;
        & > #add-dialog {
            width: 96%; max-width: 110; height: 96%;
            border: round $primary; background: $surface; padding: 0 1;
        }
        #add-title { text-style: bold; color: $text; }
        #add-path { margin: 0; }
        #add-tree { height: 1fr; min-height: 4; border: none; background: $surface; }
        #add-verdict-box { height: auto; max-height: 9; }
        #add-verdict { color: $text; }
        #add-verdict.-refused { color: $error; }
        #add-buttons { height: 1; align-horizontal: right; }
        #add-buttons Button { margin-left: 2; }
    }
    """

    class Checked(Message, bubble=False):
        """Internal: a verdict is ready."""

        def __init__(self, verdict: Verdict) -> None:
            super().__init__()
            self.verdict = verdict

    class Added(Message, bubble=False):
        """Internal: the catalog write ended (a result or an error)."""

        def __init__(self, result: AddResult | None, error: str | None) -> None:
            super().__init__()
            self.result = result
            self.error = error

    def __init__(self, backend: Any, *, start: Path | None = None) -> None:
        super().__init__()
        self._backend = backend_of(backend)
        self._start = start
        self._verdict: Verdict | None = None

    def compose(self) -> ComposeResult:
        start = self._start or self._backend.add_folder
        with Vertical(id="add-dialog"):
            yield Static("Add models: a .gguf file or a folder (enter checks it)", id="add-title")
            yield Input(placeholder="path to a .gguf file or a folder", id="add-path", compact=True)
            yield GGUFTree(start, id="add-tree")
            with VerticalScroll(id="add-verdict-box"):
                yield Static(Text("choose a file to see its validation and predicted memory"), id="add-verdict")
            with Horizontal(id="add-buttons"):
                yield Button("Add", id="add-confirm", disabled=True, compact=True, variant="primary")
                yield Button("Cancel", id="add-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#add-path", Input).focus()

    @property
    def verdict(self) -> Verdict | None:
        """The latest verdict (None until a path was checked)."""
        return self._verdict

    # -- choosing -------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():  # "~nosuchuser/x" is taken as typed (Path.expanduser raised)
            self.check(expand_user(event.value.strip()))

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self._choose(event.path)

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        self._choose(event.path)

    def _choose(self, path: Path) -> None:
        self.query_one("#add-path", Input).value = str(path)
        self.check(path)

    def check(self, path: Path) -> None:
        """Validate ``path`` in the background; the verdict replaces the previous one."""
        self._verdict = None
        self.query_one("#add-confirm", Button).disabled = True
        self._show(Text("checking " + sanitize_path(path) + " …"), refused=False)
        self._check(path)

    @work(thread=True, exclusive=True, group="add-check", exit_on_error=False, description="validate GGUF files")
    def _check(self, path: Path) -> None:
        try:
            verdict = self._backend.add_preview(path)
        except Exception as exc:  # noqa: BLE001 - shown in the dialog, never a crash
            verdict = Verdict(path, (), (), f"{type(exc).__name__}: {exc}")
        self.post_message(self.Checked(verdict))

    def on_add_models_screen_checked(self, message: Checked) -> None:
        self._verdict = message.verdict
        self._show(describe(message.verdict), refused=not message.verdict.addable)
        self.query_one("#add-confirm", Button).disabled = not message.verdict.addable

    def _show(self, text: Text, *, refused: bool) -> None:
        box = self.query_one("#add-verdict", Static)
        box.update(text)
        box.set_class(refused, "-refused")

    # -- adding ---------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "add-confirm":
            self.action_add()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        """Close; nothing is added."""
        self.dismiss(None)

    def action_add(self) -> None:
        """Add the checked files (only after a verdict that accepts at least one)."""
        verdict = self._verdict
        if verdict is None or not verdict.addable:
            self.notify("Check a valid .gguf file or folder first.", severity="warning")
            return
        self.query_one("#add-confirm", Button).disabled = True
        self._add(verdict.path)

    @work(thread=True, exclusive=True, group="add-write", exit_on_error=False, description="add models to the catalog")
    def _add(self, path: Path) -> None:
        try:
            result, error = self._backend.add(path), None
        except (OrinError, NotSupported) as exc:
            result, error = None, str(exc)
        self.post_message(self.Added(result, error))

    def on_add_models_screen_added(self, message: Added) -> None:
        if message.result is not None and message.result.added:
            self.dismiss(message.result)
            return
        reasons = message.error or "; ".join(r.reason for r in (message.result.refused if message.result else ()))
        self._show(Text("✗ nothing added: " + sanitize(reasons or "no file was accepted")), refused=True)
