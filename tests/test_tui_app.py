"""The console end to end: the real app over a real core with runners on the tiny pair.

Each test drives the keys an operator would press (``l u r s p``, ``/``, ``escape``, ``?``)
and checks the core's state, the panes and the log (``console.log`` too)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from orin_console.core.manager.types import ModelState
from orin_console.core.service import Core
from orin_console.core.settings import CONSOLE_BINDING_IDS
from orin_console.testing.managers import make_core, settings_for
from orin_console.tui.app import OrinApp, build_app
from orin_console.tui.screens.confirm import ConfirmScreen
from orin_console.tui.screens.help import HelpScreen
from orin_console.tui.widgets.catalog import CatalogTable
from orin_console.tui.widgets.log import LogPane
from orin_console.tui.widgets.tier_map import TierMap

from tui_support import SLOW_ENV, settle

FIXED_NOW = 1_700_000_000.0

Scenario = Callable[[OrinApp, Pilot[Any]], Awaitable[None]]


def drive(core: Core, scenario: Scenario, *, size: tuple[int, int] = (80, 24)) -> OrinApp:
    """Run ``scenario`` against the console over ``core`` (started here, closed after)."""
    core.start()
    app = build_app(core, settings=core.settings, clock=lambda: FIXED_NOW)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot, lambda: app.status is not None, what="the first status")
            await scenario(app, pilot)

    try:
        asyncio.run(main())
    finally:
        core.close()
    return app


def logged(app: OrinApp, needle: str, level: str | None = None) -> bool:
    return any(needle in text and (level is None or lvl == level)
               for lvl, text in app.query_one(LogPane).history)


def state(core: Core, model_id: str) -> tuple[ModelState, str]:
    status = core.manager.model_status(model_id)
    return status.state, status.tier


async def select(app: OrinApp, pilot: Pilot[Any], model_id: str) -> None:
    for _ in range(10):
        if app.query_one(CatalogTable).selected_model_id == model_id:
            return
        await pilot.press("down")
    raise AssertionError(f"{model_id} not in the catalog table")


def test_load_move_both_ways_unload_and_pin_from_the_keyboard(workdir: Path) -> None:
    core = make_core(workdir)

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        assert app.query_one(CatalogTable).selected_model_id == "alpha"
        await pilot.press("l")
        await settle(pilot, lambda: state(core, "alpha") == (ModelState.READY, "ram"), what="alpha in ram")
        await settle(pilot, lambda: any(m.model_id == "alpha" and m.state == ModelState.READY
                                        for m in (app.query_one(TierMap).status or app.status).models),
                     what="the tier map to show alpha ready")
        await settle(pilot, lambda: logged(app, "alpha: ready in ram"), what="the load in the log")
        assert logged(app, "alpha: loading into ram")
        await pilot.press("s")
        await settle(pilot, lambda: state(core, "alpha") == (ModelState.READY, "swap"), what="alpha in swap")
        await pilot.press("r")
        await settle(pilot, lambda: state(core, "alpha") == (ModelState.READY, "ram"), what="alpha back in ram")
        await settle(pilot, lambda: logged(app, "alpha: moving swap → ram"), what="the move in the log")
        await pilot.press("u")  # an unload takes the model away: the plan asks first
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        assert "unloading `alpha`" in str(app.screen.query_one("#confirm-plan Static").render())
        await pilot.press("n")  # no: nothing changes
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
        await pilot.press("down", "r")  # beta (catalog tier swap) straight into ram
        await settle(pilot, lambda: state(core, "beta") == (ModelState.READY, "ram"), what="beta in ram")
        shown.extend(app.query_one(LogPane).history)

    shown: list[tuple[str, str]] = []
    drive(core, scenario)
    log_file = (core.settings.state_dir / "console.log").read_text()
    assert "alpha: ready in ram" in log_file and "alpha: unloaded" in log_file and "INFO" in log_file
    assert all(text in log_file for _level, text in shown)  # every line of the pane is in the file


def test_a_refused_load_is_shown_itemised_and_nothing_loads(make_workdir: Callable[..., Path]) -> None:
    folder = make_workdir()
    core = make_core(folder, settings=settings_for(folder, max_model_gb=0.01))

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        await pilot.press("l")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the refusal")
        assert not app.screen.query("#yes")  # nothing to confirm: only the reasons
        assert "REFUSED" in str(app.screen.query_one("#confirm-plan Static").render())
        await pilot.press("escape")
        assert logged(app, "load alpha refused", "error")
        assert logged(app, "  ✗ ", "error")  # each reason on its own line

        assert state(core, "alpha")[0] == ModelState.UNLOADED

    drive(core, scenario)


def test_an_invalid_model_file_is_refused_with_its_reason(workdir: Path) -> None:
    (workdir / "alpha.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 16)  # a truncated header
    core = make_core(workdir)

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        await pilot.press("l")
        await settle(pilot, lambda: logged(app, "load alpha failed", "error"), what="the reason in the log")
        assert any("alpha.gguf" in text for _lvl, text in app.query_one(LogPane).history)
        assert app._notifications  # and a notification
        await pilot.press("down", "l")  # the console goes on: beta still loads
        await settle(pilot, lambda: state(core, "beta")[0] == ModelState.READY, what="beta to load")

    drive(core, scenario)


def test_chat_streams_and_escape_stops_it(workdir: Path) -> None:
    core = make_core(workdir, runner_env=SLOW_ENV)

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        chat = app.query_one("#chat")
        await pilot.press("slash", *"hello", "enter")
        await settle(pilot, lambda: chat.generating, what="the answer to start")
        await settle(pilot, lambda: any(m.busy for m in core.manager.model_statuses()), what="a busy runner")
        await pilot.press("escape")
        await settle(pilot, lambda: not chat.generating, timeout=5, what="escape to stop the answer")
        await pilot.press("escape")  # idle: leave the input; the catalog keys work again
        await pilot.press("m")
        assert chat.mode == "hybrid" and chat.border_title == "Chat · hybrid"
        assert logged(app, "selection mode: hybrid")

    drive(core, scenario)


def test_a_runner_killed_while_chatting_is_reported_and_the_console_goes_on(workdir: Path) -> None:
    core = make_core(workdir, runner_env=SLOW_ENV)

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        chat = app.query_one("#chat")
        await pilot.press("slash", *"hello", "enter")
        busy = await settle(pilot, lambda: next((m for m in core.manager.model_statuses() if m.busy), None),
                            what="a runner answering")
        assert busy.pid is not None
        os.kill(busy.pid, signal.SIGKILL)
        await settle(pilot, lambda: not chat.generating, what="the answer to end")
        await settle(pilot, lambda: logged(app, f"{busy.model_id}: failed", "error"), what="the crash in the log")
        text = next(t for _l, t in app.query_one(LogPane).history if f"{busy.model_id}: failed" in t)
        assert "SIGKILL" in text or "signal" in text or "died" in text, text
        await pilot.press("escape")  # leave the input: the catalog has the keys again
        assert app.focused is not None and app.query_one(CatalogTable) in (app.focused, app.focused.parent)
        await select(app, pilot, busy.model_id)
        await pilot.press("l")  # the failed model restarts on request
        await settle(pilot, lambda: state(core, busy.model_id)[0] == ModelState.READY, what="the restart")

    drive(core, scenario)


def test_an_invalid_catalog_edit_is_logged_and_the_old_catalog_stays(workdir: Path) -> None:
    core = make_core(workdir, watch_interval_s=0.1)

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        (workdir / "models.toml").write_text('[[models]]\nid = "alpha"\npath = 3\n')
        await settle(pilot, lambda: any("models.toml" in t for lvl, t in app.query_one(LogPane).history
                                        if lvl == "error"), what="the refused edit in the log")
        table = app.query_one(CatalogTable)
        assert [m.model_id for m in table.models] == ["alpha", "beta"]
        assert [e.id for e in core.manager.catalog] == ["alpha", "beta"]

    drive(core, scenario)


def test_keys_follow_the_keymap_setting_and_the_help_screen_lists_them(make_workdir: Callable[..., Path]) -> None:
    folder = make_workdir()
    core = make_core(folder, settings=settings_for(folder, keymap={"model.load": "f5", "help": "f1"}))

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        assert {b.id for b in app._console_bindings()} == set(CONSOLE_BINDING_IDS)
        await pilot.press("l")  # remapped away: nothing happens
        await pilot.pause(0.3)
        assert state(core, "alpha")[0] == ModelState.UNLOADED
        await pilot.press("f5")
        await settle(pilot, lambda: state(core, "alpha")[0] == ModelState.READY, what="f5 to load")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        keys = {binding_id: key for key, _name, binding_id in app.screen.keys}
        assert keys["model.load"] == "f5" and keys["model.unload"] == "u" and keys["quit"] == "^q"
        await pilot.press("escape")
        names = [name for name, _help, _action in app.command_list()]
        assert "Load the selected model" in names and "Quit" in names

    drive(core, scenario)


def test_t_cycles_the_themes_from_the_setting(make_workdir: Callable[..., Path]) -> None:
    folder = make_workdir()
    core = make_core(folder, settings=settings_for(folder, theme="orin-light"))

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        assert app.theme == "orin-light"
        seen = [app.theme]
        for _ in range(3):
            await pilot.press("t")
            seen.append(app.theme)
        assert seen == ["orin-light", "orin-contrast", "orin-dark", "orin-light"]

    drive(core, scenario)


def test_quitting_closes_every_runner(workdir: Path) -> None:
    core = make_core(workdir)

    async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
        await pilot.press("l")
        await settle(pilot, lambda: state(core, "alpha")[0] == ModelState.READY, what="alpha to load")
        await pilot.press("ctrl+q")

    app = drive(core, scenario)
    assert app.return_code in (0, None)
    assert core.closed
    assert not core.manager.model_statuses() or all(m.pid is None or m.state == ModelState.UNLOADED
                                                    for m in core.manager.model_statuses())


def test_the_keymap_setting_refuses_unknown_actions_and_bad_keys() -> None:
    import pytest

    from orin_console.core.errors import SettingsError
    from orin_console.core.settings import load_settings

    assert load_settings(env={}, keymap={"model.load": "f5,ctrl+l"}).keymap == {"model.load": "f5,ctrl+l"}
    with pytest.raises(SettingsError, match=r"'load' is not a console action .*model\.load"):
        load_settings(env={}, keymap={"load": "f5"})
    with pytest.raises(SettingsError, match="is not a key"):
        load_settings(env={}, keymap={"help": "ctrl+\x1b[2J"})


def test_the_console_serves_the_api_and_its_requests_show_in_the_panes(workdir: Path) -> None:
    import httpx

    from orin_console.api.background import BackgroundServer

    core = make_core(workdir)
    core.start()
    api = BackgroundServer(core, host="127.0.0.1", port=0)
    app = build_app(core, settings=core.settings, clock=lambda: FIXED_NOW, api=api)
    answers: list[dict[str, Any]] = []

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: logged(app, "API: serving http://127.0.0.1:"), what="the API up")
            subtitle = str(app.query_one("#log").border_subtitle)
            assert api.url is not None and subtitle.startswith("in-process · API 127.0.0.1:")
            async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:  # the loop goes on
                reply = await client.post("/quick/generate", json={"prompt": "Hello!", "max_tokens": 4})
            assert reply.status_code == 200, reply.text
            answers.append(reply.json())
            await settle(pilot, lambda: logged(app, "api request") and logged(app, "→ alpha"),
                         what="the API's request in the log")
            await settle(pilot, lambda: any(m.model_id == "alpha" and m.state == ModelState.READY
                                            for m in (app.query_one(TierMap).status or app.status).models),
                         what="the tier map to show the model the API loaded")
            assert logged(app, "alpha: ready in ram")
            await pilot.press("ctrl+q")

    try:
        asyncio.run(main())
        assert not api.serving and api.failure is None  # quitting stopped the server
        with __import__("pytest").raises(httpx.TransportError):
            httpx.get(f"{api.url}/system/health", timeout=2)
    finally:
        api.stop()
        core.close()
    assert answers[0]["model_id"] == "alpha"
    assert core.manager.model_status("alpha").state == ModelState.UNLOADED  # no runner left


def test_an_api_that_cannot_bind_is_reported_and_the_console_goes_on(workdir: Path) -> None:
    import socket

    from orin_console.api.background import BackgroundServer

    core = make_core(workdir)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api = BackgroundServer(core, host="127.0.0.1", port=taken.getsockname()[1])

        async def scenario(app: OrinApp, pilot: Pilot[Any]) -> None:
            await settle(pilot, lambda: logged(app, "API: not serving", "error"), what="the bind failure")
            assert logged(app, "address already in use") or logged(app, "rrno"), app.query_one(LogPane).history
            await pilot.press("l")  # the console itself goes on
            await settle(pilot, lambda: state(core, "alpha") == (ModelState.READY, "ram"), what="alpha loaded")

        core.start()
        app = build_app(core, settings=core.settings, clock=lambda: FIXED_NOW, api=api)

        async def main() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot, lambda: app.status is not None, what="the first status")
                await scenario(app, pilot)

        try:
            asyncio.run(main())
        finally:
            api.stop()
            core.close()
