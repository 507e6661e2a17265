"""A live API server on a free loopback port, in a background thread, for tests that drive it
through real HTTP clients (the ``openai`` package, httpx)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from orin_console.api.app import create_app
from orin_console.core import Core


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(core: Core, **app_options: Any) -> Iterator[str]:
    """Serve ``create_app(core, **app_options)`` on 127.0.0.1 (uvicorn installs no signal handlers off
    the main thread); yields the base URL. Stops the
    server (lifespan shutdown included) when the block ends."""
    app = create_app(core, **app_options)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live API server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
