"""OrinApp: the operator console (gauges, tier map, catalog, log, chat) over one core.

Built by :func:`build_app`, which the CLI (``orin-console`` with no command) and the tests
share. The app only talks to the core through :class:`~orin_console.tui.bridge.CoreBridge`
(events in) and thread workers (calls out), so the event loop never blocks on the core:

- ``l u r s p`` act on the catalog row under the cursor. A memory-changing action first
  asks admission for its plan (a worker); a refusal is shown with its reasons, an action
  that would take a model away (an unload, a break-before-make move) asks to confirm; then it
  runs in a worker named for it, exclusive per model, whose progress shows in the tier map,
  the catalog and the log.
- One ``Worker.StateChanged`` handler turns any worker's error into a log line and a
  notification.
- Quitting, SIGHUP and SIGTERM all end :meth:`OrinApp.run`; the caller then closes the core
  (see ``orin_console.cli.console``), so no runner survives.
- With ``api`` (``orin-console --serve``) the app starts the API over the same core once its
  bridge listens (so the first request already shows) and stops it when it unmounts, before
  the caller closes the core. Its requests show in the log (``api request … → model``) and,
  like every generation, in the tier map and the catalog.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from orin_console.core.errors import OrinError
from orin_console.core.manager.types import ModelState, ModelStatus, SystemStatus
from orin_console.core.memory.admission import AdmissionRefused, Decision
from orin_console.core.service import Core
from orin_console.core.settings import Settings
from orin_console.core.text import sanitize
from orin_console.core.units import format_size
from orin_console.tui.bridge import CoreBridge
from orin_console.tui.commands import ConsoleCommands
from orin_console.tui.messages import ApiServing as ApiStarted
from orin_console.tui.messages import LogLine, PlanReady, StatusUpdated, TelemetryUpdated
from orin_console.tui.screens.add_models import AddModelsScreen
from orin_console.tui.screens.confirm import ConfirmScreen
from orin_console.tui.screens.help import HelpScreen
from orin_console.tui.screens.plan import PlanScreen
from orin_console.tui.themes import DEFAULT_THEME, THEMES_DIR, load_themes
from orin_console.tui.widgets.catalog import CatalogTable, ModelDetails, file_facts
from orin_console.tui.widgets.chat import ChatPane
from orin_console.tui.widgets.gauges import GaugeBar, GaugesPane
from orin_console.tui.widgets.log import LogPane
from orin_console.tui.widgets.tier_map import TierMap

_VERB_TIER = {"load": None, "move to ram": "ram", "move to swap": "swap", "unload": "disk"}


class ApiServing(Protocol):
    """What the console needs of an API server running beside it (``api.background``'s
    :class:`~orin_console.api.background.BackgroundServer`; the console never imports the web
    stack itself)."""

    @property
    def requested_url(self) -> str: ...

    def start(self, on_started: Callable[[str], Any] | None = None,
              on_failed: Callable[[str], Any] | None = None) -> None: ...

    def stop(self) -> None: ...


def _error_text(error: BaseException | None) -> tuple[str, list[str]]:
    """An exception as (headline, itemised lines), sanitised."""
    if isinstance(error, AdmissionRefused):
        d = error.decision
        items = [*d.reasons, *(s.text for s in d.suggestions)]
        return sanitize(d.summary or "refused"), [sanitize(i) for i in items]
    if isinstance(error, OrinError):
        return sanitize(str(error), multiline=False), []
    return f"{type(error).__name__}: {sanitize(str(error))}", []


class OrinApp(App[int]):
    """The console. See the module docstring; the keys are in ``BINDINGS`` and ``?``."""

    CSS_PATH = "app.tcss"
    TITLE = "Orin Console"
    COMMANDS: ClassVar[set[Any]] = App.COMMANDS | {ConsoleCommands}
    ENABLE_COMMAND_PALETTE = True
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012 - Textual's own type
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012

    BINDINGS: ClassVar[list[BindingType]] = [
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

    def __init__(self, core: Core, *, settings: Settings, log_path: Path | None = None,
                 clock: Callable[[], float] = time.time,
                 mono_clock: Callable[[], float] = time.monotonic, api: ApiServing | None = None) -> None:
        super().__init__()
        self.core = core
        self.api = api
        self.settings = settings
        self.log_path = log_path
        self.clock = clock
        self.mono_clock = mono_clock
        self.status: SystemStatus | None = None
        self.handle_signals = False
        """Set by the CLI: SIGHUP and SIGTERM end the app (never in tests' own process)."""
        self.terminated_by: signal.Signals | None = None
        self.bridge = CoreBridge(core, self)
        self.theme_names: list[str] = []
        self._pending_log: list[tuple[str, str]] = []
        self._chat: ChatPane | None = None
        self._mounted = False

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield GaugeBar(clock=self.mono_clock, id="gauge-bar")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield TierMap(id="tiers")
                yield CatalogTable(id="catalog")
                yield ModelDetails(id="details")
                yield LogPane(log_path=self.log_path, clock=self.clock, id="log")
            with Vertical(id="right"):
                yield GaugesPane(clock=self.mono_clock, id="gauges-pane")
                yield ChatPane(self.core.engine, id="chat")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        themes, problems = load_themes(THEMES_DIR)
        for theme in themes:
            self.register_theme(theme)
        self.theme_names = [t.name for t in themes]
        for problem in problems:
            self.log_event("warning", f"theme skipped: {problem}")
        wanted = self.settings.theme
        if wanted not in self.available_themes:
            self.log_event("warning", f"theme {wanted!r} not found under themes/; using {DEFAULT_THEME}")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted
        self.set_keymap(self.settings.keymap)
        self.query_one("#tiers").border_title = "Tiers"
        self.query_one("#catalog").border_title = "Catalog"
        self.query_one("#log").border_title = "Log"
        self.query_one("#gauges-pane").border_title = "Gauges"
        self.query_one("#details").border_title = "Selected"
        self._title_chat()
        self._mounted = True
        for level, text in self._pending_log:
            self.log_event(level, text)
        self._pending_log.clear()
        catalog = self.core.manager.catalog
        self.log_event("info", f"catalog: {len(catalog.entries)} models; RAM tier "
                               f"{format_size(self.settings.ram_budget_bytes)}, swap tier "
                               f"{format_size(self.settings.swap_budget_bytes)}; ? for help")
        if self.core.sampler is None:
            self.log_event("info", "telemetry off: gauges show nothing")
        self.bridge.start()
        if self.api is not None:
            self._start_api(self.api)
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_signal, sig)
        self._chat = self.query_one(ChatPane)
        self.query_one(CatalogTable).focus()
        self.watch(self.screen, "focused", self._keep_focus)

    def _keep_focus(self, focused: object) -> None:
        if not self._live:
            return
        # Leaving the chat input (escape) hands the keys back to the catalog, so l u r s p
        # act at once without a key to find it again.
        if focused is None and self.screen is self.screen_stack[0]:
            self.query_one(CatalogTable).focus()

    def on_resize(self) -> None:
        # The tier map's legend takes three rows: only when there is room for it.
        for tier_map in self.query(TierMap):
            tier_map.show_legend = self.size.height >= 36

    def _start_api(self, api: ApiServing) -> None:
        self.log_event("info", f"API: starting on {api.requested_url}")

        def started(url: str) -> None:  # on the server's thread
            self.post_message(LogLine("info", f"API: serving {url} (docs at {url}/docs); "
                                              "its requests show here"))
            self.post_message(ApiStarted(url))

        def failed(reason: str) -> None:
            self.post_message(LogLine("error", f"API: not serving: {sanitize(reason)}", notify=True))

        api.start(on_started=started, on_failed=failed)

    def on_api_serving(self, message: ApiStarted) -> None:
        if self._live:
            self.query_one("#log").border_subtitle = f"API {message.url.removeprefix('http://')}"

    def on_unmount(self) -> None:
        if self._chat is not None:
            self._chat.stop()  # a generation ends within one token: its worker can finish
        if self.api is not None:
            self.api.stop()  # open streams end (ShuttingDown); before the caller closes the core
        self.bridge.stop()

    @property
    def _live(self) -> bool:
        """Mounted and not shutting down: the panes exist (messages still arrive while the
        app closes, after its widgets are gone)."""
        return self._mounted and self._running

    def _on_signal(self, sig: signal.Signals) -> None:
        self.terminated_by = sig
        self.exit(128 + sig)

    def _title_chat(self) -> None:
        chat = self.query_one(ChatPane)
        chat.border_title = f"Chat · {chat.mode}"

    # -- the core's events ----------------------------------------------------------------

    def on_status_updated(self, message: StatusUpdated) -> None:
        if not self._live:
            return
        self.status = status = message.status
        self.query_one(TierMap).status = status
        table = self.query_one(CatalogTable)
        if message.catalog is not None and message.catalog is not table.catalog:
            table.catalog = message.catalog
            self.run_worker(partial(file_facts, message.catalog), name="read file facts",
                            group="file-facts", thread=True, exclusive=True, exit_on_error=False)
        table.usage = message.usage
        table.models = status.models
        self._show_details()

    def on_telemetry_updated(self, message: TelemetryUpdated) -> None:
        if not self._live:
            return
        bar = self.query_one(GaugeBar)
        bar.sample = message.sample
        bar.source_note = message.source_note
        bar.history = message.history
        pane = self.query_one(GaugesPane)
        pane.history = message.history or (message.sample,)
        pane.source_note = message.source_note

    def on_log_line(self, message: LogLine) -> None:
        self.log_event(message.level, message.text)
        if message.notify:
            self.notify(message.text, severity="error" if message.level == "error" else "warning",
                        markup=False)

    @on(CatalogTable.Selected)
    def _on_catalog_selected(self, message: CatalogTable.Selected) -> None:
        self._show_details()

    def _show_details(self) -> None:
        if not self._live:
            return
        model_id = self.query_one(CatalogTable).selected_model_id
        self.query_one(ModelDetails).model = self._model_status(model_id)

    def log_event(self, level: str, text: str) -> None:
        """Write one line in the log pane and the log file (before mount: as soon as it is)."""
        if not self._mounted:
            self._pending_log.append((level, text))
            return
        if not self._live:
            return
        self.query_one(LogPane).write_event(level, text)

    # -- actions on the selected model ----------------------------------------------------

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
        decision = self.core.manager.plan(model_id, tier)
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
        manager = self.core.manager
        future = manager.unload(model_id) if tier == "disk" else manager.load(model_id, tier)
        worker = get_current_worker()
        while True:  # the app can quit during a long load: never hold its shutdown
            try:
                return future.result(timeout=0.1)
            except TimeoutError:
                if worker.is_cancelled:
                    return None

    def _pin_worker(self, model_id: str) -> ModelStatus:
        manager = self.core.manager  # read the pin here, not from a status that may lag
        return manager.pin(model_id, not manager.catalog.get(model_id).pin)

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

    # -- other actions --------------------------------------------------------------------

    def action_focus_chat(self) -> None:
        """Put the keyboard in the chat input."""
        self.query_one(ChatPane).focus_input()

    def action_stop(self) -> None:
        """Stop the answer in progress; otherwise leave the chat input for the catalog."""
        if not self.query_one(ChatPane).stop():
            self.query_one(CatalogTable).focus()

    def action_cycle_mode(self) -> None:
        """Cycle the chat's selection mode (auto, hybrid, manual)."""
        mode = self.query_one(ChatPane).cycle_mode()
        self._title_chat()
        self.log_event("info", f"selection mode: {mode}")

    def action_next_theme(self) -> None:
        """Switch to the next theme from themes/ (in name order)."""
        names = self.theme_names or [self.theme]
        at = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(at + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_help(self) -> None:
        """Show every key and what the panes show."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_list()))

    def action_add(self) -> None:
        """Add models from a file or a folder."""
        self.push_screen(AddModelsScreen(self.core))

    def action_plan(self) -> None:
        """Show the placement plan (and apply it from there)."""
        self.push_screen(PlanScreen(self.core))

    # -- keys for the help screen and the palette -----------------------------------------

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

    # -- worker errors --------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker outcomes are reported: errors as a log line and a notification."""
        if not self._live:
            return
        worker = event.worker
        if event.state == WorkerState.ERROR:
            headline, items = _error_text(worker.error)
            self.log_event("error", f"{sanitize(worker.name)} failed: {headline}")
            for item in items:
                self.log_event("error", f"  ✗ {item}")
            self.notify(headline, title=f"{sanitize(worker.name)} failed", severity="error", markup=False)
        elif event.state == WorkerState.SUCCESS and worker.group == "file-facts":
            self.query_one(CatalogTable).facts = worker.result or {}
        elif event.state == WorkerState.SUCCESS and worker.group.startswith(("model-", "pin-")):
            result = worker.result
            if isinstance(result, ModelStatus):
                if worker.group.startswith("pin-"):
                    self.log_event("info", f"{sanitize(result.model_id)}: {'pinned' if result.pin else 'unpinned'}")
                elif result.state == ModelState.FAILED:
                    self.log_event("error", f"{sanitize(worker.name)}: {sanitize(result.error or 'failed')}")


def build_app(core: Core, *, settings: Settings, log_path: Path | None = None,
              clock: Callable[[], float] = time.time,
              mono_clock: Callable[[], float] = time.monotonic, api: ApiServing | None = None) -> OrinApp:
    """The console over a started ``core`` (the CLI and the tests build it here).

    Args:
        core: the core (started by the caller, who closes it after ``app.run()`` returns).
        settings: theme, keymap and budgets to show.
        log_path: the log file (default: ``console.log`` in the state folder).
        clock: wall-clock seconds for the log's timestamps (tests pass a fixed clock).
        mono_clock: monotonic seconds for the gauges' staleness (tests pass a fixed clock).
        api: an API server over the same core, started once the console listens and stopped
            when it ends (``orin-console --serve``).
    """
    path = log_path if log_path is not None else settings.state_dir / "console.log"
    return OrinApp(core, settings=settings, log_path=path, clock=clock, mono_clock=mono_clock, api=api)
