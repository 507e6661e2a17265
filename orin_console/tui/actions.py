"""The console's actions on the catalog row under the cursor: load, unload, move, pin.

Mixed into :class:`~orin_console.tui.app.OrinApp`. A memory-changing action (``l u r s``)
first asks admission for its plan, in a worker (:class:`~orin_console.tui.messages.PlanReady`
brings it back); a refusal is shown with its reasons, an action that would take a model away
(an unload, a break-before-make move, a model that is answering) asks to confirm; then it runs
in a worker named for it, exclusive per model (group ``model-<id>``), whose progress shows in
the tier map, the catalog and the log. ``p`` pins or unpins in a worker of group ``pin-<id>``.
The app's one ``Worker.StateChanged`` handler reports how each ended.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.worker import get_current_worker

from orin_console.core.manager.types import ModelStatus, SystemStatus
from orin_console.core.memory.admission import Decision
from orin_console.core.text import sanitize
from orin_console.tui.backend import ConsoleBackend
from orin_console.tui.messages import PlanReady
from orin_console.tui.screens.confirm import ConfirmScreen
from orin_console.tui.widgets.catalog import CatalogTable

if TYPE_CHECKING:
    from textual.app import App

    _AppBase = App[int]
else:
    _AppBase = object

_VERB_TIER = {"load": None, "move to ram": "ram", "move to swap": "swap", "unload": "disk"}


class ModelActions(_AppBase):
    """The model actions of :class:`~orin_console.tui.app.OrinApp` (a mixin: the app holds
    ``backend``, ``status``, ``log_event`` and ``_live``)."""

    backend: ConsoleBackend
    status: SystemStatus | None

    if TYPE_CHECKING:
        @property
        def _live(self) -> bool: ...

        def log_event(self, level: str, text: str) -> None: ...

    def _model_status(self, model_id: str | None) -> ModelStatus | None:
        if model_id is None or self.status is None:
            return None
        return next((m for m in self.status.models if m.model_id == model_id), None)

    def _selected(self) -> str | None:
        model_id = self.query_one(CatalogTable).selected_model_id
        if model_id is None:
            self.notify("No model selected: pick a row in the catalog first.", severity="warning")
        return model_id

    def _ask_plan(self, verb: str) -> None:
        model_id = self._selected()
        if model_id is None:
            return
        tier = _VERB_TIER[verb]
        self.run_worker(partial(self._plan_worker, verb, model_id, tier), name=f"plan {verb} {model_id}",
                        group=f"plan-{model_id}", description=f"admission's plan to {verb} {model_id}",
                        thread=True, exclusive=True, exit_on_error=False)

    def _plan_worker(self, verb: str, model_id: str, tier: str | None) -> None:
        decision = self.backend.plan(model_id, tier)
        self.post_message(PlanReady(verb, model_id, decision.tier, decision))

    def on_plan_ready(self, message: PlanReady) -> None:
        if not self._live:
            return
        verb, model_id, decision = message.verb, message.model_id, message.decision
        title = f"{verb} {model_id}"
        if not decision.ok:
            self._log_refusal(title, decision)
            self.push_screen(ConfirmScreen(title, decision))
            return
        if decision.action == "noop":
            self.log_event("info", f"{sanitize(model_id)}: already in {decision.tier}; nothing to do")
            return
        self.log_event("info", f"plan to {sanitize(title)}: {sanitize(decision.explain())}")
        if self._needs_confirmation(decision):
            question = f"{title[0].upper()}{title[1:]}? It will be unavailable until it is loaded again." \
                if decision.action == "unload" else f"{title[0].upper()}{title[1:]}?"

            def confirmed(ok: bool | None) -> None:
                if ok:
                    self._run_op(verb, model_id, message.tier)
                else:
                    self.log_event("info", f"{sanitize(title)}: cancelled; nothing changed")

            self.push_screen(ConfirmScreen(title, decision, question), confirmed)
        else:
            self._run_op(verb, model_id, message.tier)

    def _needs_confirmation(self, decision: Decision) -> bool:
        """Ask first when a model would be taken away: an unload, a move that stops the old
        runner before the new one is ready, or an action on a model that is answering."""
        status = self._model_status(decision.model_id)
        busy = status is not None and status.busy
        return decision.action == "unload" or decision.strategy == "break-before-make" or busy

    def _log_refusal(self, title: str, decision: Decision) -> None:
        self.log_event("error", f"{sanitize(title)} refused: {sanitize(decision.summary)}")
        for reason in decision.reasons:
            self.log_event("error", f"  ✗ {sanitize(reason)}")
        for suggestion in decision.suggestions:
            self.log_event("info", f"  → {sanitize(suggestion.text)}")
        self.notify(sanitize(decision.explain()), title=f"{sanitize(title)} refused", severity="error",
                    markup=False)

    def _run_op(self, verb: str, model_id: str, tier: str) -> None:
        self.run_worker(partial(self._op_worker, model_id, tier), name=f"{verb} {model_id}",
                        group=f"model-{model_id}", description=f"{verb} {model_id}",
                        thread=True, exclusive=True, exit_on_error=False)

    def _op_worker(self, model_id: str, tier: str) -> ModelStatus | None:
        backend = self.backend
        future = backend.unload(model_id) if tier == "disk" else backend.load(model_id, tier)
        worker = get_current_worker()
        while True:  # the app can quit during a long load: never hold its shutdown
            try:
                return future.result(timeout=0.1)
            except TimeoutError:
                if worker.is_cancelled:
                    return None

    def _pin_worker(self, model_id: str) -> ModelStatus:
        return self.backend.toggle_pin(model_id)

    def action_load(self) -> None:
        """Load the selected model into its catalog tier (plan first)."""
        self._ask_plan("load")

    def action_unload(self) -> None:
        """Unload the selected model (plan and confirm first)."""
        self._ask_plan("unload")

    def action_to_ram(self) -> None:
        """Load or move the selected model into the RAM tier (plan first)."""
        self._ask_plan("move to ram")

    def action_to_swap(self) -> None:
        """Load or move the selected model into the swap tier (plan first)."""
        self._ask_plan("move to swap")

    def action_pin(self) -> None:
        """Pin or unpin the selected model (the placement plan keeps a pinned model put)."""
        model_id = self._selected()
        if model_id is None:
            return
        self.run_worker(partial(self._pin_worker, model_id), name=f"pin/unpin {model_id}",
                        group=f"pin-{model_id}", thread=True, exclusive=False, exit_on_error=False)
