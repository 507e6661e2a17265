"""Client disconnects (issue 11, part 3): streams dropped at random points; how soon is the
runner free for the next request?

A live server on loopback (in this process: the model's status is read straight from the
manager, every 0.5 ms) over two generated models whose runners emit a token every 5 ms (the
test hooks' token delay, so a 200-token stream lasts a second and a drop lands mid-stream).
Each stream goes over a raw socket (HTTP/1.1 written by hand, so the moment of the drop is
exact) to one of the streaming routes, in turn: ``/generate``, ``/chat``, ``/quick/generate``
(``"stream": true``), ``/v1/chat/completions`` and ``/v1/completions`` (``"stream": true``).
It is dropped after a random number of pieces (0: as soon as the response headers arrive),
half the time with a plain close (FIN), half with a reset (``SO_LINGER`` 0, as a crashed client
or a dead network leaves it).

Then streams with a long, never-seen prompt (~600 tokens) on a wider third model are dropped as
soon as their headers arrive, while the runner evaluates the prompt: the cancel must reach
llama.cpp inside the evaluation (its abort callback), not wait for the first token.

Release time: from the close until the model is free, that is ``busy`` false and nothing
queued in the manager's status (the runner acknowledged the cancel and its queue place is
back). Afterwards every model must answer a new request. Figures: streams, release p50/p99/max
(goal p99 <= 100 ms), streams never released within 5 s (goal 0).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from orin_console.core.manager.manager import Manager
from stress.common import STREAM_ROUTES, ModelSpec, live_server, module_main, stream_body, summary

MODELS = (ModelSpec("da", tier="ram", seed=1), ModelSpec("db", tier="swap", seed=2))
LONG_PROMPT_MODEL = ModelSpec("dl", tier="swap", seed=3, context=1024, n_layers=4, n_embd=384, n_ff=1024)
"""Wide enough that a ~600-token prompt takes a good fraction of a second to evaluate."""
SEED_ROUTES = STREAM_ROUTES[:3]  # their headers come before the first token: a drop lands in the prompt
RUNNER_ENV = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.005"}
MAX_TOKENS = 200
GOAL_P99_S = 0.100
RELEASE_LIMIT_S = 5.0


def _piece_marker(route: str) -> bytes:
    """What each streamed piece holds once on the wire (seed routes: a ``token`` event;
    OpenAI: a ``data:`` chunk, the first of a chat being its role)."""
    return b"event: token" if not route.startswith("/v1") else b"data: {"


def drop_stream(url: str, route: str, model: str, after: int, reset: bool,
                prompt: str = "Tell me a story") -> tuple[float, int, str]:
    """Open a streamed request on a raw socket and close it after ``after`` pieces.

    Returns:
        The moment of the close (``time.monotonic()``), the pieces seen, and how it ended
        (``dropped``; ``finished`` when the stream ended first; ``status NNN``).
    """
    parts = urlsplit(url)
    body = json.dumps(stream_body(route, model, MAX_TOKENS, prompt)).encode()
    head = (f"POST {route} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    marker = _piece_marker(route)
    seen, buffer, how = 0, b"", "dropped"
    try:
        sock.sendall(head + body)
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return time.monotonic(), 0, "closed by the server before its headers"
            buffer += chunk
        headers, _, buffer = buffer.partition(b"\r\n\r\n")
        status = headers.split(b" ", 2)[1].decode()
        if status != "200":
            return time.monotonic(), 0, f"status {status}"
        seen = buffer.count(marker)
        while seen < after:
            chunk = sock.recv(65536)
            if not chunk or b"[DONE]" in chunk or b"event: done" in chunk:
                how = "finished"
                break
            buffer = buffer[-len(marker):] + chunk
            seen += chunk.count(marker)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        dropped_at = time.monotonic()
        sock.close()
    return dropped_at, seen, how


def wait_free(manager: Manager, model: str, since: float) -> float | None:
    """Seconds from ``since`` until ``model`` is neither generating nor has anything queued;
    None when that takes over :data:`RELEASE_LIMIT_S`."""
    deadline = since + RELEASE_LIMIT_S
    while True:
        status = manager.model_status(model)
        now = time.monotonic()
        if not status.busy and status.queued == 0:
            return now - since
        if now > deadline:
            return None
        time.sleep(0.0005)


def _worker(url: str, manager: Manager, model: str, jobs: list[tuple[str, int, bool]],
            times: list[tuple[float, str]], stuck: list[str], other: list[str], lock: threading.Lock) -> None:
    for route, after, reset in jobs:
        dropped_at, seen, how = drop_stream(url, route, model, after, reset)
        if how != "dropped":
            with lock:
                other.append(f"{model} {route} after {after}: {how}")
            continue
        released = wait_free(manager, model, dropped_at)
        with lock:
            if released is None:
                stuck.append(f"{model} {route} dropped after {seen} pieces ({'reset' if reset else 'close'}): "
                             f"still busy {RELEASE_LIMIT_S:.0f} s later")
            else:
                times.append((released, f"{model} {route} after {seen} pieces ({'reset' if reset else 'close'})"))
        if released is None:  # the next stream must not measure this one's leftovers
            wait_free(manager, model, time.monotonic())


def long_prompt_drops(url: str, manager: Manager, count: int, rng: random.Random) -> tuple[list[float], list[str]]:
    """Streams with a long, never-seen prompt (no cached prefix) dropped as soon as the headers
    arrive, while the runner evaluates the prompt: the cancel must reach llama.cpp inside that
    evaluation. Returns the release times and the streams not released."""
    times: list[float] = []
    stuck: list[str] = []
    for n in range(count):
        prompt = f"{rng.random()} " + "a long question about the weather on the Jetson " * 12
        route = SEED_ROUTES[n % len(SEED_ROUTES)]
        dropped_at, _, how = drop_stream(url, route, LONG_PROMPT_MODEL.id, 0, n % 2 == 0, prompt)
        released = wait_free(manager, LONG_PROMPT_MODEL.id, dropped_at) if how == "dropped" else None
        if released is None:
            stuck.append(f"long prompt on {route}: {how}, not released within {RELEASE_LIMIT_S:.0f} s")
            wait_free(manager, LONG_PROMPT_MODEL.id, time.monotonic())
        else:
            times.append(released)
    return times, stuck


def run(quick: bool, seed: int, *, folder: Path | None = None, streams: int | None = None,
        long_prompts: int | None = None, **_: Any) -> dict[str, Any]:
    """Drop ``streams`` streams (quick 10, full 200), then ``long_prompts`` streams during their
    prompt's evaluation (quick 2, full 20); the figures."""
    import tempfile

    count = streams if streams is not None else (10 if quick else 200)
    long_count = long_prompts if long_prompts is not None else (2 if quick else 20)
    rng = random.Random(seed)
    jobs: dict[str, list[tuple[str, int, bool]]] = {spec.id: [] for spec in MODELS}
    for n in range(count):
        route = STREAM_ROUTES[n % len(STREAM_ROUTES)]
        after = 0 if rng.random() < 0.1 else rng.randrange(1, MAX_TOKENS - 20)
        jobs[MODELS[n % len(MODELS)].id].append((route, after, rng.random() < 0.5))
    work = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="stress-disconnects-"))
    times: list[tuple[float, str]] = []
    stuck: list[str] = []
    other: list[str] = []
    answered: dict[str, int] = {}
    lock = threading.Lock()
    started = time.monotonic()
    with live_server(work / "disconnects", [*MODELS, LONG_PROMPT_MODEL], runner_env=RUNNER_ENV) as live:
        assert live.core is not None
        manager = live.core.manager
        for spec in (*MODELS, LONG_PROMPT_MODEL):
            manager.load(spec.id).result(60)
        threads = [threading.Thread(target=_worker, args=(live.url, manager, model, model_jobs, times, stuck,
                                                          other, lock), name=f"disconnects-{model}")
                   for model, model_jobs in jobs.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        long_times, long_stuck = long_prompt_drops(live.url, manager, long_count, rng)
        with httpx.Client(base_url=live.url, timeout=30) as client:
            for spec in (*MODELS, LONG_PROMPT_MODEL):
                reply = client.post("/generate", json={"prompt": "after", "model": spec.id, "mode": "manual",
                                                       "max_tokens": 4})
                answered[spec.id] = reply.status_code
    seconds = [t for t, _ in times]
    p99 = summary(seconds)["p99"]
    by_route = {route: summary([t for t, what in times if f" {route} " in what]) for route in STREAM_ROUTES}
    return {
        "streams": count,
        "released": len(times),
        "release_ms": summary(seconds),
        "release_ms_by_route": by_route,
        "slowest": [f"{t * 1000:.1f} ms: {what}" for t, what in sorted(times, reverse=True)[:3]],
        "long_prompt_streams": long_count,
        "long_prompt_release_ms": summary(long_times),
        "not_released": len(stuck) + len(long_stuck),
        "not_released_examples": (stuck + long_stuck)[:5],
        "not_dropped": other[:5],
        "answers_after": answered,
        "goal_p99_ms": GOAL_P99_S * 1000,
        "wall_s": round(time.monotonic() - started, 1),
        "goal_met": (not stuck and not long_stuck and not other and len(seconds) == count and p99 is not None
                     and p99 <= GOAL_P99_S * 1000 and all(code == 200 for code in answered.values())),
    }


if __name__ == "__main__":
    sys.exit(module_main(run, name="stress.disconnects"))
