"""The console's keys: its bindings, each action's plain name, and the key lists that the
help screen and the command palette show (as the operator's keymap remaps them).

:data:`BINDINGS` is :class:`~orin_console.tui.app.OrinApp`'s ``BINDINGS`` (Textual reads them
from the app class itself); the keymap (``Settings.keymap``, by binding id) is applied on mount.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType

if TYPE_CHECKING:
    from textual.app import App

    _AppBase = App[int]
else:
    _AppBase = object

BINDINGS: list[BindingType] = [
    Binding("slash", "focus_chat", "chat", id="chat.focus", tooltip="Type a prompt"),
    Binding("escape", "stop", "stop", show=False, id="stop",
            tooltip="Stop the answer, or leave the input"),
    Binding("l", "load", "load", id="model.load", tooltip="Load the selected model"),
    Binding("u", "unload", "unload", id="model.unload", tooltip="Unload the selected model"),
    Binding("r", "to_ram", "→ram", id="model.to_ram", tooltip="Move to the RAM tier"),
    Binding("s", "to_swap", "→swap", id="model.to_swap", tooltip="Move to the swap tier"),
    Binding("p", "pin", "pin", id="model.pin", tooltip="Pin or unpin the selected model"),
    Binding("a", "add", "add", id="models.add", tooltip="Add models from a file or folder"),
    Binding("o", "plan", "plan", id="plan.show", tooltip="The placement plan"),
    Binding("m", "cycle_mode", "mode", show=False, id="chat.mode",
            tooltip="Selection mode: auto, hybrid, manual"),
    Binding("t", "next_theme", "theme", show=False, id="theme.next", tooltip="Next theme"),
    Binding("question_mark", "help", "help", id="help", tooltip="Keys and panes"),
    Binding("ctrl+q", "quit", "quit", id="quit", priority=True, tooltip="Quit (every runner stops)"),
]


class ConsoleKeys(_AppBase):
    """The key lists of :class:`~orin_console.tui.app.OrinApp` (a mixin)."""

    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "chat.focus": "Chat: type a prompt", "stop": "Stop the answer / leave the input",
        "model.load": "Load the selected model", "model.unload": "Unload the selected model",
        "model.to_ram": "Move the selected model to the RAM tier",
        "model.to_swap": "Move the selected model to the swap tier",
        "model.pin": "Pin or unpin the selected model", "models.add": "Add models",
        "plan.show": "Show the placement plan", "chat.mode": "Cycle the selection mode",
        "theme.next": "Next theme", "help": "Help: keys and panes", "quit": "Quit",
    }
    """Each action's plain name (help screen, command palette)."""

    def _console_bindings(self) -> list[Binding]:
        return [b for b in self.BINDINGS if isinstance(b, Binding)]

    def key_display(self, binding: Binding) -> str:
        """The key(s) of ``binding`` as remapped by the keymap, as shown to the operator."""
        keys = self._keymap.get(binding.id or "", binding.key) if binding.id else binding.key
        return ", ".join(self.get_key_display(Binding(k.strip(), binding.action)) for k in keys.split(","))

    def key_list(self) -> list[tuple[str, str, str]]:
        """(keys, plain name, binding id) for every console action."""
        return [(self.key_display(b), self.DESCRIPTIONS.get(b.id or "", str(b.description)), b.id or "")
                for b in self._console_bindings()]

    def command_list(self) -> list[tuple[str, str, str]]:
        """(plain name, help, action) for the command palette."""
        return [(self.DESCRIPTIONS.get(b.id or "", str(b.description)), f"key: {self.key_display(b)}", b.action)
                for b in self._console_bindings()]
