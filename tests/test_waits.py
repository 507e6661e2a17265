"""wait_until: returns the first truthy value, fails with what it waited for, never hides errors."""

from __future__ import annotations

import threading
import time

import pytest

from orin_console.testing.waits import wait_until


def test_returns_the_first_truthy_value_at_once() -> None:
    calls = []

    def predicate() -> str:
        calls.append(1)
        return "ready"

    assert wait_until(predicate, what="readiness") == "ready"
    assert len(calls) == 1


def test_waits_for_a_value_set_by_another_thread() -> None:
    box: dict[str, int] = {}
    timer = threading.Timer(0.05, lambda: box.update(answer=42))
    timer.start()
    try:
        assert wait_until(lambda: box.get("answer"), timeout=5, what="the answer") == 42
    finally:
        timer.cancel()


def test_times_out_with_what_and_the_last_value() -> None:
    values = iter(range(1_000_000))
    started = time.monotonic()
    with pytest.raises(AssertionError) as raised:
        wait_until(lambda: [] if next(values) < 10**9 else "never", timeout=0.1, what="alpha to load")
    elapsed = time.monotonic() - started
    assert str(raised.value) == "timed out after 0.1 s waiting for alpha to load (last value: [])"
    assert 0.1 <= elapsed < 2


def test_looks_once_more_after_the_deadline() -> None:
    # the value turns truthy only after the deadline: the final look must still see it
    deadline = time.monotonic() + 0.05
    assert wait_until(lambda: time.monotonic() >= deadline and "late", timeout=0.05, interval=1) == "late"


def test_an_exception_in_the_predicate_propagates_at_once() -> None:
    def broken() -> bool:
        raise KeyError("alpha")

    started = time.monotonic()
    with pytest.raises(KeyError):
        wait_until(broken, timeout=5)
    assert time.monotonic() - started < 1

