"""The asyncio adapters of the engine: routing, loading, queueing and token waits never block
the event loop (a ticker task keeps ticking), and cancelling the awaiting task cancels the
generation and frees its queue place. Real manager, tiny generated models (conftest's
``workdir``: alpha chat/ram, beta code/swap); run with ``asyncio.run``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from orin_console.core.engine.aio import aquick, astream_chat, astream_quick
from orin_console.core.engine.inference import Engine
from orin_console.core.engine.types import ParameterError
from orin_console.core.events.kinds import GenerationFinished
from orin_console.core.manager.manager import Manager
from orin_console.testing.managers import make_manager
from orin_console.testing.waits import wait_until

CHAT_PROMPT = "Hello! How are you today?"
STEADY_PROMPT = "hello"
SLOW_TOKENS = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.05"}
LOAD_DELAY_S = 2.0
SLOW_LOAD = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_LOAD_DELAY_S": str(LOAD_DELAY_S)}
GENEROUS_S = 1.0

T = TypeVar("T")


class Ticker:
    """A task that ticks every 5 ms and records the longest gap: a blocked loop shows as a gap."""

    def __init__(self) -> None:
        self.ticks = 0
        self.longest_gap = 0.0

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.longest_gap = max(self.longest_gap, now - last)
            self.ticks += 1
            last = now


def run_with_ticker(make: Callable[[], Awaitable[T]]) -> tuple[T, Ticker]:
    async def main() -> T:
        task = asyncio.create_task(ticker.run())
        try:
            return await make()
        finally:
            task.cancel()

    ticker = Ticker()
    return asyncio.run(main()), ticker


def test_async_stream_pieces_make_the_result(workdir: Path) -> None:
    with make_manager(workdir) as manager:
        engine = Engine(manager)

        async def main() -> tuple[list[str], str, str]:
            async with astream_quick(engine, STEADY_PROMPT, max_tokens=12, temperature=0,
                                     as_chat=False, source="api") as stream:
                explanation = stream.explanation
                pieces = [piece async for piece in stream]
            assert stream.result is not None and stream.result.request_id == stream.request_id
            return pieces, stream.result.text, explanation

        pieces, text, explanation = asyncio.run(main())
        assert pieces and "".join(pieces) == text
        assert explanation.startswith("alpha for chat (auto)")
        result = asyncio.run(aquick(engine, CHAT_PROMPT, max_tokens=2, request_id="api-1"))
        assert result.ok and result.request_id == "api-1"


def test_the_loop_keeps_ticking_while_a_stream_waits_for_a_slow_model(workdir: Path) -> None:
    with make_manager(workdir, runner_env=SLOW_LOAD) as manager:
        engine = Engine(manager)

        async def generate() -> str:
            async with astream_chat(engine, [{"role": "user", "content": "Hi"}], max_tokens=4) as stream:
                assert stream.will_load
                return "".join([piece async for piece in stream])

        began = time.perf_counter()
        _, ticker = run_with_ticker(generate)
        elapsed = time.perf_counter() - began
    print(f"{elapsed:.2f} s with a {LOAD_DELAY_S:.0f} s load: {ticker.ticks} ticks, "
          f"longest gap {ticker.longest_gap * 1000:.0f} ms")
    assert elapsed >= LOAD_DELAY_S  # it did wait for the slow load...
    assert ticker.longest_gap < GENEROUS_S  # ...and the loop never stopped meanwhile
    assert ticker.ticks >= 50


def _place_is_free(manager: Manager) -> bool:
    status = manager.model_status("alpha")
    return not status.busy and status.queued == 0


def test_cancelling_the_task_stops_the_generation_and_frees_the_place(workdir: Path) -> None:
    with make_manager(workdir, runner_env=SLOW_TOKENS) as manager:
        engine = Engine(manager)
        manager.load("alpha").result(60)
        finished = manager.bus.subscribe(kinds=(GenerationFinished,))
        pieces: list[str] = []

        async def read() -> None:
            async with astream_quick(engine, STEADY_PROMPT, max_tokens=200, temperature=0,
                                     as_chat=False) as stream:
                async for piece in stream:
                    pieces.append(piece)

        async def main() -> float:
            task = asyncio.create_task(read())
            while len(pieces) < 2:
                await asyncio.sleep(0.005)
            began = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.perf_counter() - began

        elapsed, ticker = run_with_ticker(main)
        print(f"task cancelled after {len(pieces)} pieces: returned in {elapsed * 1000:.0f} ms, "
              f"longest loop gap {ticker.longest_gap * 1000:.0f} ms")
        assert elapsed < GENEROUS_S and ticker.longest_gap < GENEROUS_S
        assert _place_is_free(manager)  # the worker was joined: nothing left holding it
        event = finished.get(timeout=10)
        assert isinstance(event, GenerationFinished) and event.finish_reason == "cancelled"
        assert event.tokens < 200
        assert engine.quick(CHAT_PROMPT, max_tokens=2).ok  # usable again


def test_cancelling_a_queued_async_request_returns_at_once(workdir: Path) -> None:
    with make_manager(workdir, runner_env=SLOW_TOKENS, queue_limit=1) as manager:
        engine = Engine(manager)
        manager.load("alpha").result(60)

        async def main() -> float:
            async with astream_quick(engine, STEADY_PROMPT, max_tokens=100, temperature=0,
                                     as_chat=False) as running:
                await running.__anext__()
                queued = asyncio.create_task(aquick(engine, CHAT_PROMPT, max_tokens=2))
                while manager.model_status("alpha").queued < 1:
                    await asyncio.sleep(0.005)
                began = time.perf_counter()
                queued.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await queued
                elapsed = time.perf_counter() - began
                assert manager.model_status("alpha").queued == 0
            return elapsed

        elapsed, ticker = run_with_ticker(main)
        print(f"queued request cancelled in {elapsed * 1000:.0f} ms")
        assert elapsed < GENEROUS_S and ticker.longest_gap < GENEROUS_S
        wait_until(lambda: _place_is_free(manager), what="alpha's place to be free")


def test_routing_errors_surface_when_the_stream_starts(workdir: Path) -> None:
    with make_manager(workdir) as manager:
        engine = Engine(manager)

        async def main() -> None:
            with pytest.raises(ParameterError, match=r"^prompt = "):
                async with astream_quick(engine, "   "):
                    pass
            with pytest.raises(ParameterError, match=r"^max_tokens = "):
                await aquick(engine, CHAT_PROMPT, max_tokens=0)

        asyncio.run(main())
        with pytest.raises(ParameterError, match=r"^request_id = "):
            astream_quick(engine, CHAT_PROMPT, request_id="no spaces please")
