"""Telemetry faults (issue 11, part 5): jtop failing and returning, NVML missing or raising.

The real sampler, sources and thread over the libraries' stand-ins (see
:mod:`stress.telemetry_faults`): no crash, the fallback to psutil with its reason, no flapping
back while the fault lasts, the better source back after the repair; and the fallback shown by
``GET /system/status`` and by the console's gauge line.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orin_console.core.events.bus import EventBus
from orin_console.core.telemetry import Sampler
from orin_console.testing.managers import make_core
from orin_console.tui.app import build_app
from orin_console.tui.widgets.gauges import GaugeBar
from stress.telemetry_faults import (
    JTOP_FAULTS,
    NVML_FAULTS,
    FlakyJtop,
    FlakyNvml,
    Watch,
    api_view,
    cycle_faults,
    jtop_sampler,
    judge_api,
    nvml_missing,
    nvml_sampler,
    telemetry_of,
)

from tui_support import settle

pytestmark = pytest.mark.filterwarnings("ignore:distro.linux_distribution:DeprecationWarning")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[FlakyJtop]:
    flaky = FlakyJtop(tmp_path)
    yield flaky
    flaky.close()


def _connect_threads() -> int:
    return sum(t.name == "jtop-connect" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("fault", JTOP_FAULTS)
def test_jtop_failing_falls_back_to_psutil_stays_there_and_comes_back(service: FlakyJtop, fault: str) -> None:
    bus = EventBus()
    watch = Watch(bus)
    sampler = jtop_sampler(service, bus)
    with sampler:
        figures = cycle_faults(sampler, service, watch, [fault, fault], "jtop", hold_s=0.4)
    bus.close()
    assert figures["problems"] == []
    assert figures["fallbacks"] == figures["recoveries"] == 2
    assert figures["flaps"] == 0 and figures["thread_alive"]
    assert figures["hung_connects_max"] <= 1  # a hung service costs one waiting thread, not one per retry
    assert figures["ok"]
    fallbacks = [c for c in watch.changes if c.current == "psutil"]
    assert fallbacks and all(c.previous == "jtop" and c.reason for c in fallbacks)
    assert any(c.fix for c in fallbacks)  # the operator is told how to fix it


@pytest.mark.parametrize("fault", NVML_FAULTS)
def test_nvml_raising_falls_back_and_comes_back(fault: str) -> None:
    bus = EventBus()
    watch = Watch(bus)
    flaky = FlakyNvml()
    sampler = nvml_sampler(flaky, bus)
    with sampler:
        figures = cycle_faults(sampler, flaky, watch, [fault, fault], "nvml", hold_s=0.3)
    bus.close()
    assert figures["problems"] == [] and figures["recoveries"] == 2 and figures["ok"]
    assert flaky.module.shutdowns >= 2  # every failed session was shut down before the next


def test_nvml_missing_is_a_permanent_quiet_fallback() -> None:
    figures = nvml_missing()
    assert figures["nvml"] == "unavailable" and "not installed" in figures["reason"]
    assert figures["thread_alive"] and figures["samples"] >= 5 and figures["ok"]


def test_system_status_shows_the_fallback_and_the_return(service: FlakyJtop, tmp_path: Path) -> None:
    bus = EventBus()
    watch = Watch(bus)
    sampler = jtop_sampler(service, bus)
    status, close = api_view(sampler, bus, tmp_path / "api")
    seen: dict[str, list[dict[str, Any]]] = {"during": [], "after": []}
    try:
        figures = cycle_faults(sampler, service, watch, ["service-died", "stale-data"], "jtop", hold_s=0.3,
                               during=lambda k: seen["during"].append(telemetry_of(status(), k)),
                               after=lambda k: seen["after"].append(telemetry_of(status(), k)))
    finally:
        close()
    assert figures["ok"], figures
    verdict = judge_api(seen["during"], seen["after"])
    assert verdict["wrong"] == [] and verdict["ok"]
    assert [d["sample_source"] for d in seen["during"]] == ["psutil", "psutil"]
    assert [a["sample_source"] for a in seen["after"]] == ["jtop", "jtop"]
    assert verdict["telemetry_source_field"]  # docs/api.md: telemetry_source {active, fallback, note...}
    assert all("jtop" in d["note"] and "systemctl restart jtop" in d["note"] for d in seen["during"])


def _console(sampler: Sampler, bus: EventBus, folder: Path) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.toml").write_text("")
    core = make_core(folder, telemetry=sampler, bus=bus)
    return core


def test_the_gauge_line_shows_the_fallback_and_clears_it_when_jtop_is_back(service: FlakyJtop,
                                                                           tmp_path: Path) -> None:
    bus = EventBus()
    sampler = jtop_sampler(service, bus)
    core = _console(sampler, bus, tmp_path / "tui").start()
    app = build_app(core, settings=core.settings)
    notes: dict[str, str] = {}

    async def main() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            bar = app.query_one(GaugeBar)
            await settle(pilot, lambda: bar.sample is not None and bar.sample.source == "jtop", what="jtop gauges")
            assert bar.source_note == ""
            service.fail("service-died")
            await settle(pilot, lambda: bar.sample.source == "psutil" and bar.source_note, what="the fallback note")
            notes["during"] = bar.source_note
            notes["line"] = bar.line(120).plain
            service.repair()
            await settle(pilot, lambda: bar.sample.source == "jtop", what="jtop back")
            await settle(pilot, lambda: bar.source_note == "", what="the note cleared")

    try:
        asyncio.run(main())
    finally:
        core.close()
    assert "jtop service stopped" in notes["during"] and "systemctl restart jtop" in notes["during"]
    assert "jtop service stopped" in notes["line"]  # on the gauge line itself, not only in the log


def test_a_jtop_down_at_start_is_shown_on_the_gauge_line(service: FlakyJtop, tmp_path: Path) -> None:
    service.fail("service-died")  # a Jetson whose jtop service is down when the console starts
    bus = EventBus()
    sampler = jtop_sampler(service, bus)
    core = _console(sampler, bus, tmp_path / "tui").start()
    app = build_app(core, settings=core.settings)
    notes: dict[str, str] = {}

    async def main() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            bar = app.query_one(GaugeBar)
            await settle(pilot, lambda: bar.sample is not None and bar.source_note, what="the fallback note")
            notes["start"] = bar.source_note
            service.repair()
            await settle(pilot, lambda: bar.sample.source == "jtop" and bar.source_note == "", what="jtop back")

    try:
        asyncio.run(main())
    finally:
        core.close()
    assert "jtop service is not running" in notes["start"] and "systemctl restart jtop" in notes["start"]
