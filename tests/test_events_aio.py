"""``aevents``: the bus's events on an asyncio loop, with the bus's delivery rules, closed when
the iteration stops or its task is cancelled. Run with ``asyncio.run`` (no plugin needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading

import pytest

from orin_console.core.events.aio import aevents
from orin_console.core.events.bus import Event, EventBus, Snapshot, SnapshotUnavailable
from orin_console.core.events.kinds import GenerationFinished, TokenGenerated


@dataclasses.dataclass(frozen=True, slots=True)
class Ping(Event):
    n: int


def publish_later(bus: EventBus, events: list[Event], gap_s: float = 0.0) -> threading.Thread:
    def run() -> None:
        for event in events:
            if gap_s:
                threading.Event().wait(gap_s)
            bus.publish(event)

    thread = threading.Thread(target=run, name="test-publisher")
    thread.start()
    return thread


def test_events_from_another_thread_arrive_in_order_and_the_loop_keeps_ticking() -> None:
    bus = EventBus()

    async def main() -> tuple[list[int], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        tick = asyncio.create_task(ticker())
        got: list[int] = []
        async with aevents(bus, kinds=(Ping,)) as events:
            publisher = publish_later(bus, [Ping(n) for n in range(20)], gap_s=0.01)
            async for event in events:
                got.append(event.n)  # type: ignore[attr-defined]
                if len(got) == 20:
                    break
            assert bus.subscriber_count == 1
        assert bus.subscriber_count == 0  # closed on leaving the block
        publisher.join(5)
        tick.cancel()
        return got, ticks

    got, ticks = asyncio.run(main())
    print(f"ticks while waiting for 20 events 10 ms apart: {ticks}")
    assert got == list(range(20)) and ticks >= 10


def test_a_slow_consumer_gets_tokens_merged_and_every_state_event() -> None:
    bus = EventBus()

    async def main() -> list[Event]:
        events = aevents(bus)
        await events.__aenter__()
        for n in range(500):  # published while the loop is not reading
            bus.publish(TokenGenerated(request_id="r1", model_id="alpha", text=f"{n} "))
            if n % 100 == 0:
                bus.publish(Ping(n))
        bus.publish(GenerationFinished(request_id="r1", model_id="alpha", tokens=500, ttft_s=None,
                                       tok_per_s=None, finish_reason="stop"))
        got: list[Event] = []
        async for event in events:
            got.append(event)
            if isinstance(event, GenerationFinished):
                break
        await events.aclose()
        return got

    got = asyncio.run(main())
    assert [e.n for e in got if isinstance(e, Ping)] == [0, 100, 200, 300, 400]  # type: ignore[attr-defined]
    tokens = [e for e in got if isinstance(e, TokenGenerated)]
    assert "".join(t.text for t in tokens) == "".join(f"{n} " for n in range(500))
    assert len(tokens) <= 6  # one merged event between each pair of state events
    assert bus.subscriber_count == 0


def test_cancelling_the_iterating_task_closes_the_subscription() -> None:
    bus = EventBus()

    async def main() -> None:
        async def consume() -> None:
            async for _ in aevents(bus):
                pass

        task = asyncio.create_task(consume())
        while bus.subscriber_count == 0:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert bus.subscriber_count == 0

    asyncio.run(main())


def test_breaking_out_of_async_for_closes_the_subscription() -> None:
    bus = EventBus()

    async def main() -> None:
        thread = publish_later(bus, [Ping(n) for n in range(3)], gap_s=0.02)
        async for event in aevents(bus, kinds=(Ping,)):
            assert isinstance(event, Ping)
            break
        gc.collect()
        assert bus.subscriber_count == 0
        thread.join(5)

    asyncio.run(main())


def test_snapshot_first_and_on_demand_made_off_the_loop() -> None:
    bus = EventBus()
    threads: list[str] = []

    def provider() -> str:
        threads.append(threading.current_thread().name)
        return f"state {len(threads)}"

    bus.set_snapshot_provider(provider)

    async def main() -> list[Event]:
        got: list[Event] = []
        async with aevents(bus, kinds=(Ping,), snapshot=True) as events:
            bus.publish(Ping(1))
            async for event in events:
                got.append(event)
                if len(got) == 2:
                    await events.resync()
                if len(got) == 3:
                    break
        return got

    got = asyncio.run(main())
    assert [type(e) for e in got] == [Snapshot, Ping, Snapshot]
    assert [e.status for e in got if isinstance(e, Snapshot)] == ["state 1", "state 2"]
    assert threading.main_thread().name not in threads  # never on the loop's thread


def test_snapshot_without_a_provider_fails_clearly() -> None:
    async def main() -> None:
        with pytest.raises(SnapshotUnavailable):
            async with aevents(EventBus(), snapshot=True):
                pass

    asyncio.run(main())
