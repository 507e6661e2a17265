"""OrinApp: the operator console (gauges, tier map, catalog, log, chat) over one core.

Built by :func:`build_app`, which the CLI (``orin-console`` with no command) and the tests
share. The app only talks to the core through its back end
(:class:`~orin_console.tui.backend.ConsoleBackend`: a core in this process, or a server it is
attached to): messages in, thread workers for calls out, so the event loop never blocks on
the core. The log pane's subtitle says which (``in-process`` or ``attached to http://…``); an
attached console whose server goes away says so in a banner across the top
(``reconnecting…``) until the server is back and its new state drawn:

- ``l u r s p`` act on the catalog row under the cursor (:mod:`orin_console.tui.actions`:
  admission's plan first, a confirmation before a model is taken away, then a worker per
  model). The keys and their plain names are in :mod:`orin_console.tui.keys`.
- One ``Worker.StateChanged`` handler turns any worker's error into a log line and a
  notification.
- Quitting, SIGHUP and SIGTERM all end :meth:`OrinApp.run`; the caller then closes the core
  (see ``orin_console.cli.console``), so no runner survives. An attached console closes
  nothing: the server and its models go on.
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

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from orin_console.core.errors import OrinError
from orin_console.core.manager.types import ModelState, ModelStatus, SystemStatus
from orin_console.core.memory.admission import AdmissionRefused
from orin_console.core.service import Core
from orin_console.core.settings import Settings
from orin_console.core.text import sanitize
from orin_console.tui import keys
from orin_console.tui.actions import ModelActions
from orin_console.tui.backend import ConsoleBackend
from orin_console.tui.backend.local import InProcessBackend
from orin_console.tui.commands import ConsoleCommands
from orin_console.tui.keys import ConsoleKeys
from orin_console.tui.messages import ApiServing as ApiStarted
from orin_console.tui.messages import BackendState, LogLine, StatusUpdated, TelemetryUpdated
from orin_console.tui.screens.add_models import AddModelsScreen
from orin_console.tui.screens.help import HelpScreen
from orin_console.tui.screens.plan import PlanScreen
from orin_console.tui.themes import DEFAULT_THEME, THEMES_DIR, load_themes
from orin_console.tui.widgets.catalog import CatalogTable, ModelDetails
from orin_console.tui.widgets.chat import ChatPane
from orin_console.tui.widgets.gauges import GaugeBar, GaugesPane
from orin_console.tui.widgets.log import LogPane
from orin_console.tui.widgets.tier_map import TierMap


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


class OrinApp(ModelActions, ConsoleKeys, App[int]):
    """The console. See the module docstring; the keys are in :mod:`~orin_console.tui.keys` and ``?``."""

    CSS_PATH = "app.tcss"
    TITLE = "Orin Console"
    COMMANDS: ClassVar[set[Any]] = App.COMMANDS | {ConsoleCommands}
    ENABLE_COMMAND_PALETTE = True
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012 - Textual's own type
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[BindingType]] = keys.BINDINGS

    def __init__(self, backend: ConsoleBackend, *, settings: Settings, log_path: Path | None = None,
                 clock: Callable[[], float] = time.time,
                 mono_clock: Callable[[], float] = time.monotonic, api: ApiServing | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.api = api
        self.settings = settings
        self.log_path = log_path
        self.clock = clock
        self.mono_clock = mono_clock
        self.status: SystemStatus | None = None
        self.handle_signals = False
        """Set by the CLI: SIGHUP and SIGTERM end the app (never in tests' own process)."""
        self.terminated_by: signal.Signals | None = None
        self.theme_names: list[str] = []
        self._pending_log: list[tuple[str, str]] = []
        self._chat: ChatPane | None = None
        self._mounted = False
        self._api_url: str | None = None
        self.connected = True
        """False while an attached console's server is unreachable (the banner shows)."""

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield GaugeBar(clock=self.mono_clock, id="gauge-bar")
        yield Static(id="connection")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield TierMap(id="tiers")
                yield CatalogTable(id="catalog")
                yield ModelDetails(id="details")
                yield LogPane(log_path=self.log_path, clock=self.clock, id="log")
            with Vertical(id="right"):
                yield GaugesPane(clock=self.mono_clock, id="gauges-pane")
                yield ChatPane(self.backend.chat, id="chat")
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
        self.title = f"Orin Console · {self.backend.label}"
        self._show_where()
        for level, text in self.backend.startup_lines():
            self.log_event(level, text)
        self.backend.start(self)
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
            self._api_url = message.url
            self._show_where()

    def _show_where(self) -> None:
        """The log pane's subtitle: which core this is (and the API it serves, if any)."""
        where = self.backend.label
        if self._api_url:
            where += f" · API {self._api_url.removeprefix('http://')}"
        self.query_one("#log").border_subtitle = where

    def on_backend_state(self, message: BackendState) -> None:
        """The attached server went away (a banner says so, and since when) or came back."""
        if not self._live:
            return
        self.connected = message.connected
        banner = self.query_one("#connection", Static)
        banner.update(Text(message.text))
        banner.display = not message.connected
        if message.log:
            self.log_event("info" if message.connected else "warning", message.text)

    def on_unmount(self) -> None:
        if self._chat is not None:
            self._chat.stop()  # a generation ends within one token: its worker can finish
        if self.api is not None:
            self.api.stop()  # open streams end (ShuttingDown); before the caller closes the core
        self.backend.stop()

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
            self.run_worker(partial(self.backend.file_facts, message.catalog), name="read file facts",
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
        self.push_screen(AddModelsScreen(self.backend))

    def action_plan(self) -> None:
        """Show the placement plan (and apply it from there)."""
        self.push_screen(PlanScreen(self.backend))

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


def build_app(core: Core | ConsoleBackend, *, settings: Settings, log_path: Path | None = None,
              clock: Callable[[], float] = time.time,
              mono_clock: Callable[[], float] = time.monotonic, api: ApiServing | None = None) -> OrinApp:
    """The console over a started ``core``, or over a back end (the CLI and the tests build it here).

    Args:
        core: the core (started by the caller, who closes it after ``app.run()`` returns), or
            a :class:`~orin_console.tui.backend.ConsoleBackend` (an attached console's
            :class:`~orin_console.tui.backend.remote.RemoteBackend`).
        settings: theme, keymap and budgets to show.
        log_path: the log file (default: ``console.log`` in the state folder).
        clock: wall-clock seconds for the log's timestamps (tests pass a fixed clock).
        mono_clock: monotonic seconds for the gauges' staleness (tests pass a fixed clock).
        api: an API server over the same core, started once the console listens and stopped
            when it ends (``orin-console --serve``).
    """
    path = log_path if log_path is not None else settings.state_dir / "console.log"
    backend = InProcessBackend(core) if isinstance(core, Core) else core
    return OrinApp(backend, settings=settings, log_path=path, clock=clock, mono_clock=mono_clock, api=api)
