"""One way for tests to wait for something that happens on another thread or process.

Tests of the manager, the runners and the telemetry sampler watch state that changes in the
background. Each used to write its own ``deadline = time.monotonic() + 10`` loop, with its own
interval and its own (or no) failure message. ``wait_until`` is that loop, written once: it
polls a predicate until it returns something truthy and returns that value, or fails the test
with what it was waiting for and the last value it saw.

Example:
    >>> tier = wait_until(lambda: manager.model_status("beta").tier == "ram" and "ram",
    ...                   timeout=30, what="beta to move to ram")      # doctest: +SKIP
    >>> wait_until(lambda: not proc.is_running(), what="the orphan to exit")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "the condition",
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    The predicate is always called at least once, and once more after the deadline passes,
    so a slow machine that wakes up late still sees the final state rather than failing on
    a stale one. An exception raised by the predicate propagates at once: waiting does not
    hide bugs.

    Args:
        predicate: Called with no arguments; its first truthy result is returned.
        timeout: Seconds to keep trying before failing.
        interval: Seconds to sleep between calls.
        what: What is awaited, in words, for the failure message ("alpha to load").

    Returns:
        The predicate's first truthy result.

    Raises:
        AssertionError: ``timed out after {timeout} s waiting for {what}``, with the last
            value the predicate returned.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
    value = predicate()  # one last look: the deadline may have passed while we slept
    if value:
        return value
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {value!r})")
