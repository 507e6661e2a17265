"""The event bus: typed events, a publisher no subscriber can slow or break. The delivery
rules (state events never dropped, high-rate events coalesced, snapshots) are in
``test_events_delivery.py``."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from orin_console.core.events.bus import Event, EventBus, TelemetrySample, TelemetrySourceChanged
from orin_console.testing.telemetry_fakes import make_sample
from orin_console.testing.waits import wait_until


@dataclasses.dataclass(frozen=True, slots=True)
class Ping(Event):
    n: int


def test_events_are_frozen_and_timestamped() -> None:
    before = time.time()
    event = Ping(3)
    assert before <= event.ts <= time.time()
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.n = 4  # type: ignore[misc]
    assert Ping(1, ts=5.0).ts == 5.0


def test_pull_subscription_gets_events_in_order() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for n in range(3):
        bus.publish(Ping(n))
    assert [e.n for e in sub.drain()] == [0, 1, 2]  # type: ignore[attr-defined]
    assert sub.get(timeout=0.01) is None


def test_kinds_filter_includes_subclasses_only() -> None:
    bus = EventBus()
    telemetry = bus.subscribe(kinds=(TelemetrySample,))
    everything = bus.subscribe()
    bus.publish(Ping(1))
    bus.publish(TelemetrySample(sample=make_sample()))
    bus.publish(TelemetrySourceChanged(previous="jtop", current="psutil", reason="stopped"))
    assert [type(e) for e in telemetry.drain()] == [TelemetrySample]
    assert len(everything.drain()) == 3


def test_raising_callback_does_not_affect_others() -> None:
    bus = EventBus()
    good: list[int] = []
    done = threading.Event()

    def bad(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    def ok(event: Event) -> None:
        good.append(event.n)  # type: ignore[attr-defined]
        if len(good) == 3:
            done.set()

    broken = bus.subscribe(bad)
    fine = bus.subscribe(ok)
    for n in range(3):
        bus.publish(Ping(n))
    assert done.wait(5)
    wait_until(lambda: broken.failures >= 3, what="the broken callback to fail on all three events")
    assert good == [0, 1, 2]
    assert broken.failures == 3  # once per event, no more
    broken.close()
    fine.close()


def test_unsubscribe_stops_delivery_and_joins_the_thread() -> None:
    bus = EventBus()
    got: list[Event] = []
    sub = bus.subscribe(got.append, name="test-sub")
    assert bus.subscriber_count == 1
    sub.close()
    assert bus.subscriber_count == 0
    assert sub.closed and sub._thread is not None and not sub._thread.is_alive()
    bus.publish(Ping(1))
    assert got == [] and sub.get(timeout=0) is None
    bus.unsubscribe(sub)  # idempotent


def test_get_wakes_when_an_event_arrives_from_another_thread() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        timer = threading.Timer(0.05, bus.publish, args=(Ping(7),))
        timer.start()
        event = sub.get(timeout=5)
        timer.join()
    assert isinstance(event, Ping) and event.n == 7


def test_concurrent_publishers_lose_nothing_below_capacity() -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=10_000)

    def burst(base: int) -> None:
        for n in range(500):
            bus.publish(Ping(base + n))

    threads = [threading.Thread(target=burst, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sorted(e.n for e in sub.drain())  # type: ignore[attr-defined]
    assert got == sorted(k * 1000 + n for k in range(4) for n in range(500))
    assert sub.dropped == 0 and not sub.overflowed


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize must be at least 1"):
        EventBus().subscribe(maxsize=0)
