"""Snapshots of the whole console: the main screen at 80x24 and 120x40 in each theme, and the
help screen. Deterministic: a fixed status (six model states), fixed jtop samples with a
history, fixed clocks, UTC, the focus on the catalog (no blinking cursor)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orin_console.core.service import Core
from orin_console.testing.managers import make_core, settings_for
from orin_console.tui.app import OrinApp, build_app
from orin_console.tui.messages import LogLine, StatusUpdated, TelemetryUpdated

from tui_fakes import NOW, jtop_sample, six_state_status

FIXED_WALL = 1_700_000_000.0
THEMES = ("orin-dark", "orin-light", "orin-contrast")


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _history() -> tuple[Any, ...]:
    return tuple(jtop_sample(mono=NOW - 0.4 - (29 - i), cpu_percent=10.0 + (i * 7) % 60,
                             gpu_load=20.0 + (i * 11) % 70, mem_used=int((4.0 + (i % 10) / 10) * 2**30))
                 for i in range(30))


def _app(core: Core, theme: str) -> OrinApp:
    settings = core.settings.model_copy(update={"theme": theme})
    return build_app(core, settings=settings, clock=lambda: FIXED_WALL, mono_clock=lambda: NOW)


async def _fixed_state(pilot: Any) -> None:
    app: OrinApp = pilot.app
    while app.status is None:  # the bridge's first (real) status, then the fixed one
        await pilot.pause(0.02)
    history = _history()
    app.post_message(StatusUpdated(six_state_status()))
    app.post_message(TelemetryUpdated(history[-1], history))
    app.post_message(LogLine("error", "llama-3.2-1b: failed: runner died: SIGKILL (out of memory?)"))
    app.post_message(LogLine("info", "qwen-coder: 50% loaded into ram"))
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()


@pytest.fixture
def core(workdir: Path, utc: None) -> Iterator[Core]:
    core = make_core(workdir, settings=settings_for(workdir)).start()
    yield core
    core.close()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_main_screen(snap_compare: Any, core: Core, theme: str, size: tuple[int, int]) -> None:
    assert snap_compare(_app(core, theme), terminal_size=size, run_before=_fixed_state)


def test_help_screen(snap_compare: Any, core: Core) -> None:
    async def run_before(pilot: Any) -> None:
        await _fixed_state(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(_app(core, "orin-dark"), terminal_size=(80, 24), run_before=run_before)
