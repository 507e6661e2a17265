"""Shutting the console down cleanly on SIGTERM and SIGHUP (a closed SSH session, systemd).

Inside :func:`terminate_on_signals`, SIGTERM and SIGHUP raise :class:`ConsoleTerminated` in the
main thread. It is a ``KeyboardInterrupt``, so every path that already handles Ctrl-C (cancel
the generation within one token, leave the ``with create_core(...)`` block, which stops every
runner) handles a terminal that closed or a service stop the same way. The exit status is
``128 + signal`` as a shell reports it (143 for SIGTERM, 129 for SIGHUP).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SHUTDOWN_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)


class ConsoleTerminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: stop what is running and shut the core down."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")

    @property
    def exit_status(self) -> int:
        """``128 + signal``, as a shell reports a process ended by that signal."""
        return 128 + self.signum


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise ConsoleTerminated(signum)


@contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`ConsoleTerminated` while the block runs.

    Only the main thread can install signal handlers; elsewhere (a test runner's worker thread)
    the block runs unchanged. The previous handlers come back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise) for sig in SHUTDOWN_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
