"""The API served from a background thread of another program (the console's ``--serve``).

``orin-console serve`` runs uvicorn on the main thread; the console's main thread belongs to
Textual, so there the API runs on a thread of its own, with its own event loop, over the same
core. :class:`BackgroundServer` owns that thread:

- :meth:`start` returns at once; the thread binds the socket and calls ``on_started(url)``
  (or ``on_failed(reason)`` when it cannot bind: a port in use is reported, never a crash);
- :meth:`stop` first ends every open stream (``begin_shutdown``: each gets its last
  ``ShuttingDown`` event, so the graceful shutdown is not held open by streams that would
  never end by themselves), then tells uvicorn to exit and joins the thread. It is idempotent;
  the owner calls it before the core closes.

uvicorn installs no signal handlers off the main thread: the console's own handlers stay in
charge of SIGHUP and SIGTERM. Its log never reaches the terminal (it would write over the
console's screen): its loggers stop propagating while it serves, and its errors (a port in
use) become :attr:`BackgroundServer.failure`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from orin_console.api.app import create_app
from orin_console.api.routes.events import begin_shutdown
from orin_console.core import Core

__all__ = ["BackgroundServer", "api_url"]

GRACEFUL_SHUTDOWN_S = 5.0
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _Errors(logging.Handler):
    """Keeps uvicorn's last error message (``[Errno 98] ... address already in use``)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.last = record.getMessage()[:300]


def api_url(host: str, port: int) -> str:
    """``http://127.0.0.1:8000``; an IPv6 address in brackets."""
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}"


class BackgroundServer:
    """uvicorn over ``create_app(core, token=..., bind_host=host)`` on a daemon thread.

    Args:
        core: the started core (its owner closes it, after :meth:`stop`).
        host: the address to bind (checked by the caller with ``check_bind``).
        port: the TCP port (0: any free one; :attr:`url` then has the bound one).
        token: the bearer token (None: none required; only on loopback).
        log_level: uvicorn's log level (``warning`` by default: its access log would write
            over the console's screen).
    """

    def __init__(self, core: Core, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
                 log_level: str = "warning") -> None:
        self.host = host
        self.port = port
        self.app = create_app(core, token=token, bind_host=host)
        config = uvicorn.Config(self.app, host=host, port=port, log_level=log_level, log_config=None, lifespan="off",
                                access_log=False, server_header=False,
                                timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S))
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.url: str | None = None
        """The address served on, once bound (None before, or when binding failed)."""
        self.failure: str | None = None
        """Why it could not serve (None while it serves or before it tried)."""
        self.on_bound: Callable[[str], Any] | None = None
        """Called with :attr:`url` once bound, before ``on_started`` (the CLI records it in
        the one-console lock file)."""

    @property
    def requested_url(self) -> str:
        """The address asked for (port 0 stays 0 here)."""
        return api_url(self.host, self.port)

    @property
    def serving(self) -> bool:
        return self.url is not None and not self._stopped.is_set()

    def start(self, on_started: Callable[[str], Any] | None = None,
              on_failed: Callable[[str], Any] | None = None) -> None:
        """Start serving on the thread ``orin-api`` (returns at once; call once)."""
        if self._thread is not None:
            return

        errors = _Errors()
        quiet = {name: logging.getLogger(name).propagate for name in _UVICORN_LOGGERS}

        def serve() -> None:
            for name in _UVICORN_LOGGERS:
                logging.getLogger(name).propagate = False
            logging.getLogger("uvicorn.error").addHandler(errors)
            try:
                self._server.run()
            except BaseException:  # noqa: BLE001 - uvicorn exits (SystemExit) when it cannot bind
                pass
            finally:
                logging.getLogger("uvicorn.error").removeHandler(errors)
                for name, propagate in quiet.items():
                    logging.getLogger(name).propagate = propagate
            if not self._server.started and not self._stopped.is_set():
                self.failure = f"could not serve on {self.requested_url}: {errors.last or 'uvicorn exited'}"
                if on_failed is not None:
                    on_failed(self.failure)

        original_startup = self._server.startup

        async def startup(sockets: Any = None) -> None:
            await original_startup(sockets)
            if self._server.started:
                with contextlib.suppress(Exception):
                    self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
                self.url = api_url(self.host, self.port)
                if self.on_bound is not None:
                    with contextlib.suppress(Exception):
                        self.on_bound(self.url)
                if on_started is not None:
                    on_started(self.url)

        self._server.startup = startup  # type: ignore[method-assign]
        self._thread = threading.Thread(target=serve, name="orin-api", daemon=True)
        self._thread.start()

    def wait_started(self, timeout: float = 10.0) -> bool:
        """Wait until it serves (True) or gave up (False)."""
        thread = self._thread
        if thread is None:
            return False
        step = 0.01
        waited = 0.0
        while not self._server.started and thread.is_alive() and waited < timeout:
            thread.join(step)
            waited += step
        return bool(self._server.started)

    def stop(self, timeout: float = GRACEFUL_SHUTDOWN_S + 2) -> None:
        """End open streams, stop accepting, join the thread (idempotent)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        begin_shutdown(self.app)
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # a request still running after the grace period
                self._server.force_exit = True
                self._thread.join(2.0)
