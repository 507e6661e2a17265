"""``orin-console serve``: the API over the same core the console uses.

Defaults come from the settings (``bind_host``, ``port``, ``token``; ``ORIN_TOKEN`` is the
place for the token, since a ``--token`` argument shows in ``ps``). Order of things:

1. ``check_bind``: a non-loopback address without a token is refused (exit 2, with the fix);
2. the machine's one-console lock (``<state_dir>/console.lock``): a second console refuses to
   start (exit 2), naming this one's pid and address;
3. the core is built with ``create_core(settings)`` and started; uvicorn serves
   ``create_app(core, ...)``;
4. SIGTERM / SIGINT: open streams end with a last ``error`` event of type ``ShuttingDown``,
   uvicorn closes the connections, then the core closes (every runner ends); exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from orin_console.cli.main import Context

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACEFUL_SHUTDOWN_S = 10


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser("serve", help="serve the HTTP API (seed routes, OpenAI-compatible, metrics)",
                       description="Serve the HTTP API over the console's core. Off loopback a token "
                                   "is required (prefer ORIN_TOKEN to --token: arguments show in ps).")
    p.add_argument("--host", default=None, help="address to bind (default: the bind_host setting, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: the port setting, 8000; 0: any free)")
    p.add_argument("--token", default=None, help="bearer token (default: the token setting / ORIN_TOKEN)")
    p.add_argument("--catalog", dest="serve_catalog", type=Path, default=None,
                   help="catalog file (default: the catalog_path setting)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default info)")
    p.set_defaults(func=cmd_serve)


def check_host(host: str) -> None:
    """Refuse a bind address that is not one (uvicorn would fail later, exit 3, naming neither).

    Raises:
        OrinError: the address is empty, too long, holds a control character, or does not
            resolve.
    """
    from orin_console.core.errors import OrinError
    from orin_console.core.text import sanitize

    shown = sanitize(host)[:80]
    if not host or len(host) > 253 or sanitize(host) != host or any(ch.isspace() for ch in host):
        raise OrinError(f"--host '{shown}': not an address; give an IP address such as 127.0.0.1 "
                        "(loopback) or 0.0.0.0 (every interface, with a token)")
    try:
        socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OrinError(f"--host '{shown}': not an address this machine can bind ({sanitize(reason)}); give "
                        "an IP address such as 127.0.0.1 or 0.0.0.0") from None


def _url(host: str, port: int) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}"


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    """Check the bind, take the lock, build and start the core, serve until told to stop."""
    import uvicorn

    from orin_console.api.app import create_app
    from orin_console.api.routes.events import begin_shutdown
    from orin_console.api.security import check_bind
    from orin_console.core import create_core
    from orin_console.core.errors import OrinError
    from orin_console.core.instance import hold_instance
    from orin_console.core.settings import load_settings, token_problem

    settings = ctx.settings
    if args.serve_catalog is not None:
        settings = load_settings(getattr(args, "config", None), catalog_path=args.serve_catalog)
    host: str = args.host or settings.bind_host
    port: int = settings.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise OrinError(f"--port {port}: must be 0 to 65535")
    check_host(host)
    token = args.token or (settings.token.get_secret_value() if settings.token is not None else None)
    if args.token is not None and (problem := token_problem(args.token)) is not None:
        raise OrinError(f"--token {problem}")
    check_bind(host, token)

    _stacks_on_sigusr1()
    with hold_instance(settings.state_dir, "serve", _url(host, port)) as lock, create_core(settings) as core:
        app = create_app(core, token=token, bind_host=host)
        config = uvicorn.Config(app, host=host, port=port, log_level=args.log_level, lifespan="off",
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, server_header=False)
        server = _Server(config, on_exit=lambda: begin_shutdown(app),
                         on_started=lambda bound: lock.set_address(_url(host, bound)))
        server.run()
        if not server.started:
            ctx.err.print(f"orin-console: could not serve on {_url(host, port)} (see the log above)", markup=False)
            return 1
        ctx.err.print("orin-console: stopping: streams ended, closing the core", markup=False)
    ctx.err.print("orin-console: stopped cleanly (no runner left)", markup=False)
    return 0


def _stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` writes every thread's stack to stderr (the service's log) and the
    server goes on: how a hang in a long-running ``serve`` is diagnosed without stopping it."""
    import faulthandler

    with contextlib.suppress(AttributeError, ValueError, OSError, io.UnsupportedOperation):
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


class _Server:
    """A uvicorn server whose stop signals first end every open stream (``ShuttingDown``),
    and that does not re-raise the signal afterwards (so ``serve`` exits 0)."""

    def __new__(cls, config: Any, on_exit: Any, on_started: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            bound_port: int | None = None

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                if sys.platform == "win32":  # pragma: no cover
                    yield
                    return
                previous = {sig: signal.signal(sig, self.handle_exit) for sig in SHUTDOWN_SIGNALS}
                try:
                    yield
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)

            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                on_exit()
                super().handle_exit(sig, frame)

            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                with contextlib.suppress(Exception):
                    bound = self.servers[0].sockets[0].getsockname()
                    self.bound_port = int(bound[1])
                    on_started(self.bound_port)
                    sys.stderr.write(f"orin-console: serving {_url(self.config.host, self.bound_port)}"
                                     f" (docs at /docs)\n")
                    sys.stderr.flush()

        return Server(config)
