"""ConfirmScreen: admission's plan for an action, and yes / no before it runs."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from orin_console.core.memory.admission import Decision
from orin_console.core.text import sanitize
from orin_console.core.units import format_size


def describe_decision(decision: Decision) -> Text:
    """The plan in operator words: the verdict, the memory it needs, each limit, what would
    be unloaded or moved and why, and the pinned models left alone."""
    out = Text()
    verdict = "admitted" if decision.ok else "refused"
    out.append(f"{verdict.upper()}: ", style="bold")
    out.append(sanitize(decision.summary or decision.action) + "\n")
    if decision.action == "unload" and decision.frees and not decision.summary:
        out.append(f"gives back {format_size(decision.frees)} to the {sanitize(decision.from_tier or '?')} tier\n")
    if decision.strategy:
        note = ("the old runner serves until the new one is ready" if decision.strategy == "make-before-break"
                else "the model is unavailable while it moves (no room for both copies)")
        out.append(f"strategy: {sanitize(decision.strategy)}: {note}\n")
    needed = {k: v for k, v in decision.needed.items() if v}
    if needed:
        total = needed.pop("total", None)
        parts = ", ".join(f"{sanitize(k)} {format_size(v)}" for k, v in needed.items())
        out.append(f"needs {format_size(total) if total else '?'}" + (f" ({parts})" if parts else "") + "\n")
    for limit in decision.limits:
        mark = "✓" if limit.ok else "✗"
        out.append(f" {mark} {sanitize(limit.text)}\n")
    for reason in decision.reasons:
        if not any(reason == lim.text for lim in decision.limits):
            out.append(f" ✗ {sanitize(reason)}\n")
    for suggestion in decision.suggestions:
        out.append(f" → {sanitize(suggestion.text)}{'' if suggestion.helps else ' (not enough alone)'}\n")
    if decision.together:
        out.append(f" → unloading {', '.join(map(sanitize, decision.together))} together would make it fit\n")
    if decision.pinned:
        out.append(f" pinned, left alone: {', '.join(map(sanitize, decision.pinned))}\n")
    out.rstrip()
    return out


class ConfirmScreen(ModalScreen[bool]):
    """A yes / no dialog showing admission's plan for an action before it runs.

    Dismisses with True (go ahead) or False. A refused plan offers only "Close": there is
    nothing to confirm, only the reasons and what would make it fit.

    | Key | Action | Description |
    | :- | :- | :- |
    | y | `confirm` | Go ahead (when the plan was admitted). |
    | n, escape | `cancel` | Leave everything as it is. |

    Args:
        title: the action asked for ("unload alpha").
        decision: the manager's dry run for it.
        question: the question under the plan ("Unload alpha?").
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Yes", id="confirm.yes"),
        Binding("n,escape", "cancel", "No", id="confirm.no"),
    ]

    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;
        & > #confirm-box {
            width: 76; max-width: 100%; height: auto; max-height: 90%;
            border: round $primary; background: $surface; padding: 0 1;
            &.-refused { border: round $error; }
        }
        #confirm-plan { height: auto; max-height: 14; }
        #confirm-question { margin-top: 1; text-style: bold; }
        #confirm-buttons { height: auto; align-horizontal: right; }
        Button { margin-left: 1; min-width: 10; }
    }
    """

    def __init__(self, title: str, decision: Decision, question: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.decision = decision
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="" if self.decision.ok else "-refused") as box:
            box.border_title = Text(sanitize(self.title_text))
            with VerticalScroll(id="confirm-plan"):
                yield Static(describe_decision(self.decision))
            if self.decision.ok:
                yield Static(Text(sanitize(self.question or f"{self.title_text}?")), id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                if self.decision.ok:
                    yield Button("Yes (y)", variant="warning", id="yes", compact=True)
                    yield Button("No (n)", variant="default", id="no", compact=True)
                else:
                    yield Button("Close (esc)", variant="default", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes" and self.decision.ok)

    def action_confirm(self) -> None:
        """Go ahead (only an admitted plan)."""
        if self.decision.ok:
            self.dismiss(True)

    def action_cancel(self) -> None:
        """Leave everything as it is."""
        self.dismiss(False)
