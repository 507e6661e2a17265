"""Attached vs in-process console (issue 13), on the same machine, in one run.

One ``orin-console serve`` (a subprocess, the demo catalog, its own state folder) is the
server the attached consoles use; the in-process console has a core of its own (another state
folder), so both answer from the same model files with the same settings.

1. **In a pseudo-terminal** (80x24, telemetry at its default 1 Hz), one after the other: the
   in-process console (``orin-console --catalog models.toml``) and an attached one
   (``orin-console --attach URL``): time from the process start to the first full frame (the
   tier map, the catalog with its rows and the chat pane drawn, as ``benchmarks/console.py``
   measures it), then the bytes written to the terminal per second while idle. The attached
   console keeps running for part 3.
2. **Headless, in this process**: an in-process app (``build_app`` over ``create_core``) and an
   attached app (``build_app`` over ``RemoteBackend``) open at once, the same request through
   each chat pane in turn (``smollm2``, greedy, ``--max-tokens``): tokens/s the pane shows (the
   answer's summary line) and tokens/s at which the text really appeared in the pane.
3. **Delay between consoles**: an operation in the pseudo-terminal's attached console (a key:
   ``p`` pins or unpins the selected model; ``l``/``u`` load and unload it) until the headless
   attached app's catalog table shows it (its rows rebuilt with the new pin or state).

Goals: attached tokens/s shown ≥ 0.95 of in-process; delay ≤ 200 ms; idle terminal output
≤ 2 KB/s as in-process (``benchmarks/console.py``).

    .venv/bin/python benchmarks/attach.py [--rounds 3] [--max-tokens 96] [--idle-seconds 10] [--ops 6]

Needs the demo models (``make models``). The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from console import PROMPT, PtyReader, _answer  # noqa: E402 - benchmarks/console.py

from orin_console.core.instance import read_holder  # noqa: E402

GOALS = {"stream_ratio": (">=", 0.95), "delay_p50_ms": ("<=", 200.0),
         "attached_terminal_bytes_per_s": ("<=", 2048.0)}


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("orin-console")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "orin_console"]


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORIN_", "TEXTUAL"))}
    env.update(ORIN_STATE_DIR=str(state), HOME=str(state.parent), ORIN_CONFIG=str(state.parent / "config.toml"),
               TERM="xterm-256color", COLUMNS="80", LINES="24")
    return env


class Server:
    """``orin-console serve --port 0`` on the catalog, until :meth:`stop`."""

    def __init__(self, catalog: Path, state: Path) -> None:
        self.state = state
        self.log = state.parent / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*_cli(), "--catalog", str(catalog), "serve", "--port", "0",
                                          "--log-level", "warning"], env=_env(state), stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            holder = read_holder(state)
            if holder is not None and holder.pid == self.proc.pid and holder.address and \
                    not holder.address.endswith(":0"):
                self.url = holder.address
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"orin-console serve did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class PtyConsole:
    """A console in an 80x24 pseudo-terminal: its first frame, its output, its keys."""

    def __init__(self, argv: list[str], state: Path) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))

        def controlling_tty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=_env(state),
                                     preexec_fn=controlling_tty, close_fds=True)
        os.close(slave)
        self.reader = PtyReader(self.master)
        self.reader.start()

    def first_frame_s(self, timeout: float = 60.0) -> float:
        deadline = self.started + timeout
        while self.reader.frame_at is None and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.01)
        if self.reader.frame_at is None:
            with self.reader.lock:
                tail = bytes(self.reader.head[-400:]).decode("utf-8", "replace")
            raise RuntimeError(f"no full frame within {timeout:.0f} s (exit {self.proc.poll()}); last output: {tail!r}")
        return self.reader.frame_at - self.started

    def idle_bytes_per_s(self, settle: float, seconds: float) -> float:
        time.sleep(settle)
        t0 = time.monotonic()
        time.sleep(seconds)
        t1 = time.monotonic()
        return self.reader.bytes_between(t0, t1) / (t1 - t0)

    def key(self, data: bytes) -> float:
        """Type ``data``; the time it was written."""
        at = time.perf_counter()
        os.write(self.master, data)
        return at

    def quit(self) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x11")  # ctrl+q
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(15)
        with contextlib.suppress(OSError):
            os.close(self.master)
        return self.proc.returncode


def pty_part(catalog: Path, base: Path, server: Server, idle: float, settle: float) -> tuple[dict[str, Any],
                                                                                              PtyConsole]:
    out: dict[str, Any] = {}
    state = base / "pty-inprocess" / "state"
    state.mkdir(parents=True)
    local = PtyConsole([*_cli(), "--catalog", str(catalog)], state)
    try:
        out["inprocess_first_frame_s"] = round(local.first_frame_s(), 3)
        out["inprocess_terminal_bytes_per_s"] = round(local.idle_bytes_per_s(settle, idle), 1)
    finally:
        out["inprocess_exit_status"] = local.quit()
    state = base / "pty-attached" / "state"
    state.mkdir(parents=True)
    attached = PtyConsole([*_cli(), "--attach", server.url], state)
    try:
        out["attached_first_frame_s"] = round(attached.first_frame_s(), 3)
        out["attached_terminal_bytes_per_s"] = round(attached.idle_bytes_per_s(settle, idle), 1)
    except BaseException:
        attached.quit()
        raise
    return out, attached


class EventTimes(threading.Thread):
    """When the server's model events reach a plain client (``GET /events``): splits a delay
    into the acting console + server part and the observing console's part."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="event times")
        self.url = url
        self.arrivals: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import httpx

        with contextlib.suppress(httpx.HTTPError), httpx.stream(
                "GET", f"{self.url}/events", params={"kinds": "CatalogChanged,ModelStateChanged"},
                timeout=httpx.Timeout(5, read=None)) as response:
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event:"):
                    self.arrivals.append((time.perf_counter(), line[6:].strip()))

    def first_after(self, at: float) -> float | None:
        return next((t for t, _ in list(self.arrivals) if t >= at), None)


def _display_rate(shown: list[tuple[float, int]], tokens: int) -> float | None:
    """Tokens/s at which the text appeared: the tokens after the first burst over their span."""
    if len(shown) < 2 or tokens < 2:
        return None
    span = shown[-1][0] - shown[0][0]
    chars = sum(n for _, n in shown)
    return tokens * ((chars - shown[0][1]) / chars) / span if span > 0 else None


async def _settle_on(app: Any, predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("the console did not reach the expected state in time")
        await asyncio.sleep(0.02)


def headless_part(catalog: Path, base: Path, server: Server, actor: PtyConsole, rounds: int, max_tokens: int,
                  ops: int, out: dict[str, Any]) -> None:
    """Fills ``out`` as it goes (what was measured stays there if a later step fails)."""
    from orin_console.core import create_core
    from orin_console.core.engine.types import GenerationParams
    from orin_console.core.settings import load_settings
    from orin_console.tui.app import build_app
    from orin_console.tui.backend.remote import RemoteBackend
    from orin_console.tui.widgets.catalog import CatalogTable
    from orin_console.tui.widgets.chat import ChatPane

    state = base / "headless" / "state"
    state.mkdir(parents=True)
    settings = load_settings(env={}, catalog_path=catalog, state_dir=state)
    shown: dict[int, list[tuple[float, int]]] = {}
    rebuilt: list[tuple[float, int, dict[str, tuple[str, ...]]]] = []
    original_drain = ChatPane._drain
    original_rebuild = CatalogTable._rebuild

    async def drain(self: Any, **options: Any) -> None:
        with self._lock:
            n = sum(len(p) for p in self._pending)
        await original_drain(self, **options)
        if n:
            shown.setdefault(id(self.app), []).append((time.perf_counter(), n))

    def rebuild(self: Any) -> None:
        original_rebuild(self)
        rebuilt.append((time.perf_counter(), id(self.app), dict(self._shown)))

    ChatPane._drain = drain  # type: ignore[method-assign]
    CatalogTable._rebuild = rebuild  # type: ignore[method-assign]
    core = create_core(settings)
    backend = RemoteBackend(server.url)
    try:
        core.start()
        local = build_app(core, settings=settings, log_path=state / "local.log")
        remote = build_app(backend, settings=settings, log_path=state / "remote.log")

        async def scenario() -> None:
            async with local.run_test(size=(80, 24)) as local_pilot, remote.run_test(size=(80, 24)) as remote_pilot:
                await local_pilot.pause()
                await remote_pilot.pause()
                await asyncio.to_thread(lambda: core.manager.load("smollm2").result(timeout=300))
                params = GenerationParams.build(max_tokens=max_tokens, temperature=0.0, seed=1)
                panes = {}
                for name, app in (("inprocess", local), ("attached", remote)):
                    chat = app.query_one(ChatPane)
                    chat.mode = "manual"
                    chat.preferred = "smollm2"
                    chat._params = params
                    panes[name] = (app, chat)
                # one answer each first: the server loads smollm2 for the attached pane
                for app, chat in panes.values():
                    await _answer(app, chat, PROMPT, shown.setdefault(id(app), []))
                rates: dict[str, list[float]] = {"inprocess": [], "attached": []}
                display: dict[str, list[float]] = {"inprocess": [], "attached": []}
                for i in range(rounds):
                    order = ("inprocess", "attached") if i % 2 == 0 else ("attached", "inprocess")
                    for name in order:
                        app, chat = panes[name]
                        lane = shown.setdefault(id(app), [])
                        result = await _answer(app, chat, PROMPT, lane)
                        rates[name].append(float(result.tok_per_s or 0.0))
                        speed = _display_rate(lane, int(result.tokens))
                        if speed is not None:
                            display[name].append(speed)
                for name in rates:
                    out[f"{name}_pane_tok_per_s"] = [round(r, 1) for r in rates[name]]
                    out[f"{name}_display_tok_per_s"] = [round(r, 1) for r in display[name]]
                events = EventTimes(server.url)
                events.start()
                try:
                    out.update(await _delays(remote, actor, rebuilt, ops, events))
                finally:
                    events.stop.set()
                local.exit()
                remote.exit()

        asyncio.run(scenario())
    finally:
        ChatPane._drain = original_drain  # type: ignore[method-assign]
        CatalogTable._rebuild = original_rebuild  # type: ignore[method-assign]
        backend.stop()
        core.close()


async def _delays(observer: Any, actor: PtyConsole, rebuilt: list[tuple[float, int, dict[str, tuple[str, ...]]]],
                  ops: int, events: EventTimes) -> dict[str, Any]:
    """Keys typed into the pseudo-terminal's attached console; when the observer's table shows them."""
    from orin_console.tui.widgets.catalog import COLUMNS, CatalogTable

    table = observer.query_one(CatalogTable)
    pin_col = [c[0] for c in COLUMNS].index("pin")
    state_col = [c[0] for c in COLUMNS].index("state")
    await _settle_on(observer, lambda: bool(table._order))
    target = table._order[0]  # the actor's cursor starts on the first row, as the observer's does

    def cell(col: int) -> str:
        shown = table._shown.get(target)
        return shown[col] if shown else ""

    server_part: list[float] = []

    async def measure(key: bytes, col: int, changed: Any, timeout: float = 10.0) -> float:
        before = cell(col)
        start = len(rebuilt)
        at = actor.key(key)
        deadline = time.monotonic() + timeout
        while True:
            for when, app_id, cells in rebuilt[start:]:
                if app_id == id(observer) and target in cells and changed(before, cells[target][col]):
                    event_at = events.first_after(at)
                    if key == b"p" and event_at is not None and event_at <= when:
                        server_part.append((event_at - at) * 1000)
                    return (when - at) * 1000
            if time.monotonic() > deadline:
                raise RuntimeError(f"the observer never showed the effect of {key!r} on {target}")
            await asyncio.sleep(0.002)

    pins = []
    for _ in range(ops):
        pins.append(await measure(b"p", pin_col, lambda before, now: now != before))
        await asyncio.sleep(0.3)
    loads, unloads = [], []
    for _ in range(max(1, ops // 3)):
        await _settle_on(observer, lambda: cell(state_col) in ("—", "ready"), timeout=120)
        if cell(state_col) == "ready":
            actor.key(b"u")  # the plan comes back, then the confirmation asks: the operation is "y"
            await asyncio.sleep(2.5)
            unloads.append(await measure(b"y", state_col, lambda before, now: now != before, timeout=30))
        else:  # a load from disk needs no confirmation: from the key, the plan's round trip included
            loads.append(await measure(b"l", state_col, lambda before, now: now != before, timeout=30))
        await asyncio.sleep(1.0)
    every = pins + loads + unloads
    pin_server = server_part

    def p50(values: list[float]) -> float | None:
        return round(statistics.median(values), 1) if values else None

    return {"delay_target": target, "delay_pin_ms": [round(x, 1) for x in pins],
            "delay_unload_ms": [round(x, 1) for x in unloads], "delay_load_ms": [round(x, 1) for x in loads],
            "delay_pin_p50_ms": p50(pins), "delay_pin_key_to_server_event_p50_ms": p50(pin_server),
            "delay_p50_ms": p50(every), "delay_max_ms": round(max(every), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=ROOT / "models.toml")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the first frame before idling")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--ops", type=int, default=6, help="pin toggles timed between consoles (and ops/3 loads)")
    args = parser.parse_args()
    catalog = args.catalog.resolve()
    figures: dict[str, Any] = {"benchmark": "attach", "cpus": os.cpu_count(),
                               "load_average": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="orin-attach-bench-") as scratch:
        base = Path(scratch)
        (base / "server" / "state").mkdir(parents=True)
        server = Server(catalog, base / "server" / "state")
        actor = None
        try:
            pty, actor = pty_part(catalog, base, server, args.idle_seconds, args.settle)
            figures.update(pty)
            print(f"pty: {json.dumps(pty)}", flush=True)
            headless_part(catalog, base, server, actor, args.rounds, args.max_tokens, args.ops, figures)
        except Exception as exc:  # noqa: BLE001 - report what was measured and the failure
            figures["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        finally:
            if actor is not None:
                figures["attached_exit_status"] = actor.quit()
            figures["server_still_serving_after_quit"] = server.proc.poll() is None
            figures["server_exit_status"] = server.stop()
    for name in ("pane", "display"):
        ours, theirs = figures.get(f"attached_{name}_tok_per_s"), figures.get(f"inprocess_{name}_tok_per_s")
        if ours and theirs:
            key = "stream_ratio" if name == "pane" else "stream_display_ratio"
            figures[key] = round(statistics.median(ours) / statistics.median(theirs), 3)
            # each round's two answers ran back to back: their ratio shares the machine's load
            pairs = [a / b for a, b in zip(ours, theirs, strict=False) if b > 0]
            if pairs:
                figures[f"{key}_paired_median"] = round(statistics.median(pairs), 3)
    if "attached_first_frame_s" in figures and "inprocess_first_frame_s" in figures:
        figures["first_frame_ratio"] = round(figures["attached_first_frame_s"] / figures["inprocess_first_frame_s"], 3)
    figures["goals_met"] = {key: (figures[key] >= goal if op == ">=" else figures[key] <= goal)
                            for key, (op, goal) in GOALS.items() if key in figures}
    print(json.dumps(figures))
    return 1 if "error" in figures else 0


if __name__ == "__main__":
    raise SystemExit(main())
