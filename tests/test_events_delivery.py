"""The bus's delivery rules for a slow subscriber: state events are never dropped and stay in
order, high-rate events coalesce per key (token text merged, telemetry and progress latest
wins), an overflow resynchronises from a snapshot, and snapshots on subscribe and on demand."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from orin_console.core.events.bus import Event, EventBus, Snapshot, SnapshotUnavailable
from orin_console.core.events.kinds import (
    GenerationFinished,
    GenerationStarted,
    LoadProgress,
    TelemetrySample,
    TierUsageChanged,
    TokenGenerated,
)
from orin_console.testing.telemetry_fakes import make_sample
from orin_console.testing.waits import wait_until

STATE_KINDS = (GenerationStarted, GenerationFinished, TierUsageChanged)


@dataclasses.dataclass(frozen=True, slots=True)
class Ping(Event):
    n: int


def started(rid: str) -> GenerationStarted:
    return GenerationStarted(request_id=rid, source="test", model_id="alpha", explanation="why")


def finished(rid: str) -> GenerationFinished:
    return GenerationFinished(request_id=rid, model_id="alpha", tokens=3, ttft_s=0.1,
                              tok_per_s=9.0, finish_reason="stop")


def token_flood(bus: EventBus, requests: int = 3, tokens: int = 600) -> tuple[list[Event], dict[str, str]]:
    """Interleaved requests: state events among thousands of tokens, progress and telemetry.
    Returns the state events published, in order, and each request's whole text."""
    states: list[Event] = []
    texts = {f"r{i}": "" for i in range(requests)}

    def state(event: Event) -> None:
        states.append(event)
        bus.publish(event)

    for rid in texts:
        state(started(rid))
    for n in range(tokens):
        for i, rid in enumerate(texts):
            piece = f"{rid}:{n} "
            texts[rid] += piece
            bus.publish(TokenGenerated(request_id=rid, model_id="alpha", text=piece))
            if n % 50 == i:
                state(TierUsageChanged(tiers=()))
        bus.publish(LoadProgress(model_id="beta", tier="ram", fraction=n / tokens))
        bus.publish(TelemetrySample(sample=make_sample()))
    for rid in texts:
        state(finished(rid))
    return states, texts


def test_slow_subscriber_under_a_token_flood_sees_every_state_change_in_order() -> None:
    bus = EventBus()
    release = threading.Event()
    seen: list[Event] = []

    def slow(event: Event) -> None:
        release.wait(10)  # stuck on the first event until the whole flood is published
        seen.append(event)

    sub = bus.subscribe(slow, name="slow-subscriber")
    states, texts = token_flood(bus)
    release.set()
    wait_until(lambda: seen and isinstance(seen[-1], GenerationFinished)
               and seen[-1].request_id == "r2", what="the last finish event")
    sub.close()

    assert [e for e in seen if isinstance(e, STATE_KINDS)] == states  # every one, in order
    for rid, text in texts.items():
        got = [e for e in seen if isinstance(e, TokenGenerated) and e.request_id == rid]
        assert "".join(e.text for e in got) == text  # no text lost, none reordered
        start = seen.index(next(e for e in states if getattr(e, "request_id", None) == rid))
        end = seen.index(states[-3 + int(rid[1:])])
        assert all(start < seen.index(e) < end for e in got)  # between its start and finish
    published_tokens = sum(len(t.split()) for t in texts.values())
    token_events = sum(isinstance(e, TokenGenerated) for e in seen)
    print(f"{published_tokens} tokens published, {token_events} token events delivered")
    assert token_events <= published_tokens // 10
    assert sum(isinstance(e, TelemetrySample) for e in seen) < 100
    assert sub.dropped == 0 and sub.overflows == 0 and sub.coalesced > 0


def test_a_subscriber_that_keeps_up_gets_every_token_event() -> None:
    bus = EventBus()
    sub = bus.subscribe(kinds=(TokenGenerated,))
    for n in range(20):
        bus.publish(TokenGenerated(request_id="r1", model_id="alpha", text=str(n)))
        event = sub.get_nowait()
        assert isinstance(event, TokenGenerated) and event.text == str(n)
    assert sub.coalesced == 0


def test_telemetry_and_load_progress_coalesce_latest_wins() -> None:
    bus = EventBus()
    sub = bus.subscribe(kinds=(TelemetrySample, LoadProgress, Ping))
    samples = [make_sample(mono=float(n)) for n in range(50)]
    for n, sample in enumerate(samples):
        bus.publish(TelemetrySample(sample=sample))
        bus.publish(LoadProgress(model_id="alpha", tier="ram", fraction=n / 100))
        bus.publish(LoadProgress(model_id="beta", tier="swap", fraction=n / 50))
    bus.publish(Ping(1))
    bus.publish(LoadProgress(model_id="alpha", tier="ram", fraction=1.0))
    got = sub.drain()
    assert [type(e) for e in got] == [TelemetrySample, LoadProgress, Ping, LoadProgress]
    assert got[0].sample is samples[-1]  # type: ignore[attr-defined]
    assert (got[1].model_id, got[1].fraction) == ("beta", 49 / 50)  # type: ignore[attr-defined]
    assert (got[3].model_id, got[3].fraction) == ("alpha", 1.0)  # type: ignore[attr-defined]
    assert sub.coalesced == 3 * 50 - 3 + 1 and sub.dropped == 0


def test_tokens_of_different_requests_stay_apart() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for rid, text in (("r1", "a"), ("r2", "x"), ("r1", "b"), ("r2", "y")):
        bus.publish(TokenGenerated(request_id=rid, model_id="alpha", text=text))
    got = sub.drain()
    assert [(e.request_id, e.text) for e in got] == [("r1", "ab"), ("r2", "xy")]  # type: ignore[attr-defined]


def test_publish_never_blocks_on_a_stuck_subscriber() -> None:
    bus = EventBus()
    stuck = threading.Event()
    release = threading.Event()

    def blocked(event: Event) -> None:
        stuck.set()
        release.wait(10)

    sub = bus.subscribe(blocked)
    bus.publish(Ping(0))
    assert stuck.wait(5)
    began = time.perf_counter()
    for n in range(5000):
        bus.publish(TokenGenerated(request_id="r1", model_id="alpha", text="x"))
        bus.publish(Ping(n))
    elapsed = time.perf_counter() - began
    print(f"10,000 publishes past a stuck subscriber: {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0
    assert sub.pending == 5001  # every state event and one merged token event
    release.set()
    sub.close()


def test_overflow_at_the_hard_cap_resyncs_from_a_snapshot() -> None:
    bus = EventBus()
    bus.set_snapshot_provider(lambda: {"models": "all of them"})
    sub = bus.subscribe(maxsize=4)
    for n in range(10):
        bus.publish(Ping(n))
    assert sub.overflowed and sub.overflows >= 1 and sub.dropped > 0
    got = sub.drain()
    first = got[0]
    assert isinstance(first, Snapshot) and first.reason == "overflowed"
    assert first.status == {"models": "all of them"} and first.dropped == sub.dropped
    rest = [e.n for e in got[1:]]  # type: ignore[attr-defined]
    assert rest == sorted(rest) and rest[-1] == 9 and len(rest) + sub.dropped == 10
    assert not sub.overflowed


def test_overflow_without_a_provider_still_says_so() -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=2)
    for n in range(3):
        bus.publish(Ping(n))
    first = sub.get_nowait()
    assert isinstance(first, Snapshot) and first.status is None and first.dropped == 2
    assert first.error is not None and "no snapshot provider" in first.error


def test_snapshot_on_subscribe_comes_first() -> None:
    bus = EventBus()
    state = {"n": 0}
    bus.set_snapshot_provider(lambda: dict(state))
    got: list[Event] = []
    sub = bus.subscribe(got.append, kinds=(Ping,), snapshot=True)
    bus.publish(Ping(1))
    wait_until(lambda: len(got) == 2, what="the snapshot and one ping")
    sub.close()
    assert isinstance(got[0], Snapshot) and got[0].reason == "subscribed" and got[0].status == {"n": 0}
    assert isinstance(got[1], Ping)


def test_resync_on_demand_is_queued_after_the_pending_events() -> None:
    bus = EventBus()
    version = iter(range(100))
    bus.set_snapshot_provider(lambda: next(version))
    with bus.subscribe(kinds=(Ping,)) as sub:
        bus.publish(Ping(1))
        sub.resync()
        bus.publish(Ping(2))
        got = sub.drain()
    assert isinstance(got[0], Ping) and isinstance(got[2], Ping)
    assert isinstance(got[1], Snapshot) and got[1].reason == "requested" and got[1].status == 0


def test_snapshot_without_a_provider_is_a_clear_error() -> None:
    bus = EventBus()
    with pytest.raises(SnapshotUnavailable, match="set_snapshot_provider"):
        bus.subscribe(snapshot=True)
    assert bus.subscriber_count == 0
    with bus.subscribe() as sub, pytest.raises(SnapshotUnavailable):
        sub.resync()


def test_the_wake_hook_fires_when_the_queue_stops_being_empty() -> None:
    bus = EventBus()
    wakes: list[int] = []
    sub = bus.subscribe(on_ready=lambda: wakes.append(sub.pending))
    bus.publish(Ping(1))
    bus.publish(Ping(2))
    assert wakes == [1]
    sub.drain()
    bus.publish(TokenGenerated(request_id="r1", model_id="alpha", text="a"))
    bus.publish(TokenGenerated(request_id="r1", model_id="alpha", text="b"))
    assert wakes == [1, 1]
    sub.close()
    assert wakes == [1, 1, 0]  # closing wakes the waiter too


def test_bus_close_joins_every_callback_thread() -> None:
    bus = EventBus()
    subs = [bus.subscribe(lambda e: None, name=f"sub-{i}") for i in range(3)]
    bus.publish(Ping(1))
    assert bus.close()
    assert bus.subscriber_count == 0
    assert all(s.closed and s._thread is not None and not s._thread.is_alive() for s in subs)


def test_wants_tells_whether_any_subscription_reads_a_kind() -> None:
    from orin_console.core.events.bus import EventBus, TelemetrySample
    from orin_console.core.events.kinds import GenerationFinished, TokenGenerated

    bus = EventBus()
    assert not bus.wants(TokenGenerated)
    finished = bus.subscribe(kinds=(GenerationFinished,))
    assert not bus.wants(TokenGenerated) and bus.wants(GenerationFinished)
    everything = bus.subscribe()  # kinds=(Event,): every kind
    assert bus.wants(TokenGenerated) and bus.wants(TelemetrySample)
    everything.close()
    finished.close()
    assert not bus.wants(GenerationFinished)
