"""Helpers for the console's pilot and snapshot tests: small host apps, a scripted engine,
an async wait, fixed results (no timing figures that change between runs)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from orin_console.core.engine.selection import Candidate, Selection
from orin_console.core.engine.tasks import TaskGuess
from orin_console.core.engine.types import Result
from orin_console.tui.widgets.chat import ChatPane

SLOW_ENV = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.05"}
"""Runner environment: 50 ms per token, so a test can stop an answer in the middle."""


async def settle(pilot: Pilot[Any], predicate: Callable[[], Any], *, timeout: float = 30.0,
                 what: str = "the condition") -> Any:
    """Let the app run until ``predicate()`` is truthy (the event loop keeps going meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {value!r})")
        await pilot.pause(0.02)


class ChatApp(App[None]):
    """A host for one :class:`ChatPane`; records the messages the pane posts for the app."""

    def __init__(self, engine: Any, **pane_options: Any) -> None:
        super().__init__()
        self.engine = engine
        self.pane_options = pane_options
        self.finished: list[ChatPane.AnswerFinished] = []
        self.failed: list[ChatPane.AnswerFailed] = []

    def compose(self) -> ComposeResult:
        yield ChatPane(self.engine, id="chat", **self.pane_options)

    def on_mount(self) -> None:
        self.query_one(ChatPane).focus_input()

    def on_chat_pane_answer_finished(self, message: ChatPane.AnswerFinished) -> None:
        self.finished.append(message)

    def on_chat_pane_answer_failed(self, message: ChatPane.AnswerFailed) -> None:
        self.failed.append(message)


def fixed_result(text: str, *, finish_reason: str = "stop", tokens: int = 12) -> Result:
    """A result with fixed figures (for snapshots and the scripted engine)."""
    guess = TaskGuess("chat", 0.9, ("greeting",), {"chat": 1.0})
    selection = Selection(
        model_id="alpha", task="chat", mode="auto", score=3.5, runner_up="beta", runner_up_score=1.25,
        reasons=("fits chat",), explanation="auto: chat, fits chat, resident in ram; runner-up beta",
        candidates=(Candidate("alpha", 3.5, "fits chat, resident in ram"), Candidate("beta", 1.25, "code")),
        guess=guess,
    )
    return Result(text=text, model_id="alpha", task="chat", selection=selection, ttft_s=0.045,
                  tok_per_s=77.1, prompt_tokens=9, tokens=tokens, finish_reason=finish_reason,
                  total_s=0.2, elapsed_s=0.25)


class ScriptedStream:
    """An :class:`~orin_console.core.engine.streams.EngineStream` look-alike: fixed pieces."""

    def __init__(self, pieces: list[str], gate: threading.Event | None = None) -> None:
        self._pieces = pieces
        self._gate = gate
        self._cancelled = threading.Event()
        self.model_id = "alpha"
        self.will_load = False
        self.load_tier = None
        self.result: Result | None = None

    def __iter__(self) -> Iterator[str]:
        sent: list[str] = []
        for piece in self._pieces:
            if self._cancelled.is_set():
                break
            sent.append(piece)
            yield piece
            if self._gate is not None:
                self._gate.wait(10)
        reason = "cancelled" if self._cancelled.is_set() else "stop"
        self.result = fixed_result("".join(sent), finish_reason=reason, tokens=len(sent))

    def cancel(self) -> None:
        self._cancelled.set()

    def __enter__(self) -> ScriptedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class ScriptedEngine:
    """Answers every prompt with ``pieces`` (or raises ``error``); records each call."""

    def __init__(self, pieces: list[str] | None = None, *, error: BaseException | None = None) -> None:
        self.pieces = pieces or ["Hello", " there", "."]
        self.error = error
        self.calls: list[dict[str, Any]] = []
        self.manager = None

    def stream_quick(self, prompt: str, **options: Any) -> ScriptedStream:
        self.calls.append({"prompt": prompt, **options})
        if self.error is not None:
            raise self.error
        return ScriptedStream(list(self.pieces))


def run(coro: Any) -> Any:
    """Run a pilot test's coroutine (pytest-asyncio is not installed)."""
    return asyncio.run(coro)
