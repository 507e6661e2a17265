"""The chat pane: real runners on the tiny pair for streaming, stop, refusal and a dead runner;
a scripted engine for history, modes and how model output is neutralised."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Input, Markdown, Static

from orin_console.core.engine.types import GenerationParams
from orin_console.core.manager.types import ModelBusy
from orin_console.core.memory.admission import Budgets
from orin_console.testing.managers import make_core
from orin_console.tui.widgets.chat import ChatPane

from tui_support import SLOW_ENV, ChatApp, ScriptedEngine, run, settle

MB = 2**20
PARAMS = GenerationParams(max_tokens=24, temperature=0)


def _meta(app: ChatApp) -> str:
    return str(app.query(".chat-meta").last(Static).render())


def test_chat_streams_and_ends_with_its_footer_line(workdir: Path) -> None:
    with make_core(workdir) as core:
        app = ChatApp(core.engine, params=PARAMS)

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press(*"Hello!", "enter")
                await settle(pilot, lambda: app.finished or app.failed, what="the answer")
                assert not app.failed, app.failed[0].reason
                result = app.finished[0].result
                assert result.model_id == "alpha" and result.finish_reason == "length" and result.tokens == 24
                assert _rendered(app) == result.text and result.text
                footer = _meta(app)
                assert footer.startswith("— alpha (auto: chat")
                assert "runner-up beta" in footer and "TTFT" in footer and "tok/s" in footer
                assert "loaded into ram" in footer and footer.endswith("length")
                assert not app.query_one("#chat").generating  # type: ignore[attr-defined]

        run(scenario())
        assert core.engine.manager.usage  # the request was recorded like any other


def test_escape_stops_within_a_token(workdir: Path) -> None:
    with make_core(workdir, runner_env=SLOW_ENV) as core:
        app = ChatApp(core.engine, params=GenerationParams(max_tokens=200, temperature=0))

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press(*"hello", "enter")
                pane = app.query_one(ChatPane)
                await settle(pilot, lambda: len(pane.answer_text) >= 3, what="the first tokens")
                await pilot.press("escape")
                await settle(pilot, lambda: app.finished or app.failed, what="the stop")
                result = app.finished[0].result
                # Counted in tokens, not seconds (a wall-clock bound flaked on a loaded
                # machine): at 50 ms a token the answer would run to 200; a stop that waited
                # for anything but the next token leaves it far short of that.
                assert result.finish_reason == "cancelled" and result.tokens < 100
                assert _meta(app).endswith("cancelled")
                assert app.query_one("#chat-input", Input).has_focus  # escape stopped, did not leave
                await pilot.press("escape")  # idle now: escape leaves the input
                assert app.focused is None

        run(scenario())


def test_a_refused_model_shows_its_itemised_reason_and_the_pane_stays_usable(workdir: Path) -> None:
    tight = Budgets(ram=1 * MB, swap=1 * MB, max_model=7 * 2**30, reserve=0)
    with make_core(workdir, budgets=tight) as core:
        app = ChatApp(core.engine, params=PARAMS)

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                pane = app.query_one("#chat")
                pane.mode = "manual"  # type: ignore[attr-defined]
                pane.preferred = "alpha"  # type: ignore[attr-defined]
                await pilot.press(*"Hello!", "enter")
                await settle(pilot, lambda: app.failed, what="the refusal")
                failure = app.failed[0]
                assert failure.kind == "refused" and "cannot load `alpha` into the RAM tier" in failure.reason
                assert "refused: cannot load `alpha`" in _meta(app)
                assert app.query(".chat-meta").last().has_class("chat-error")
                await pilot.press(*"again", "enter")  # still usable
                await settle(pilot, lambda: len(app.failed) == 2, what="the second refusal")

        run(scenario())


def test_a_runner_killed_while_chatting_shows_why(workdir: Path) -> None:
    with make_core(workdir, runner_env=SLOW_ENV) as core:
        app = ChatApp(core.engine, params=GenerationParams(max_tokens=200, temperature=0))

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press(*"hello", "enter")
                pane = app.query_one(ChatPane)
                await settle(pilot, lambda: pane.answer_text, what="the first token")
                pid = core.manager.model_status("alpha").pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                await settle(pilot, lambda: app.failed or app.finished, what="the failure")
                assert app.failed and app.failed[0].kind == "failed", app.finished
                assert "SIGKILL" in app.failed[0].reason

        run(scenario())


def test_history_with_up_and_down() -> None:
    engine = ScriptedEngine()
    app = ChatApp(engine)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            field = app.query_one("#chat-input", Input)
            for count, prompt in enumerate(("first", "second"), start=1):
                await pilot.press(*prompt, "enter")
                await settle(pilot, lambda n=count: len(app.finished) == n, what=prompt)
            await pilot.press(*"draft")
            await pilot.press("up")
            assert field.value == "second"
            await pilot.press("up", "up")  # stops at the oldest
            assert field.value == "first"
            await pilot.press("down")
            assert field.value == "second"
            await pilot.press("down")
            assert field.value == "draft"  # back to what was being typed
            assert app.query_one("#chat").history == ("first", "second")  # type: ignore[attr-defined]

    run(scenario())


def test_mode_cycling_and_the_preferred_model_reach_the_engine() -> None:
    engine = ScriptedEngine()
    app = ChatApp(engine)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            pane = app.query_one("#chat")
            status = app.query_one("#chat-status", Static)
            assert pane.mode == "auto" and "mode auto" in str(status.render())  # type: ignore[attr-defined]
            assert [pane.cycle_mode() for _ in range(3)] == ["hybrid", "manual", "auto"]  # type: ignore[attr-defined]
            pane.cycle_mode()  # type: ignore[attr-defined]
            pane.preferred = "beta"  # type: ignore[attr-defined]
            await pilot.pause()
            assert "mode hybrid · preferred beta" in str(status.render())
            await pilot.press(*"hi", "enter")
            await settle(pilot, lambda: app.finished, what="the answer")
            pane.cycle_mode()  # type: ignore[attr-defined]
            await pilot.press(*"hi", "enter")
            await settle(pilot, lambda: len(app.finished) == 2, what="the second answer")
            first, second = engine.calls
            assert (first["mode"], first["preferred"], first["model"]) == ("hybrid", "beta", None)
            assert (second["mode"], second["model"], second["preferred"]) == ("manual", "beta", None)
            assert first["source"] == "tui"

    run(scenario())


def test_a_busy_model_shows_its_reason() -> None:
    busy = ModelBusy("`alpha` is busy: one generation running and 4 queued (the limit)")
    app = ChatApp(ScriptedEngine(error=busy))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(*"hi", "enter")
            await settle(pilot, lambda: app.failed, what="the busy error")
            assert app.failed[0].kind == "busy" and _meta(app).startswith("busy: `alpha` is busy")

    run(scenario())


def test_model_output_cannot_style_or_disguise_the_pane() -> None:
    hostile = ["[bold red]owned[/bold red] ", "\x1b[2J\x1b[31mred", " \u202eevil\u202c", " \x9b31m",
               " [link](https://example.invalid)"]
    app = ChatApp(ScriptedEngine(hostile))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(*"hi", "enter")
            await settle(pilot, lambda: app.finished, what="the answer")
            answer = app.query_one(".chat-answer", Markdown)
            source = _rendered(app)
            assert "\x1b" not in source and "\u202e" not in source and "\x9b" not in source
            assert "\ufffd[2J\ufffd[31mred" in source
            shown = _screen_text(app)
            assert "[bold red]owned[/bold red]" in shown  # Rich markup is shown, not applied
            assert "\x1b" not in shown and "\u202e" not in shown
            assert answer._open_links is False  # a link in an answer opens nothing

    run(scenario())


def _rendered(app: ChatApp) -> str:
    """The answer's text as its rendered Markdown blocks hold it (once it has ended)."""
    return "".join(block.source for block in app.query(".chat-answer").results(Markdown))


def _screen_text(app: ChatApp) -> str:
    """The screen as plain text (what the operator reads)."""
    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, record=True, force_terminal=True, color_system="truecolor",
                      file=open(os.devnull, "w"))  # noqa: SIM115
    update = app.screen._compositor.render_update(full=True)
    console.print(update)
    return console.export_text(styles=False)


class CountingPane(ChatPane):
    """Counts the coalesced token messages the pane handles."""

    flushes = 0

    async def on_chat_pane_tokens_arrived(self, message: ChatPane.TokensArrived) -> None:
        CountingPane.flushes += 1
        await super().on_chat_pane_tokens_arrived(message)


class CountingApp(ChatApp):
    def compose(self) -> ComposeResult:
        yield CountingPane(self.engine, id="chat")


def test_a_token_burst_is_coalesced_and_the_view_stays_at_the_bottom() -> None:
    pieces = [f"line {i}\n\n" if i % 10 == 9 else "tok " for i in range(2000)]
    app = CountingApp(ScriptedEngine(pieces))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(*"go", "enter")
            await settle(pilot, lambda: app.finished, what="the answer")
            await pilot.pause()
            blocks = list(app.query(".chat-answer").results(Markdown))
            assert "".join(b.source for b in blocks) == "".join(pieces)
            # each block rendered once, when the next began (a burst may bring several)
            assert 1 < len(blocks) <= 200 and not app.query_one(".chat-answer-tail").display
            assert CountingPane.flushes < len(pieces) / 10  # one message per burst, not per token
            log = app.query_one("#chat-log", VerticalScroll)
            assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y  # pinned to the bottom

    run(scenario())
