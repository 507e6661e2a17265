"""``orin-console`` with no command: the Textual console over a core built here, or attached
to one that already runs.

Attached (:mod:`orin_console.cli.attach`): with ``--attach URL`` (a token off loopback:
``ORIN_TOKEN`` or ``--token``), or by itself when a core that serves its API already holds this
machine's lock (``orin-console serve``, or a console with ``--serve``): the console then talks to
that core over the API, takes no lock, and quitting leaves the server and its models running.

Otherwise, in process; order of things, as ``serve`` does it:

1. the terminal check (stdin and stdout a TTY);
2. with ``--serve [HOST:PORT]``: ``check_bind`` (off loopback a token is required);
3. the machine's one-console lock (``<state_dir>/console.lock``, kind ``console``, with the
   API's address when it serves): a second console, a ``serve`` or a ``run`` already there
   makes this one refuse (exit 2), naming the holder;
4. the core is built and started; the console opens. With ``--serve`` the app starts the API
   (uvicorn on a thread, :class:`~orin_console.api.background.BackgroundServer`) once it
   listens to the core, and stops it when it ends, before the core closes.

However the console ends (``ctrl+q``, SIGHUP when the SSH session drops, SIGTERM from a
service stop) ``app.run()`` returns (the app turns the signals into ``app.exit``), then the API
stops (if it was not already) and :meth:`Core.close` stops every runner. The exit status is
0, or ``128 + signal`` after a signal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from orin_console.core import create_core
from orin_console.core.errors import OrinError
from orin_console.core.instance import hold_instance
from orin_console.core.lifecycle import SHUTDOWN_SIGNALS, ConsoleTerminated

if TYPE_CHECKING:
    from orin_console.cli.main import Context
    from orin_console.core.settings import Settings

EXIT_NO_TERMINAL = 2


def parse_address(text: str, default_host: str, default_port: int) -> tuple[str, int]:
    """``--serve``'s ``HOST:PORT`` (either part may be left out: ``:8080``, ``0.0.0.0``,
    ``8080``; an IPv6 address in brackets: ``[::1]:8080``).

    Raises:
        OrinError: the port is not a number from 0 to 65535, or the address is malformed.
    """
    text = text.strip()
    host, port_text = default_host, ""
    if text.startswith("["):
        inside, bracket, after = text[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise OrinError(f"--serve {text!r}: write an IPv6 address as [ADDRESS]:PORT")
        host, port_text = inside, after[1:]
    elif text.isdigit():
        port_text = text
    elif text.count(":") == 1:
        head, _, port_text = text.partition(":")
        host = head or default_host
    elif text:
        host = text
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise OrinError(f"--serve {text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def _api(args: argparse.Namespace, settings: Settings) -> tuple[str, int, str | None] | None:
    """(host, port, token) when the console serves the API, checked; None when it does not."""
    if getattr(args, "serve", None) is None:
        return None
    from orin_console.api.security import check_bind  # the web stack only when serving

    host, port = parse_address(args.serve, settings.bind_host, settings.port)
    token = getattr(args, "console_token", None) or (
        settings.token.get_secret_value() if settings.token is not None else None)
    check_bind(host, token)
    return host, port, token


def _token(args: argparse.Namespace, settings: Settings) -> str | None:
    """``--token``, else ``ORIN_TOKEN`` (read into the token setting), else none."""
    given = getattr(args, "console_token", None) or os.environ.get("ORIN_TOKEN") or None
    if given is None and settings.token is not None:
        given = settings.token.get_secret_value() or None
    return given


def attach_target(args: argparse.Namespace, ctx: Context) -> str | None:
    """The URL to attach to (``--attach``, or the core serving on this machine), or None to
    start a core here.

    Raises:
        OrinError: ``--attach`` with ``--serve``, a bad URL, or no token off loopback.
    """
    from orin_console.cli.attach import check_attach_url, find_serving_core

    url = getattr(args, "attach", None)
    if url is not None:
        if getattr(args, "serve", None) is not None:
            raise OrinError("--attach and --serve do not go together: an attached console serves nothing "
                            "(the server it attaches to does)")
        return check_attach_url(url, _token(args, ctx.settings))
    if getattr(args, "serve", None) is not None:
        return None  # this console is to serve: it takes the lock (refused if a core runs)
    return find_serving_core(ctx.settings.state_dir)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Open the console on the settings' catalog, or attached; return the exit status."""
    url = attach_target(args, ctx)  # a bad --attach is refused first, terminal or not
    # `orin-console web` runs each browser session through Textual's web driver (pipes, no TTY)
    web_session = os.environ.get("TEXTUAL_DRIVER", "").startswith("textual.drivers.web_driver")
    if not web_session and not (sys.stdin.isatty() and sys.stdout.isatty()):
        ctx.err.print("orin-console: the console needs a terminal (stdin and stdout a TTY); "
                      "for scripts use a command, e.g. `orin-console models list` (see --help)", markup=False)
        return EXIT_NO_TERMINAL
    if url is not None:
        from orin_console.cli.attach import run_attached

        return run_attached(ctx, url, _token(args, ctx.settings))
    serving = _api(args, ctx.settings)
    address = None
    if serving is not None:
        from orin_console.api.background import api_url

        address = api_url(serving[0], serving[1])
    with hold_instance(ctx.settings.state_dir, "console", address) as lock:
        return _run_console(ctx, serving, lock)


def _run_console(ctx: Context, serving: tuple[str, int, str | None] | None, lock: Any) -> int:
    from orin_console.tui.app import build_app  # textual only when the console opens

    core = create_core(ctx.settings)
    app = None
    api = None
    try:
        core.start()
        if serving is not None:
            from orin_console.api.background import BackgroundServer

            host, port, token = serving
            api = BackgroundServer(core, host=host, port=port, token=token)
            api.on_bound = lock.set_address  # a port 0 becomes the bound one in the lock file
        app = build_app(core, settings=ctx.settings, api=api)
        app.handle_signals = True
        app.run()
    finally:
        # asyncio put SIGTERM/SIGHUP back to their defaults when the loop closed: a second
        # signal now must not cut the close short and leave runners behind.
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SHUTDOWN_SIGNALS}
        try:
            if api is not None:
                api.stop()  # the app stopped it when it unmounted; again in case it never mounted
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
