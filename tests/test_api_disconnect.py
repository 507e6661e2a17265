"""A client that goes away cancels its generation on the seed routes even when it did not ask for
a stream (``/generate``, ``/chat``, ``/quick/generate``, ``/batch``), as the ``/v1`` routes do:
the runner is free again at once and the generation ends ``cancelled`` well before its
``max_tokens``. A live loopback server; the client is a raw socket that sends its request, waits
until the generation runs, and closes (a non-streamed answer comes as one piece at the end, so
there is no token to wait for)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orin_console.core import Core
from orin_console.core.events.kinds import GenerationFinished, GenerationStarted
from orin_console.testing.managers import make_core
from orin_console.testing.waits import wait_until
from tests.test_api_generate import LiveServer

MAX_TOKENS = 1500


@pytest.fixture
def core(workdir: Path) -> Iterator[Core]:
    with make_core(workdir) as built:
        built.manager.load("alpha", "swap").result(60)
        yield built


@pytest.mark.parametrize(("path", "body"), [
    ("/generate", {"prompt": "hello", "max_tokens": MAX_TOKENS, "temperature": 0, "model": "alpha"}),
    ("/quick/generate", {"prompt": "hello", "max_tokens": MAX_TOKENS, "model": "alpha"}),
    ("/chat", {"messages": [{"role": "user", "content": "hello"}], "max_tokens": MAX_TOKENS, "model": "alpha"}),
    ("/batch", {"items": ["hello", "again"], "max_tokens": MAX_TOKENS, "model": "alpha", "mode": "manual"}),
])
def test_a_client_that_leaves_cancels_its_unstreamed_generation(core: Core, path: str, body: dict) -> None:
    finished = core.bus.subscribe(kinds=(GenerationFinished,))
    started = core.bus.subscribe(kinds=(GenerationStarted,))
    manager = core.manager
    with LiveServer(core) as base:
        host, port = base.removeprefix("http://").split(":")
        payload = json.dumps(body).encode()
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        assert isinstance(started.get(timeout=30), GenerationStarted)
        wait_until(lambda: manager.model_status("alpha").busy, timeout=30, interval=0.002,
                   what="the generation to start")
        time.sleep(0.2)  # well into it (a whole answer takes about 2 s here)
        sock.close()
        left = time.perf_counter()
        wait_until(lambda: not manager.model_status("alpha").busy, timeout=10, interval=0.002,
                   what="the runner to be free after the client left")
        freed = time.perf_counter() - left
        event = finished.get(timeout=10)
        finished.close()
        started.close()
    print(f"{path}: runner free {freed * 1000:.1f} ms after the client left, {event.tokens} tokens generated")
    assert isinstance(event, GenerationFinished)
    assert event.finish_reason == "cancelled" and event.tokens < MAX_TOKENS, event
    assert freed < 2.0, f"the runner was busy {freed:.3f} s after the client left"
    assert not manager.model_status("alpha").queued
