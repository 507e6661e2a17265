"""``orin-console`` with no command: the Textual console over a core built here.

The core is built and started before the console opens and closed after it returns, however
it ends: ``ctrl+q``, SIGHUP (the SSH session dropped) or SIGTERM (a service stop) all end
``app.run()`` (the app turns the signals into ``app.exit``), then :meth:`Core.close` stops
every runner. The exit status is 0, or ``128 + signal`` after a signal.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

from orin_console.core import create_core
from orin_console.core.lifecycle import SHUTDOWN_SIGNALS, ConsoleTerminated

if TYPE_CHECKING:
    from orin_console.cli.main import Context

EXIT_NO_TERMINAL = 2


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Open the console on the settings' catalog; return the exit status."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        ctx.err.print("orin-console: the console needs a terminal (stdin and stdout a TTY); "
                      "for scripts use a command, e.g. `orin-console models list` (see --help)", markup=False)
        return EXIT_NO_TERMINAL
    from orin_console.tui.app import build_app  # textual only when the console opens

    core = create_core(ctx.settings)
    app = None
    try:
        core.start()
        app = build_app(core, settings=ctx.settings)
        app.handle_signals = True
        app.run()
    finally:
        # asyncio put SIGTERM/SIGHUP back to their defaults when the loop closed: a second
        # signal now must not cut the close short and leave runners behind.
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SHUTDOWN_SIGNALS}
        try:
            core.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if app.terminated_by is not None:
        ended = ConsoleTerminated(app.terminated_by)
        with contextlib.suppress(OSError):  # after SIGHUP the terminal is usually gone (EIO)
            ctx.err.print(f"orin-console: {ended}; shut down cleanly", markup=False)
        return ended.exit_status
    return int(app.return_code or 0)
