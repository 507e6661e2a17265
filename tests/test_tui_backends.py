"""The console's main flows against both back ends: in process (a core here) and attached (the
same core behind a live API server on loopback, reached through the SDK).

One core and one server per module (tiny models, 50 ms a token so an answer can be stopped);
each test starts from every model unloaded and unpinned. The same test body runs twice through
the ``console`` fixture: the widgets do not know which back end they talk to.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from orin_console.core.manager.types import ModelState
from orin_console.core.service import Core
from orin_console.testing.managers import make_core, settings_for
from orin_console.tui.app import OrinApp, build_app
from orin_console.tui.backend import ConsoleBackend
from orin_console.tui.backend.local import InProcessBackend
from orin_console.tui.backend.remote import RemoteBackend
from orin_console.tui.messages import StatusUpdated
from orin_console.tui.screens.add_models import AddModelsScreen
from orin_console.tui.screens.confirm import ConfirmScreen
from orin_console.tui.screens.plan import PlanScreen
from orin_console.tui.widgets.catalog import CatalogTable
from orin_console.tui.widgets.figures import short_size
from orin_console.tui.widgets.log import LogPane

from api_live import live_server
from conftest import TINY_CATALOG
from tui_support import SLOW_ENV, settle

Scenario = Callable[[OrinApp, Pilot[Any]], Awaitable[None]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_pair: Path) -> Iterator[tuple[Core, str, Path]]:
    """One core (tiny pair, slow tokens) and a live server over it, for the whole module."""
    folder = tmp_path_factory.mktemp("backends")
    for name in ("alpha.gguf", "beta.gguf"):
        shutil.copyfile(tiny_pair / name, folder / name)
    (folder / "models.toml").write_text(TINY_CATALOG)
    (folder / "incoming").mkdir()
    settings = settings_for(folder, model_folders=[folder / "incoming"])
    core = make_core(folder, settings=settings, runner_env=SLOW_ENV).start()
    try:
        with live_server(core) as url:
            yield core, url, folder
    finally:
        core.close()


def _reset(core: Core) -> None:
    """Every model unloaded and unpinned, as each test expects to find them."""
    manager = core.manager
    for status in manager.model_statuses():
        if status.state != ModelState.UNLOADED:
            manager.unload(status.model_id).result(30)
        if manager.catalog.get(status.model_id).pin:
            manager.pin(status.model_id, False)


@pytest.fixture(params=["in-process", "attached"])
def console(request: pytest.FixtureRequest, served: tuple[Core, str, Path]) -> Iterator[tuple[Core, ConsoleBackend]]:
    core, url, _folder = served
    _reset(core)
    backend: ConsoleBackend = InProcessBackend(core) if request.param == "in-process" else RemoteBackend(url)
    try:
        yield core, backend
    finally:
        backend.stop()


def drive(core: Core, backend: ConsoleBackend, scenario: Scenario) -> OrinApp:
    """Run ``scenario`` against the console over ``backend`` at 80x24 (the core stays up)."""
    app = build_app(backend, settings=core.settings, clock=lambda: 1_700_000_000.0)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: app.status is not None, what="the first status")
            await scenario(app, pilot)

    asyncio.run(main())
    return app


def logged(app: OrinApp, needle: str) -> bool:
    return any(needle in text for _level, text in app.query_one(LogPane).history)


def state(core: Core, model_id: str) -> tuple[ModelState, str]:
    status = core.manager.model_status(model_id)
    return status.state, status.tier


def shown(app: OrinApp, model_id: str) -> tuple[ModelState, str] | None:
    """What the console's status says of ``model_id``."""
    status = next((m for m in (app.status.models if app.status else ()) if m.model_id == model_id), None)
    return None if status is None else (status.state, status.tier)


def test_load_move_unload_with_confirmation_and_pin(console: tuple[Core, ConsoleBackend]) -> None:
    core, backend = console

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        assert app.query_one(CatalogTable).selected_model_id == "alpha"
        assert str(app.query_one("#log").border_subtitle) == backend.label
        await pilot.press("l")
        await settle(pilot, lambda: state(core, "alpha") == (ModelState.READY, "ram"), what="alpha in ram")
        await settle(pilot, lambda: shown(app, "alpha") == (ModelState.READY, "ram"), what="the console to show it")
        await settle(pilot, lambda: logged(app, "alpha: ready in ram"), what="the load in the log")
        await pilot.press("s")
        await settle(pilot, lambda: state(core, "alpha") == (ModelState.READY, "swap"), what="alpha in swap")
        # the keys act on what the console shows: attached, the move's end arrives a moment later
        await settle(pilot, lambda: shown(app, "alpha") == (ModelState.READY, "swap"), what="the console to show it")
        await pilot.press("r")
        await settle(pilot, lambda: state(core, "alpha") == (ModelState.READY, "ram"), what="alpha back in ram")
        await settle(pilot, lambda: logged(app, "alpha: moving swap → ram"), what="the move in the log")
        await settle(pilot, lambda: shown(app, "alpha") == (ModelState.READY, "ram"), what="the console to show it")
        await pilot.press("u")  # an unload takes the model away: the plan asks first
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        assert "unloading `alpha`" in str(app.screen.query_one("#confirm-plan Static").render())
        await pilot.press("n")
        await pilot.pause(0.3)
        assert state(core, "alpha") == (ModelState.READY, "ram")
        await pilot.press("u")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await settle(pilot, lambda: state(core, "alpha")[0] == ModelState.UNLOADED, what="alpha unloaded")
        await pilot.press("p")
        await settle(pilot, lambda: core.manager.catalog.get("alpha").pin, what="alpha pinned")
        await settle(pilot, lambda: logged(app, "alpha: pinned"), what="the pin in the log")
        await pilot.press("p")
        await settle(pilot, lambda: not core.manager.catalog.get("alpha").pin, what="alpha unpinned")

    drive(core, backend, scenario)


def test_chat_streams_and_escape_stops_it(console: tuple[Core, ConsoleBackend]) -> None:
    core, backend = console

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        chat = app.query_one("#chat")
        await pilot.press("slash", *"hello", "enter")
        await settle(pilot, lambda: chat.generating, what="the answer to start")
        await settle(pilot, lambda: len(chat.answer_text) >= 3, what="pieces of the answer")
        await pilot.press("escape")
        await settle(pilot, lambda: not chat.generating, timeout=5, what="escape to stop the answer")
        meta = [str(w.render()) for w in chat.query(".chat-meta").results(Static)]
        assert "cancelled" in meta[-1], meta
        # the runner is free again: the server cancelled the generation when the stream closed
        await settle(pilot, lambda: not any(m.busy for m in core.manager.model_statuses()), timeout=5,
                     what="the runner to be free")
        assert not logged(app, "api request")  # its own request is not shown as another front end's

    drive(core, backend, scenario)


def test_the_plan_screen_shows_and_applies_the_plan(console: tuple[Core, ConsoleBackend]) -> None:
    core, backend = console
    for _ in range(5):
        core.manager.usage.record("alpha")

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        await pilot.press("o")
        screen = await settle(pilot, lambda: isinstance(app.screen, PlanScreen) and app.screen, what="the plan screen")
        plan = await settle(pilot, lambda: screen.plan, what="the plan")
        assert ("load", "alpha", "ram") in [(m.kind, m.model_id, m.to_tier) for m in plan.moves]
        assert "alpha disk → ram:" in str(screen.query_one("#plan-placements", Static).render())
        await pilot.press("a")
        if screen.state == "confirming":  # another model's move would unload it
            await pilot.press("y")
        await settle(pilot, lambda: screen.state == "applied", timeout=60, what="the moves")
        assert "✓" in str(screen.query_one("#plan-moves", Static).render())
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, PlanScreen), what="the screen to close")

    drive(core, backend, scenario)
    assert state(core, "alpha") == (ModelState.READY, "ram")


def test_the_add_dialog_checks_and_adds_a_file(console: tuple[Core, ConsoleBackend],
                                               served: tuple[Core, str, Path]) -> None:
    core, backend = console
    name = f"gamma-{'remote' if backend.attached else 'local'}"
    new = Path(shutil.copyfile(served[2] / "alpha.gguf", served[2] / "incoming" / f"{name}.gguf"))

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        await pilot.press("a")
        screen = await settle(pilot, lambda: isinstance(app.screen, AddModelsScreen) and app.screen,
                              what="the add dialog")
        await pilot.press(*str(new), "enter")
        verdict = await settle(pilot, lambda: screen.verdict, what="the verdict")
        (item,) = verdict.accepted
        assert item.entry.id == name and item.info.architecture == "llama"
        text = str(screen.query_one("#add-verdict", Static).render())
        assert f"✓ {name}.gguf: valid GGUF v3, llama" in text and "admission: would fit now" in text
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not isinstance(app.screen, AddModelsScreen), what="the dialog to close")
        await settle(pilot, lambda: name in [m.model_id for m in app.query_one(CatalogTable).models],
                     what="the new model in the catalog pane")

    drive(core, backend, scenario)
    assert name in core.manager.catalog


def test_the_catalogs_size_and_quant_cells_read_the_same_in_both_back_ends(
    console: tuple[Core, ConsoleBackend], served: tuple[Core, str, Path]
) -> None:
    """The file facts come from the headers in process and from ``GET /models/list`` attached:
    the same cells either way, an invalid file included (beta's bytes broken for this test)."""
    core, backend = console
    folder = served[2]
    beta = folder / "beta.gguf"
    good = beta.read_bytes()
    size = short_size(os.path.getsize(folder / "alpha.gguf"))

    def cells(app: OrinApp) -> tuple[str, ...]:
        table = app.query_one(CatalogTable).table
        return tuple(str(table.get_cell(mid, key)) for mid in ("alpha", "beta") for key in ("size", "quant"))

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        expected = (size, "F32", "—", "invalid")
        await settle(pilot, lambda: cells(app) == expected, what=f"the cells {expected}")

    beta.write_bytes(b"\x00" * 64)
    try:
        drive(core, backend, scenario)
    finally:
        beta.write_bytes(good)


# -- attached only --------------------------------------------------------------------------


class Recorder:
    """A second console's app: keeps what its back end posts."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def post_message(self, message: Any) -> bool:
        self.messages.append(message)
        return True

    def shows(self, model_id: str) -> tuple[ModelState, str] | None:
        latest = next((m for m in reversed(self.messages) if isinstance(m, StatusUpdated)), None)
        status = next((m for m in latest.status.models if m.model_id == model_id), None) if latest else None
        return None if status is None else (status.state, status.tier)


def test_two_attached_consoles_see_each_others_load_and_move(served: tuple[Core, str, Path]) -> None:
    core, url, _folder = served
    _reset(core)
    other = RemoteBackend(url)
    recorder = Recorder()
    other.start(cast(Any, recorder))  # a recorder, not a Textual app: it only receives posts
    seen: dict[str, float] = {}

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        await pilot.press("l")  # this console loads; the other sees it
        await settle(pilot, lambda: state(core, "alpha") == (ModelState.READY, "ram"), what="alpha in ram")
        done = time.monotonic()
        await settle(pilot, lambda: recorder.shows("alpha") == (ModelState.READY, "ram"), timeout=1.0,
                     what="the other console to show the load within a second")
        seen["load"] = time.monotonic() - done
        move = other.load("alpha", "swap")  # the other moves it; this one sees it
        await settle(pilot, move.done, timeout=30, what="the other console's move")
        done = time.monotonic()
        await settle(pilot, lambda: shown(app, "alpha") == (ModelState.READY, "swap"), timeout=1.0,
                     what="this console to show the move within a second")
        seen["move"] = time.monotonic() - done

    try:
        drive(core, RemoteBackend(url), scenario)
    finally:
        other.stop()
    assert set(seen) == {"load", "move"}


def test_quitting_an_attached_console_leaves_the_models_loaded(served: tuple[Core, str, Path]) -> None:
    core, url, _folder = served
    _reset(core)

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        await pilot.press("l")
        await settle(pilot, lambda: state(core, "alpha")[0] == ModelState.READY, what="alpha loaded")
        await pilot.press("ctrl+q")

    app = drive(core, RemoteBackend(url), scenario)
    assert app.return_code in (0, None)
    assert state(core, "alpha") == (ModelState.READY, "ram")  # the server's model goes on
    assert not core.closed
    status = core.manager.model_status("alpha")
    assert status.pid is not None
