"""The placement plan: where the optimiser would put every model and why, the moves from
where they are now, and applying them move by move with progress.

The plan comes from the back end (:meth:`~orin_console.tui.backend.ConsoleBackend.placement_plan`:
in process, the optimiser's ``run_once()``, which computes and publishes it; when
auto-optimise is on, that round would also apply it unasked, so the screen then shows its
latest plan, or a fresh ``plan_for``; attached, the server's ``GET /placement/plan``).
Applying runs in a thread worker, one move at a time through the back end's ``apply_move``
(the core's own :func:`~orin_console.core.placement.optimiser.apply`, which re-checks each
move and goes through admission); a plan that would unload a model asks first.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Static

from orin_console.core.placement.optimiser import MoveOutcome
from orin_console.core.placement.plan import Plan
from orin_console.core.text import sanitize
from orin_console.core.tier import LOADED_TIERS
from orin_console.core.units import format_size
from orin_console.tui.backend import backend_of

__all__ = ["PlanScreen", "describe_plan"]


def describe_plan(plan: Plan, now: dict[str, str]) -> Text:
    """Tiers with their use, each model's placement and why (as Text: no markup)."""
    text = Text()
    for tier in LOADED_TIERS:
        over = "" if plan.fits[tier] else "  OVER BUDGET (pinned models)"
        members = ", ".join(sanitize(m) for m in plan.members(tier)) or "(none)"
        text.append(f"{tier:<4} ", style="bold")
        text.append(f"{format_size(plan.used[tier])} of {format_size(plan.budgets[tier])}: {members}{over}\n")
    text.append("disk ", style="bold")
    text.append(", ".join(sanitize(m) for m in plan.members("disk")) or "(none)")
    text.append("\n")
    for model_id, where in plan.placements.items():
        was = now.get(model_id, "disk")
        arrow = f"{was} → {where}" if was != where else f"stays in {where}"
        text.append(f"{sanitize(model_id)}", style="bold")
        text.append(f" {arrow}: {sanitize(plan.reasons.get(model_id, ''))}\n")
    text.rstrip()
    return text


class PlanScreen(ModalScreen[list[MoveOutcome] | None]):
    """The optimiser's placement plan, its reasons and moves; apply it move by move.

    Dismisses with the outcomes when the plan was applied, otherwise None.

    | Key | Action | Description |
    | :- | :- | :- |
    | a | `apply` | Apply the moves (asks first when one would unload a model). |
    | y / n | `answer` | Answer that question. |
    | r | `refresh` | Compute the plan again. |
    | escape | `close` | Close (a running apply goes on in the background). |

    Args:
        backend: the console's back end (:class:`~orin_console.tui.backend.ConsoleBackend`)
            or a core (wrapped in an in-process back end).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "apply", "Apply", id="plan.apply"),
        Binding("y", "answer(True)", "Yes", id="plan.yes"),
        Binding("n", "answer(False)", "No", id="plan.no"),
        Binding("r", "refresh", "Refresh", id="plan.refresh"),
        Binding("escape", "close", "Close", id="plan.close"),
    ]

    DEFAULT_CSS = """
    PlanScreen {
        align: center middle;
        & > #plan-dialog {
            width: 96%; max-width: 110; height: 96%;
            border: round $primary; background: $surface; padding: 0 1;
        }
        #plan-body { height: 1fr; }
        #plan-moves { margin-top: 1; }
        #plan-status { height: auto; color: $text-muted; }
        #plan-status.-question { color: $warning; text-style: bold; }
        #plan-status.-failed { color: $error; }
    }
    """

    state: reactive[str] = reactive("loading")
    """``loading``, ``ready``, ``confirming`` (asking before an unload), ``applying`` or ``applied``."""

    class Fetched(Message, bubble=False):
        """Internal: the plan (or why it could not be computed)."""

        def __init__(self, plan: Plan | None, now: dict[str, str], error: str | None) -> None:
            super().__init__()
            self.plan = plan
            self.now = now
            self.error = error

    class Progress(Message, bubble=False):
        """Internal: move ``index`` started (``outcome`` None) or ended."""

        def __init__(self, index: int, outcome: MoveOutcome | None) -> None:
            super().__init__()
            self.index = index
            self.outcome = outcome

    class Applied(Message):
        """The plan was applied; ``outcomes`` in the order the moves were tried."""

        def __init__(self, outcomes: list[MoveOutcome]) -> None:
            super().__init__()
            self.outcomes = outcomes

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self._backend = backend_of(backend)
        self.plan: Plan | None = None
        self.outcomes: list[MoveOutcome | None] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="plan-dialog") as box:
            box.border_title = "Placement plan"
            box.border_subtitle = "a apply · r refresh · esc close"
            with VerticalScroll(id="plan-body"):
                yield Static(Text("computing the plan…"), id="plan-placements")
                yield Static(id="plan-moves")
            yield Static(id="plan-status")

    def on_mount(self) -> None:
        self._fetch()

    # -- the plan -------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="plan-fetch", exit_on_error=False, description="compute the plan")
    def _fetch(self) -> None:
        try:
            plan, now = self._backend.placement_plan()
        except Exception as exc:  # noqa: BLE001 - shown on the screen
            self.post_message(self.Fetched(None, {}, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Fetched(plan, now, None))

    def on_plan_screen_fetched(self, message: Fetched) -> None:
        if message.plan is None:
            self._status(f"the plan could not be computed: {message.error}", "-failed")
            self.state = "ready"
            return
        self.plan = message.plan
        self.outcomes = [None] * len(message.plan.moves)
        self.query_one("#plan-placements", Static).update(describe_plan(message.plan, message.now))
        self._show_moves()
        self.state = "ready"
        if message.plan.moves:
            self._status(f"{len(message.plan.moves)} moves: a applies them in this order")
        else:
            self._status("nothing to do: every model is where it belongs")

    def _show_moves(self, running: int | None = None) -> None:
        plan = self.plan
        text = Text()
        if plan is None or not plan.moves:
            text.append("Moves: none")
        else:
            text.append(f"Moves ({len(plan.moves)}, in this order):\n", style="bold")
            for i, move in enumerate(plan.moves):
                outcome = self.outcomes[i] if i < len(self.outcomes) else None
                mark = "…" if running == i else ("✓" if outcome and outcome.ok else "✗" if outcome else "·")
                text.append(f"{mark} {i + 1}. {move.kind} {sanitize(move.model_id)} "
                            f"{move.from_tier} → {move.to_tier}: {sanitize(move.reason)}")
                if outcome is not None:
                    text.append(f" [{outcome.status}: {sanitize(outcome.detail)}]",
                                style="" if outcome.ok else "bold")
                text.append("\n")
            text.rstrip()
        self.query_one("#plan-moves", Static).update(text)

    def _status(self, line: str, klass: str = "") -> None:
        status = self.query_one("#plan-status", Static)
        status.update(Text(line))
        status.set_class(klass == "-question", "-question")
        status.set_class(klass == "-failed", "-failed")

    # -- actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "answer":
            return self.state == "confirming"
        if action in ("apply", "refresh"):
            return self.state in ("ready", "applied")
        return True

    def action_refresh(self) -> None:
        """Compute the plan again."""
        self.state = "loading"
        self._status("computing the plan…")
        self._fetch()

    def action_apply(self) -> None:
        """Apply the moves; ask first when one would unload a model."""
        plan = self.plan
        if plan is None or not plan.moves:
            self.notify("Nothing to apply.", timeout=3)
            return
        unloads = [sanitize(m.model_id) for m in plan.moves if m.kind == "unload"]
        if unloads:
            self.state = "confirming"
            self._status(f"applying unloads {', '.join(unloads)} (an answer in progress is spared): "
                         "apply? y / n", "-question")
            return
        self._start_apply()

    def action_answer(self, yes: bool) -> None:
        """The answer to "apply would unload …?"."""
        if yes:
            self._start_apply()
        else:
            self.state = "ready"
            self._status("not applied: nothing was changed")

    def action_close(self) -> None:
        """Close the screen (with the outcomes when the plan was applied)."""
        done = [o for o in self.outcomes if o is not None]
        self.dismiss(done if self.state == "applied" else None)

    # -- applying -------------------------------------------------------------------------

    def _start_apply(self) -> None:
        assert self.plan is not None
        self.state = "applying"
        self.outcomes = [None] * len(self.plan.moves)
        self._status("applying…")
        self._apply(self.plan)

    @work(thread=True, exclusive=True, group="plan-apply", exit_on_error=False, description="apply the plan")
    def _apply(self, plan: Plan) -> None:
        outcomes: list[MoveOutcome] = []
        for index, move in enumerate(plan.moves):
            self.post_message(self.Progress(index, None))
            try:
                outcome = self._backend.apply_move(plan, move)
            except Exception as exc:  # noqa: BLE001 - shown as the move's outcome, never a crash
                outcome = MoveOutcome(move, "failed", sanitize(str(exc)) or type(exc).__name__)
            outcomes.append(outcome)
            self.post_message(self.Progress(index, outcome))
        self.post_message(self.Applied(outcomes))

    def on_plan_screen_progress(self, message: Progress) -> None:
        if message.outcome is None:
            assert self.plan is not None
            move = self.plan.moves[message.index]
            self._status(f"move {message.index + 1} of {len(self.plan.moves)}: {move.kind} "
                         f"{sanitize(move.model_id)} → {move.to_tier}…")
            self._show_moves(running=message.index)
        else:
            self.outcomes[message.index] = message.outcome
            self._show_moves()

    def on_plan_screen_applied(self, message: Applied) -> None:
        self.state = "applied"
        done = sum(o.ok for o in message.outcomes)
        klass = "" if done == len(message.outcomes) else "-failed"
        self._status(f"applied: {done} of {len(message.outcomes)} moves done (esc closes, r recomputes)", klass)

