"""``orin-console web``: the console in a browser (textual-serve), each browser session an
attached console (``orin-console --attach URL``), so a browser never starts a second core.

Which API the sessions attach to, first that applies:

1. ``--attach URL`` (or the top-level ``orin-console --attach URL web``);
2. the core already running on this machine, when its one-core lock names an API address
   (``orin-console serve``, or a console started with ``--serve``); a core that serves no
   API is refused (exit 2) with the fix;
3. otherwise this process takes the lock (kind ``web``), builds and starts the core and
   serves the API on loopback (``--api-port``, default the ``port`` setting) from a thread,
   as ``orin-console --serve`` does; a terminal ``orin-console`` then attaches to it too.
   Stopping ``web`` (SIGINT, SIGTERM, SIGHUP) closes the sessions, the API and the core.

Security: loopback by default; any other address needs a token (``--token`` or, better,
``ORIN_TOKEN``), checked before anything starts (exit 2 with the fix). The same token is the
one the sessions give the API, through their environment. See :mod:`orin_console.web.guard`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orin_console.core.errors import OrinError
from orin_console.core.text import sanitize

if TYPE_CHECKING:
    from orin_console.cli.main import Context
    from orin_console.core.instance import InstanceLock

DEFAULT_PORT = 8080
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def register(sub: Any) -> None:
    """Add the ``web`` subcommand."""
    p = sub.add_parser(
        "web", help="serve the console to a browser (each session an attached console)",
        description="Serve the console to a browser with textual-serve. Each browser session runs "
                    "`orin-console --attach URL` against the running core (started here when none "
                    "runs). Off loopback a token is required (prefer ORIN_TOKEN to --token: arguments "
                    "show in ps); open the page once as /?token=TOKEN.")
    p.add_argument("--host", default="127.0.0.1", help="address to serve the page on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0: any free)")
    p.add_argument("--attach", dest="web_attach", default=None, metavar="URL",
                   help="the API the sessions attach to (default: the core running on this machine, "
                        "else one started here)")
    p.add_argument("--token", dest="web_token", default=None, metavar="TOKEN",
                   help="the token the browser must give, and the sessions give the API (default: the "
                        "token setting / ORIN_TOKEN)")
    p.add_argument("--api-port", type=int, default=None, metavar="PORT",
                   help="when the core starts here: its API's loopback port (default: the port setting; 0: any)")
    p.add_argument("--max-sessions", type=int, default=4, metavar="N", help="consoles open at once (default 4)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="without a token: another Host name to accept besides loopback (repeatable)")
    p.set_defaults(func=cmd_web)


def _check_port(option: str, port: int) -> int:
    if not 0 <= port <= 65535:
        raise OrinError(f"{option} {port}: the port must be a number from 0 to 65535")
    return port


_HOST_NAME = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,253}$")


def _check_hosts(names: list[str]) -> list[str]:
    """``--allow-host`` names: what a Host header can carry (letters, digits, ``.-_:[]``)."""
    for name in names:
        if not _HOST_NAME.match(name):
            raise OrinError(f"--allow-host {sanitize(name)[:80]!r}: not a host name (letters, digits, "
                            "'.', '-', ':' or an IPv6 address in brackets, at most 253 characters)")
    return names


def local_url(address: str) -> str:
    """The lock file's address as this machine reaches it (a wildcard bind becomes loopback).

    Raises:
        OrinError: the address has no port yet (the server is still binding) or is not a URL.
    """
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        port = None
    if not port or parts.scheme not in ("http", "https"):
        raise OrinError(f"the core's lock names {sanitize(address)[:200]!r}, not an address to attach to yet (it "
                        "may still be starting): try again in a moment, or give --attach URL")
    host = parts.hostname or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}:{port}"


def session_command(url: str, config: Path | None) -> list[str]:
    """``orin-console [--config FILE] --attach URL`` with this interpreter's installation."""
    exe = Path(sys.executable).with_name("orin-console")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "orin_console"]
    if config is not None:
        argv += ["--config", str(Path(config).expanduser().resolve())]
    return [*argv, "--attach", url]


def cmd_web(args: argparse.Namespace, ctx: Context) -> int:
    """Check the bind, find (or start) the core's API, serve the page until told to stop."""
    from orin_console.api.security import check_bind
    from orin_console.core.instance import InstanceLock, InstanceLocked

    settings = ctx.settings
    host: str = args.host
    port = _check_port("--port", args.port)
    _check_hosts(args.allow_host)
    if not 1 <= args.max_sessions <= 64:
        raise OrinError(f"--max-sessions {args.max_sessions}: give 1 to 64")
    token = args.web_token or getattr(args, "console_token", None) or (
        settings.token.get_secret_value() if settings.token is not None else None)
    check_bind(host, token)
    attach = args.web_attach or getattr(args, "attach", None)
    if attach:
        from orin_console.cli.attach import check_attach_url

        url = check_attach_url(attach, token)
        return _serve(args, ctx, host, port, token, url, f"the API at {sanitize(url)}", None)
    api_port = _check_port("--api-port", settings.port if args.api_port is None else args.api_port)
    lock = InstanceLock(settings.state_dir, "web")
    try:
        lock.acquire()
    except InstanceLocked as exc:
        holder = exc.holder
        if holder is None or not holder.address:
            raise OrinError(
                f"{holder.describe() if holder else 'a console that is starting'} holds this machine's core "
                "and serves no API for the browser sessions to attach to; start it with an API "
                "(`orin-console serve`, or `orin-console --serve`), or stop it, or give --attach URL") from None
        url = local_url(holder.address)
        return _serve(args, ctx, host, port, token, url, f"the core of {holder.describe()}", None)
    try:
        return _own_core(args, ctx, host, port, token, api_port, lock)
    finally:
        lock.release()


def _own_core(args: argparse.Namespace, ctx: Context, host: str, port: int, token: str | None, api_port: int,
              lock: InstanceLock) -> int:
    """No core runs here: start one with its API on loopback and serve the sessions from it."""
    from orin_console.api.background import BackgroundServer
    from orin_console.core import create_core

    core = create_core(ctx.settings)
    api = None
    try:
        core.start()
        api = BackgroundServer(core, host="127.0.0.1", port=api_port, token=token)
        api.on_bound = lock.set_address
        api.start()
        if not api.wait_started(15.0):
            raise OrinError(f"{api.failure or 'the API did not start'}; choose another port with --api-port "
                            "(0: any free one)")
        assert api.url is not None
        return _serve(args, ctx, host, port, token, api.url, f"this process's core (API {api.url})", lock)
    finally:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
        try:
            if api is not None:
                api.stop()
            core.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _serve(args: argparse.Namespace, ctx: Context, host: str, port: int, token: str | None, url: str,
           what: str, lock: InstanceLock | None) -> int:
    from orin_console.web.server import WebConsole

    console = WebConsole(session_command(url, getattr(args, "config", None)), target=url, token=token,
                         api_token=token, bind_host=host, allowed_hosts=args.allow_host,
                         max_sessions=args.max_sessions)

    def bound(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host.strip('[]')}]" if ":" in bound_host else bound_host
        page = f"http://{shown}:{bound_port}/"
        note = f" (open it once as {page}?token=<token>)" if token else ""
        ctx.err.print(f"orin-console web: serving the console on {page}{note}; each browser session "
                      f"attaches to {sanitize(what)}. Stop with ctrl+c.", markup=False, soft_wrap=True)

    def session_event(kind: str, session: Any) -> None:
        ctx.err.print(f"orin-console web: session {kind} (pid {session.pid}, {len(console.sessions)} open)",
                      markup=False)

    console.on_session = session_event

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        try:
            await console.serve(host, port, stop, bound)
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    try:
        asyncio.run(main())
    except OSError as exc:
        raise OrinError(f"cannot serve on {host}:{port}: {sanitize(exc.strerror or str(exc))}; choose another "
                        "--port (0: any free one) or --host") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    ctx.err.print("orin-console web: stopped (the sessions closed"
                  + ("; closing the core)" if lock is not None else "; the server and its models go on)"),
                  markup=False)
    return 0
