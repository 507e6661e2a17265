"""The sampler: fallback on every failure mode, reconnect with backoff, staleness, history, stop.

Most tests drive ticks by hand (``sample_once``) on a fake clock, so backoff and staleness are
exact and nothing sleeps; the thread tests use a 20 ms interval.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import psutil
import pytest

from orin_console.core.events.bus import EventBus, TelemetrySample, TelemetrySourceChanged
from orin_console.core.settings import load_settings
from orin_console.core.telemetry import (
    JtopSource,
    NvmlSource,
    PsutilSource,
    Sampler,
    TelemetryError,
    build_sources,
)
from orin_console.testing.telemetry_fakes import ScriptedSource, failed, make_sample, unavailable
from orin_console.testing.waits import wait_until


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _sampler(clock: Clock, *sources: ScriptedSource, bus: EventBus | None = None, **kw: object) -> Sampler:
    for s in sources:
        s.clock = clock
    opts = {"interval_s": 1.0, "retry_initial_s": 1.0, "retry_max_s": 4.0, **kw}
    return Sampler(list(sources), bus=bus, clock=clock, **opts)  # type: ignore[arg-type]


def _changes(sub) -> list[TelemetrySourceChanged]:  # type: ignore[no-untyped-def]
    return [e for e in sub.drain() if isinstance(e, TelemetrySourceChanged)]


def test_starts_on_the_best_source_that_works_and_says_why(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    sub = bus.subscribe()
    restart = "sudo systemctl restart jtop.service"
    jtop = ScriptedSource("jtop", opens=[unavailable("jtop", "the jtop service is not running", restart)])
    nvml = ScriptedSource("nvml", opens=[unavailable("nvml", "no NVIDIA driver", retry=False)])
    ps = ScriptedSource("psutil")
    sampler = _sampler(clock, jtop, nvml, ps, bus=bus)
    with caplog.at_level(logging.WARNING, logger="orin_console.core.telemetry"):
        sample = sampler.sample_once()
    assert sample.source == "psutil" and sampler.active_source == "psutil"
    events = sub.drain()
    change = events[0]
    assert isinstance(change, TelemetrySourceChanged)
    assert change.previous is None and change.current == "psutil"
    assert "jtop: the jtop service is not running" in change.reason and "nvml: no NVIDIA driver" in change.reason
    assert change.fix == "sudo systemctl restart jtop.service"
    assert isinstance(events[1], TelemetrySample) and events[1].sample is sample
    assert "sudo systemctl restart jtop.service" in caplog.text  # a warning that says the fix
    states = {s.name: (s.state, s.reason, s.fix) for s in sampler.status()}
    assert states["jtop"] == ("retrying", "the jtop service is not running", "sudo systemctl restart jtop.service")
    assert states["nvml"][0] == "unavailable"
    assert states["psutil"] == ("active", None, None)


def test_quiet_start_when_nothing_better_could_be_fixed(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    jtop = ScriptedSource("jtop", opens=[unavailable("jtop", "jetson-stats is not installed", retry=False)])
    ps = ScriptedSource("psutil")
    with caplog.at_level(logging.INFO, logger="orin_console.core.telemetry"):
        _sampler(clock, jtop, ps).sample_once()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_source_failing_mid_session_falls_back_in_the_same_tick(clock: Clock) -> None:
    bus = EventBus()
    sub = bus.subscribe(kinds=(TelemetrySourceChanged,))
    stopped = failed("jtop", "the jtop service stopped", "sudo systemctl restart jtop.service")
    jtop = ScriptedSource("jtop", reads=[None, stopped])
    ps = ScriptedSource("psutil")
    sampler = _sampler(clock, jtop, ps, bus=bus)
    assert sampler.sample_once().source == "jtop"
    assert ps.open_calls == 0  # a lower source is not touched while a better one works
    clock.advance(1)
    sample = sampler.sample_once()
    assert sample.source == "psutil"
    assert jtop.close_calls == 1 and not jtop.is_open
    change = _changes(sub)[-1]
    assert (change.previous, change.current) == ("jtop", "psutil")
    assert change.reason == "jtop: the jtop service stopped" and change.fix == "sudo systemctl restart jtop.service"


@pytest.mark.parametrize(
    "exc",
    [
        failed("jtop", "the jtop service stopped"),
        unavailable("jtop", "service went away"),
        RuntimeError("a bug in the source"),
        KeyError("RAM"),
    ],
    ids=["SourceFailed", "SourceUnavailable", "RuntimeError", "KeyError"],
)
def test_every_failure_mode_falls_back(clock: Clock, exc: BaseException) -> None:
    jtop = ScriptedSource("jtop", reads=[None, exc, None])
    ps = ScriptedSource("psutil")
    sampler = _sampler(clock, jtop, ps)
    sampler.sample_once()
    assert sampler.sample_once().source == "psutil"
    assert sampler.status()[0].state == "retrying"
    clock.advance(1.0)  # retry due: jtop opens again and reads fine
    assert sampler.sample_once().source == "jtop"


def test_reconnect_backs_off_and_comes_back(clock: Clock) -> None:
    bus = EventBus()
    sub = bus.subscribe(kinds=(TelemetrySourceChanged,))
    down = unavailable("jtop", "the jtop service is not running", "sudo systemctl restart jtop.service")
    jtop = ScriptedSource("jtop", opens=[None, down, down, down, down, None], reads=[failed("jtop", "stopped"), None])
    ps = ScriptedSource("psutil")
    sampler = _sampler(clock, jtop, ps, bus=bus)
    assert sampler.sample_once().source == "psutil"  # jtop opened, failed on its first read
    attempts = []
    for _ in range(16):  # 16 s, one tick a second
        clock.advance(1.0)
        before = jtop.open_calls
        source = sampler.sample_once().source
        if jtop.open_calls > before:
            attempts.append((clock.t - 1000.0, source))
        if source == "jtop":
            break
    # backoff 1, 2, 4, 4 (capped), then the service answers
    assert attempts == [(1.0, "psutil"), (3.0, "psutil"), (7.0, "psutil"), (11.0, "psutil"), (15.0, "jtop")]
    assert not ps.is_open and ps.close_calls >= 1  # the fallback is released
    back = _changes(sub)[-1]
    assert (back.previous, back.current) == ("psutil", "jtop") and back.reason == "jtop is back"
    assert sampler.status()[0].state == "active"
    assert (sampler.status()[1].state, sampler.status()[1].reason) == ("closed", None)
    clock.advance(1.0)  # and the backoff starts from the beginning after a recovery
    jtop.reads = [failed("jtop", "stopped again")]
    jtop.read_calls = 0
    assert sampler.sample_once().source == "psutil"
    assert sampler.status()[0].retry_in_s == pytest.approx(1.0)


def test_permanent_unavailability_is_not_probed_again(clock: Clock) -> None:
    nvml = ScriptedSource("nvml", opens=[unavailable("nvml", "no NVIDIA driver", retry=False)])
    ps = ScriptedSource("psutil")
    sampler = _sampler(clock, nvml, ps)
    for _ in range(10):
        sampler.sample_once()
        clock.advance(100)
    assert nvml.open_calls == 1


def test_buggy_open_is_retried_later(clock: Clock) -> None:
    jtop = ScriptedSource("jtop", opens=[RuntimeError("boom"), None])
    ps = ScriptedSource("psutil")
    sampler = _sampler(clock, jtop, ps)
    assert sampler.sample_once().source == "psutil"
    assert "RuntimeError: boom" in (sampler.status()[0].reason or "")
    clock.advance(1)
    assert sampler.sample_once().source == "jtop"


def test_all_sources_failing_is_an_error_and_the_data_goes_stale(clock: Clock) -> None:
    bus = EventBus()
    sub = bus.subscribe(kinds=(TelemetrySourceChanged,))
    ps = ScriptedSource("psutil", reads=[None, failed("psutil", "cannot read /proc/meminfo")])
    sampler = _sampler(clock, ps, bus=bus)
    first = sampler.sample_once()
    clock.advance(1)
    with pytest.raises(TelemetryError, match="cannot read /proc/meminfo"):
        sampler.sample_once()
    assert sampler.latest() is first and sampler.active_source is None
    last = _changes(sub)[-1]
    assert (last.previous, last.current) == ("psutil", None)
    assert not sampler.is_stale()  # 1 s old, stale after 3 s
    clock.advance(2.5)
    assert sampler.is_stale() and first.is_stale(clock())


def test_staleness_follows_the_interval(clock: Clock) -> None:
    sampler = _sampler(clock, ScriptedSource("psutil"), interval_s=0.5)
    assert sampler.stale_after_s == 1.5
    assert sampler.is_stale()  # nothing sampled yet
    s = sampler.sample_once()
    assert s.stale_after_s == 1.5 and s.age(clock()) == 0.0
    clock.advance(1.4)
    assert not sampler.is_stale() and not s.is_stale(clock())
    clock.advance(0.2)
    assert sampler.is_stale() and s.is_stale(clock())
    assert not s.is_stale(clock(), max_age=10.0)
    assert Sampler([ScriptedSource("psutil")], interval_s=0.05).stale_after_s == 1.0  # at least 1 s
    data = s.to_dict(now=clock())
    assert data["stale"] is True and data["age_s"] == pytest.approx(1.6)
    json.dumps(data)


def test_history_is_bounded_and_ordered(clock: Clock) -> None:
    sampler = _sampler(clock, ScriptedSource("psutil"), history=5)
    for _ in range(12):
        sampler.sample_once()
        clock.advance(1)
    hist = sampler.history()
    assert len(hist) == 5
    assert [s.mem_used for s in hist] == [8, 9, 10, 11, 12]
    assert [s.mem_used for s in sampler.history(2)] == [11, 12]
    assert sampler.history(0) == []
    assert sampler.latest() is hist[-1]


def test_thread_samples_publishes_and_stops_cleanly() -> None:
    bus = EventBus()
    got = bus.subscribe(kinds=(TelemetrySample,))
    src = ScriptedSource("psutil", clock=time.monotonic)
    sampler = Sampler([src], bus=bus, interval_s=0.02, history=50)
    sampler.start()
    with pytest.raises(RuntimeError):
        sampler.start()
    events = [wait_until(lambda: got.get(timeout=0.1), what=f"telemetry sample {i + 1}") for i in range(5)]
    assert sampler.running
    started = time.monotonic()
    sampler.stop()
    assert time.monotonic() - started < 1.0
    assert not sampler.running and not src.is_open and src.close_calls == 1
    assert [s.name for s in sampler.status()] == ["psutil"] and sampler.status()[0].state == "closed"
    count = src.read_calls
    time.sleep(0.06)
    assert src.read_calls == count  # nothing runs after stop
    sampler.stop()  # twice is fine
    monos = [e.sample.mono for e in events]  # type: ignore[attr-defined]
    assert monos == sorted(monos)


def test_stop_does_not_wait_for_a_long_interval() -> None:
    sampler = Sampler([ScriptedSource("psutil")], interval_s=30.0)
    with sampler:
        wait_until(sampler.latest, interval=0.005, what="the first sample")
        started = time.monotonic()
    assert time.monotonic() - started < 1.0 and not sampler.running


def test_thread_survives_a_source_that_always_raises() -> None:
    broken = ScriptedSource("jtop", reads=[RuntimeError("always")])
    ps = ScriptedSource("psutil", clock=time.monotonic)
    sampler = Sampler([broken, ps], interval_s=0.02, retry_initial_s=0.02, retry_max_s=0.02)
    with sampler:
        wait_until(lambda: broken.read_calls >= 3, what="three reads of the broken source")
    assert sampler.latest() is not None and sampler.latest().source == "psutil"  # type: ignore[union-attr]


def test_sampler_cpu_use_is_small() -> None:
    """The real psutil source's cost per tick, measured on the sampler thread itself."""
    sampler = Sampler([PsutilSource()], interval_s=0.02, history=1000)
    sampler.start()
    time.sleep(0.05)
    thread = sampler._thread
    assert thread is not None and thread.native_id is not None

    def thread_cpu() -> float:
        for t in psutil.Process().threads():
            if t.id == thread.native_id:
                return t.user_time + t.system_time
        raise AssertionError("sampler thread not found")

    cpu0, ticks0 = thread_cpu(), sampler.ticks
    time.sleep(1.0)
    cpu1, ticks1 = thread_cpu(), sampler.ticks
    sampler.stop()
    ticks = ticks1 - ticks0
    assert ticks >= 20
    per_tick = (cpu1 - cpu0) / ticks
    # At 1 Hz this is the share of one core: well under 1 % means well under 10 ms a tick.
    assert per_tick < 0.005, f"{per_tick * 1000:.2f} ms of CPU per tick"


def test_from_settings_and_source_choices() -> None:
    settings = load_settings(None, env={}, telemetry_source="psutil", telemetry_interval_s=0.5, telemetry_history=10)
    sampler = Sampler.from_settings(settings)
    assert [s.name for s in sampler.status()] == ["psutil"]
    assert sampler.interval_s == 0.5 and sampler.stale_after_s == 1.5
    assert sampler._history.maxlen == 10
    assert [type(s) for s in build_sources("auto")] == [JtopSource, NvmlSource, PsutilSource]
    assert [type(s) for s in build_sources("jtop")] == [JtopSource, PsutilSource]
    assert [type(s) for s in build_sources("nvml")] == [NvmlSource, PsutilSource]
    with pytest.raises(ValueError, match="unknown telemetry source"):
        build_sources("tegrastats")
    with pytest.raises(ValueError):
        Sampler([])


def test_auto_sampler_live_on_this_machine() -> None:
    """Whatever this machine has, auto mode yields a sample and explains the sources it skipped."""
    sampler = Sampler(build_sources("auto", interval_s=0.1), interval_s=0.1)
    try:
        sample = sampler.sample_once()
    finally:
        sampler.stop()
    assert sample.source in ("jtop", "nvml", "psutil") and sample.mem_total
    status = {s.name: s for s in sampler.status()}
    for name in ("jtop", "nvml"):
        if name != sample.source and status[name].state != "untried":
            assert status[name].reason


def test_make_sample_helper_is_a_plain_sample() -> None:
    s = make_sample("jtop", mono=5.0, mem_total=1)
    assert s.source == "jtop" and s.mem_total == 1 and s.gpu_process_bytes is None


def test_concurrent_readers_see_consistent_history(clock: Clock) -> None:
    sampler = Sampler([ScriptedSource("psutil", clock=time.monotonic)], interval_s=0.001, history=20)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(500):
                hist = sampler.history()
                assert len(hist) <= 20
                assert [s.mem_used for s in hist] == sorted(s.mem_used for s in hist)  # type: ignore[type-var]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    with sampler:
        readers = [threading.Thread(target=read) for _ in range(3)]
        for r in readers:
            r.start()
        for r in readers:
            r.join()
    assert errors == []
