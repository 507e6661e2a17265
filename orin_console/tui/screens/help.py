"""HelpScreen: every key of the console (as remapped by the ``keymap`` setting) and what the
panes show."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

PANES = (
    ("Tiers", "RAM and swap budgets drawn to scale, a block per model (its colour its state), "
              "free space and the reserve; the disk tier lists the models not loaded."),
    ("Catalog", "every model: tier, state, memory (predicted, then measured), tok/s, uses. "
                "The row under the cursor is what l u r s p act on; press , to sort by the next "
                "column, . to reverse."),
    ("Chat", "answers stream at the bottom with the model, why it was picked, TTFT and tok/s."),
    ("Log", "loads, refusals with their reasons, crashes, telemetry fallbacks, plan changes "
            "(also in console.log under the state folder)."),
)


class HelpScreen(ModalScreen[None]):
    """The keys (with their binding ids, for the ``keymap`` setting) and the panes.

    | Key | Action | Description |
    | :- | :- | :- |
    | escape, q, ? | `close` | Back to the console. |

    Args:
        keys: (key as shown, what it does, binding id) for every console action.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        & > VerticalScroll {
            width: 78; max-width: 100%; height: auto; max-height: 100%;
            border: round $primary; background: $surface; padding: 0 1;
        }
        .help-panes { margin-top: 1; }
    }
    """

    def __init__(self, keys: Sequence[tuple[str, str, str]]) -> None:
        super().__init__()
        self.keys = tuple(keys)

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        table.add_column(style="dim", no_wrap=True)
        for key, description, binding_id in self.keys:
            table.add_row(Text(key), Text(description), Text(binding_id))
        panes = Table.grid(padding=(0, 1))
        panes.add_column(style="bold", no_wrap=True)
        panes.add_column()
        for name, text in PANES:
            panes.add_row(name, text)
        with VerticalScroll() as box:
            box.border_title = "Keys · remap them with keymap in the settings"
            box.border_subtitle = "escape closes"
            yield Static(table)
            yield Static(panes, classes="help-panes")

    def action_close(self) -> None:
        """Back to the console."""
        self.dismiss(None)
