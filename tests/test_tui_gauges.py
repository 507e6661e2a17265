"""The gauges: the one-line bar and the pane, from fixed samples on a fixed clock."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from textual.app import App, ComposeResult

from orin_console.core.units import GB
from orin_console.testing.telemetry_fakes import make_sample
from orin_console.tui.widgets.gauges import GaugeBar, GaugesPane, gauge_rows, pick_temperature, sparkline

from tui_fakes import NOW, jtop_sample, stale_psutil_sample


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Sample times are shown in local time: pin the zone so the snapshots are the same anywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _history(n: int = 12) -> tuple[Any, ...]:
    return tuple(jtop_sample(mono=NOW - 0.4 - (n - 1 - i), mem_used=int((4.0 + 0.1 * i) * GB),
                             gpu_load=8.0 * i, power_w=5.0 + 0.2 * i) for i in range(n))


class GaugesApp(App[None]):
    """Two gauge lines (a fresh jtop sample, a stale psutil one) above the pane."""

    CSS = "Screen { layout: vertical; }"

    def compose(self) -> ComposeResult:
        yield GaugeBar(clock=lambda: NOW, id="jtop")
        yield GaugeBar(clock=lambda: NOW, id="psutil")
        yield GaugesPane(clock=lambda: NOW, id="pane")

    def on_mount(self) -> None:
        history = _history()
        jtop = self.query_one("#jtop", GaugeBar)
        jtop.history = history
        jtop.sample = history[-1]
        psutil = self.query_one("#psutil", GaugeBar)
        psutil.sample = stale_psutil_sample()
        psutil.source_note = "jtop: the jtop service is not running (fix: sudo systemctl restart jtop.service)"
        self.query_one(GaugesPane).history = history


def _bar_line(sample: Any, width: int = 80, note: str = "", history: tuple[Any, ...] = ()) -> str:
    async def run() -> str:
        app = App[None]()
        async with app.run_test(size=(width, 3)) as pilot:
            bar = GaugeBar(clock=lambda: NOW)
            await app.mount(bar)
            bar.history = history
            bar.sample = sample
            bar.source_note = note
            await pilot.pause()
            return bar.line(width).plain
    return asyncio.run(run())


def test_the_jtop_line_fits_80_columns_with_every_field() -> None:
    history = _history()
    line = _bar_line(history[-1], history=history)
    assert len(line) <= 80
    assert line.startswith("jtop ")
    for part in ("RAM 5.1/7.4G", "SWP 2.3/11.0G", "GPU 88%", "52°C", "7.2W", "CPU 23%"):
        assert part in line, part
    assert "stale" not in line


def test_fields_the_source_lacks_are_left_out_not_zero() -> None:
    line = _bar_line(stale_psutil_sample())
    assert line.startswith("psutil ")
    assert "GPU" not in line and "°C" not in line
    assert re.search(r"\d(\.\d)?W\b", line) is None


def test_a_stale_sample_is_marked_with_its_age() -> None:
    assert "stale 12s" in _bar_line(stale_psutil_sample())
    assert "stale" not in _bar_line(stale_psutil_sample(mono=NOW - 1.0))


def test_a_narrow_line_drops_whole_fields_least_important_first() -> None:
    history = _history()
    line = _bar_line(history[-1], width=40, history=history)
    assert len(line) <= 40
    assert "RAM 5.1/7.4G" in line and "SWP" in line
    assert re.search(r"\d(\.\d)?W\b", line) is None  # power went first


def test_the_source_note_is_sanitised_and_not_markup() -> None:
    line = _bar_line(stale_psutil_sample(), width=120, note="[bold]jtop\x1b[2J gone[/]")
    assert "[bold]jtop\ufffd[2J gone[/]" in line


def test_rows_only_for_what_the_sample_has() -> None:
    assert [r.label for r in gauge_rows(_history())] == ["RAM", "SWAP", "CPU", "GPU", "EMC", "TEMP", "POWER"]
    assert [r.label for r in gauge_rows((stale_psutil_sample(),))] == ["RAM", "SWAP", "CPU"]
    assert gauge_rows(()) == []
    bare = make_sample("psutil", mem_total=None, swap_total=0, swap_used=0)
    assert gauge_rows((bare,)) == []


def test_sparkline_scales_to_its_top_and_shows_gaps() -> None:
    assert sparkline([0, 50, 100], 3, 100) == "▁▅█"
    assert sparkline([None, 100], 2, 100) == " █"
    assert sparkline(list(range(10)), 4, 9) == sparkline([6, 7, 8, 9], 4, 9)
    assert sparkline([1, 2], 0) == ""


def test_the_temperature_shown_prefers_the_gpu() -> None:
    assert pick_temperature({"cpu": 40.0, "gpu": 50.0}) == ("gpu", 50.0)
    assert pick_temperature({"acpitz": 41.0, "x86_pkg": 60.0}) == ("x86_pkg", 60.0)
    assert pick_temperature({}) is None


def test_snapshot_gauges(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(GaugesApp(), terminal_size=(80, 12))


def test_snapshot_gauges_wide(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(GaugesApp(), terminal_size=(120, 12))
