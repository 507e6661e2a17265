"""``orin-console web``'s HTTP server: one attached console per browser session.

textual-serve's :class:`~textual_serve.app_service.AppService` runs each session's process
(``orin-console --attach URL``, through its web driver) and relays its screen over a
websocket to xterm.js in the page. Its :class:`~textual_serve.server.Server` is not used: it
has no authentication, takes its page from the internet, builds URLs from the bind address
(useless on 0.0.0.0), trusts every websocket message and opens unbounded sessions. This one
has :class:`~orin_console.web.guard.WebGuard` in front of every route, its own page, URLs
from the request's Host, bounded sessions and messages, and a clean stop (every session is
told to quit; a session process that does not is killed).

The API token reaches each session through its environment (``ORIN_TOKEN``), never its
command line (which any local user can read in ``ps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
from asyncio.subprocess import Process
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import textual_serve
from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

from orin_console.web.guard import WebGuard
from orin_console.web.page import render_page

log = logging.getLogger("orin_console.web")

STATIC = Path(textual_serve.__file__).resolve().parent / "static"
MAX_MESSAGE_BYTES = 64 * 1024
"""The largest websocket message a browser may send (keystrokes, a paste, a resize)."""
STOP_TIMEOUT_S = 10.0
"""How long a session process has to quit when told to, before it is killed."""


def _clamp(text: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(text) if text is not None else default
    except ValueError:
        value = default
    return max(low, min(high, value))


class Session(AppService):
    """One browser session's console process, with the API token in its environment only.

    The process is started directly (no shell: textual-serve's ``sh -c`` keeps a shell between
    it and the console, so killing "the process" would leave the console running) in a
    session of its own, so a stuck one is killed with everything it started.
    """

    def __init__(self, argv: Sequence[str], *, api_token: str | None, **kwargs: Any) -> None:
        super().__init__(shlex.join(argv), **kwargs)
        self._argv = list(argv)
        self._api_token = api_token

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Process:
        self._process = process = await asyncio.create_subprocess_exec(
            *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self._build_environment(width=width, height=height),
            start_new_session=True)
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        env = super()._build_environment(width=width, height=height)
        env.pop("ORIN_TOKEN", None)
        if self._api_token:
            env["ORIN_TOKEN"] = self._api_token
        return env

    async def run(self) -> None:
        """Relay the console's output; when its process ends (quit, or it could not attach),
        close the page's websocket, so the page says the session ended instead of waiting."""
        try:
            await super().run()
        finally:
            with contextlib.suppress(Exception):
                await self.remote_close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def close(self) -> None:
        """Tell the console to quit; kill it if it has not within :data:`STOP_TIMEOUT_S`."""
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await asyncio.wait_for(self.stop(), STOP_TIMEOUT_S)
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: the console and anything it started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 5)


class WebConsole:
    """The aiohttp app serving the page and the sessions.

    Args:
        session_argv: the command each session runs (``orin-console --attach URL``).
        target: the API the sessions attach to (shown on the page).
        token: the token the browser must present (None: none; loopback only).
        api_token: the token the sessions give the API (``ORIN_TOKEN`` in their environment).
        bind_host: the address served on.
        allowed_hosts: more Host names accepted when no token is set.
        max_sessions: how many consoles may be open at once (each is a process).
    """

    def __init__(self, session_argv: Sequence[str], *, target: str, token: str | None, api_token: str | None,
                 bind_host: str, allowed_hosts: Sequence[str] = (), max_sessions: int = 4,
                 title: str = "Orin Console") -> None:
        self.argv = list(session_argv)
        self.target = target
        self.api_token = api_token
        self.guard = WebGuard(token=token, bind_host=bind_host, allowed_hosts=allowed_hosts)
        self.max_sessions = max_sessions
        self.title = title
        self.sessions: set[Session] = set()
        self._opening = 0
        self._downloads = DownloadManager()
        self.on_session: Callable[[str, Session], Any] | None = None
        """Called with ``("open" | "close", session)`` (the CLI prints it)."""

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard.middleware], client_max_size=MAX_MESSAGE_BYTES)
        app.add_routes([
            web.get("/", self.handle_index),
            web.get("/ws", self.handle_websocket),
            web.get("/favicon.ico", self.handle_favicon),
            web.static("/static", STATIC, show_index=False, follow_symlinks=False),
        ])
        return app

    async def handle_index(self, request: web.Request) -> web.Response:
        scheme = "wss" if request.secure else "ws"
        font_size = _clamp(request.query.get("fontsize"), 16, 6, 48)
        page = render_page(title=self.title, target=self.target, font_size=font_size,
                           websocket_url=f"{scheme}://{request.host}/ws")
        return web.Response(text=page, content_type="text/html")

    @staticmethod
    async def handle_favicon(_request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        if len(self.sessions) + self._opening >= self.max_sessions:
            return web.Response(status=503, text=f"orin-console web: {self.max_sessions} consoles are open, the "
                                                 "most this server allows (--max-sessions); close one first\n")
        self._opening += 1
        ws = web.WebSocketResponse(heartbeat=15, max_msg_size=MAX_MESSAGE_BYTES)
        session: Session | None = None

        async def close_page() -> None:  # once: a page that closed first is not waited for
            if not ws.closed:
                await ws.close()

        try:
            await ws.prepare(request)
            session = Session(self.argv, api_token=self.api_token, write_bytes=ws.send_bytes,
                              write_str=ws.send_str, close=close_page, download_manager=self._downloads)
            self.sessions.add(session)
            self._opening -= 1
            await session.start(_clamp(request.query.get("width"), 80, 20, 500),
                                _clamp(request.query.get("height"), 24, 5, 300))
            self._notify("open", session)
            await self._relay(ws, session)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if session is None:
                self._opening -= 1
            else:
                # shielded: aiohttp may cancel this handler when the page goes, and the session's
                # process must still be told to quit (or be killed) and forgotten
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(self._end(session))
            with contextlib.suppress(Exception):
                await close_page()
        return ws

    async def _end(self, session: Session) -> None:
        try:
            await session.close()
        finally:
            self.sessions.discard(session)
            self._notify("close", session)

    def _notify(self, what: str, session: Session) -> None:
        if self.on_session is not None:
            with contextlib.suppress(Exception):
                self.on_session(what, session)

    @staticmethod
    async def _relay(ws: web.WebSocketResponse, session: Session) -> None:
        """The browser's messages to the session; anything malformed is ignored."""
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(envelope, list) or not envelope or not isinstance(envelope[0], str):
                continue
            kind, data = envelope[0], (envelope[1] if len(envelope) > 1 else None)
            if kind == "stdin" and isinstance(data, str):
                await session.send_bytes(data.encode("utf-8", "replace"))
            elif kind == "resize" and isinstance(data, dict):
                await session.set_terminal_size(_clamp(str(data.get("width")), 80, 20, 500),
                                                _clamp(str(data.get("height")), 24, 5, 300))
            elif kind == "ping" and isinstance(data, str):
                await ws.send_json(["pong", data[:32]])
            elif kind == "blur":
                await session.blur()
            elif kind == "focus":
                await session.focus()

    async def serve(self, host: str, port: int, stop: asyncio.Event,
                    on_bound: Callable[[str, int], Any] | None = None) -> None:
        """Serve until ``stop`` is set, then close every session and the listener.

        Raises:
            OSError: the address cannot be bound (in use, not this machine's).
        """
        runner = web.AppRunner(self.make_app(), handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, shutdown_timeout=2.0)
            await site.start()
            bound = runner.addresses[0][1] if runner.addresses else port
            if on_bound is not None:
                on_bound(host, int(bound))
            await stop.wait()
            await asyncio.gather(*(s.close() for s in list(self.sessions)), return_exceptions=True)
        finally:
            await runner.cleanup()
