"""The console's costs (issue 9): start-up, idle, event-loop stalls and streaming speed.

Two parts, each printing what it measured; the last line is one JSON object with every figure.

1. **In a pseudo-terminal** (80x24, the real ``orin-console`` on the demo catalog, no model
   loaded, telemetry at its default 1 Hz): the time from the process start to the first full
   frame (the tier map, the catalog with its rows and the chat pane all drawn); then, after a
   settling pause, an idle window: CPU % of one core used by the console process itself (its
   runners, if any, are reported apart), its RSS, and the bytes it wrote to the terminal per
   second.
2. **Headless, in this process** (``build_app`` over ``create_core``, as the CLI does, at
   80x24): the longest event-loop stall (a 5 ms ticker's worst lateness) while one model
   loads (``gemma3``) and another streams an answer through the chat pane (``smollm2``);
   then the same request alone, several times, through the chat pane and through the CLI
   (``orin-console run --json``, its own process): tokens/s shown in the pane (the answer's
   figure) ÷ tokens/s of the CLI, and the rate at which the pane really displayed the text.

Goals: stall ≤ 50 ms, idle CPU ≤ 2 % of a core, RSS ≤ 120 MB, terminal output ≤ 2 KB/s, first
frame ≤ 1.5 s, streaming ratio ≥ 0.97.

    .venv/bin/python benchmarks/console.py [--idle-seconds 20] [--rounds 3] [--max-tokens 96]

Needs the demo models (``make models``) for part 2; part 1 needs only the catalog file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
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

import psutil  # noqa: E402

PROMPT = "Write three short sentences about memory tiers on a small computer."
FRAME_MARKERS = (b"Catalog", b"Chat", b"smollm2", b"RAM")
"""What the first full frame has drawn: pane titles, a catalog row, a tier bar."""


# -- part 1: a pseudo-terminal ---------------------------------------------------------------


class PtyReader(threading.Thread):
    """Reads everything the console writes to its terminal, with when it arrived."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True, name="pty reader")
        self.fd = fd
        self.chunks: list[tuple[float, int]] = []
        self.head = bytearray()
        self.frame_at: float | None = None
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            with self.lock:
                self.chunks.append((now, len(data)))
                if self.frame_at is None:
                    self.head += data
                    if all(marker in self.head for marker in FRAME_MARKERS):
                        self.frame_at = now

    def bytes_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(n for t, n in self.chunks if start <= t < end)


LAUNCHER = """
import sys
from pathlib import Path
from orin_console.core import create_core
from orin_console.core.settings import load_settings
from orin_console.tui.app import build_app
settings = load_settings(catalog_path=Path(sys.argv[1]))
core = create_core(settings)
try:
    core.start()
    app = build_app(core, settings=settings)
    app.handle_signals = True
    app.run()
finally:
    core.close()
"""
"""What ``orin-console`` with no command does (cli/console.py), for a checkout where the
command does not open the console yet."""


def _console_command(catalog: Path, entry: str) -> list[str]:
    """``cli``: the real entry point (``orin-console`` with no command opens the console);
    ``launcher``: :data:`LAUNCHER`, the same steps."""
    if entry == "launcher":
        return [sys.executable, "-c", LAUNCHER, str(catalog)]
    exe = Path(sys.executable).with_name("orin-console")
    if exe.exists():
        return [str(exe), "--catalog", str(catalog)]
    return [sys.executable, "-m", "orin_console", "--catalog", str(catalog)]


def pty_part(catalog: Path, state: Path, idle_seconds: float, settle: float) -> dict[str, Any]:
    """:func:`pty_once` with the real command, or the launcher where the command only prints help."""
    try:
        return pty_once(catalog, state, idle_seconds, settle, "cli")
    except NotAConsole:
        return pty_once(catalog, state, idle_seconds, settle, "launcher")


class NotAConsole(RuntimeError):
    """The command exited (printing its usage) instead of opening the console."""


def pty_once(catalog: Path, state: Path, idle_seconds: float, settle: float, entry: str) -> dict[str, Any]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORIN_")}
    env.update(TERM="xterm-256color", ORIN_STATE_DIR=str(state), COLUMNS="80", LINES="24",
               HOME=str(state.parent))
    env.pop("TEXTUAL", None)

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    started = time.monotonic()
    proc = subprocess.Popen(_console_command(catalog, entry), stdin=slave, stdout=slave, stderr=slave, env=env,
                            preexec_fn=controlling_tty, close_fds=True)
    os.close(slave)
    reader = PtyReader(master)
    reader.start()
    out: dict[str, Any] = {"entry": entry}
    try:
        deadline = started + 30
        while reader.frame_at is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        if reader.frame_at is None:
            if proc.poll() is not None and b"usage:" in reader.head and entry == "cli":
                raise NotAConsole("orin-console with no command printed its usage")
            with reader.lock:
                tail = bytes(reader.head[-400:]).decode("utf-8", "replace")
            raise RuntimeError(f"no full frame within 30 s (exit {proc.poll()}); last output: {tail!r}")
        out["first_frame_s"] = round(reader.frame_at - started, 3)
        time.sleep(settle)
        ps = psutil.Process(proc.pid)
        before = ps.cpu_times()
        children_before = {c.pid: c.cpu_times() for c in ps.children(recursive=True)}
        t0 = time.monotonic()
        time.sleep(idle_seconds)
        t1 = time.monotonic()
        after = ps.cpu_times()
        wall = t1 - t0
        own = (after.user - before.user) + (after.system - before.system)
        out["idle_seconds"] = round(wall, 2)
        out["idle_cpu_percent_of_core"] = round(100 * own / wall, 2)
        out["rss_mb"] = round(ps.memory_info().rss / 2**20, 1)
        out["terminal_bytes_per_s"] = round(reader.bytes_between(t0, t1) / wall, 1)
        children = ps.children(recursive=True)
        child_cpu = 0.0
        for child in children:
            with contextlib.suppress(psutil.Error):
                now = child.cpu_times()
                was = children_before.get(child.pid)
                child_cpu += (now.user + now.system) - ((was.user + was.system) if was else 0.0)
        out["child_processes"] = len(children)
        out["children_cpu_percent_of_core"] = round(100 * child_cpu / wall, 2)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.write(master, b"\x11")  # ctrl+q
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(15)
        out["exit_status"] = proc.returncode
        with contextlib.suppress(OSError):
            os.close(master)
    return out


# -- part 2: headless, in this process ---------------------------------------------------------


def cli_rates(catalog: Path, state: Path, rounds: int, max_tokens: int) -> list[float]:
    """tok/s of the request through ``orin-console run --json``, one process per round (the
    rounds are interleaved with the pane's, so both see the same load on a shared machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORIN_")}
    env.update(ORIN_STATE_DIR=str(state), HOME=str(state.parent))
    exe = Path(sys.executable).with_name("orin-console")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "orin_console"]),
           "--catalog", str(catalog), "run", "--model", "smollm2", "--max-tokens", str(max_tokens),
           "--temperature", "0", "--seed", "1", "--json", PROMPT]
    rates = []
    for _ in range(rounds):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"orin-console run failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rates.append(float(result["tok_per_s"]))
    return rates


class LoopProbe:
    """A 5 ms ticker on the app's event loop; its worst lateness is the longest stall."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.running = True

    async def run(self) -> None:
        while self.running:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - t - 0.005)


async def _answer(app: Any, chat: Any, prompt: str, shown: list[tuple[float, int]]) -> Any:
    """Ask through the pane as the operator would and wait for the answer's end."""
    from orin_console.tui.widgets.chat import ChatPane

    results: list[Any] = []
    failures: list[str] = []

    def finished(message: ChatPane.AnswerFinished) -> None:
        results.append(message.result)

    def failed(message: ChatPane.AnswerFailed) -> None:
        failures.append(f"{message.kind}: {message.reason}")

    shown.clear()
    unsubscribe = _watch_messages(chat, finished, failed)
    try:
        await chat.ask(prompt)
        deadline = time.monotonic() + 300
        while not results and not failures and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        unsubscribe()
    if failures:
        raise RuntimeError(f"the chat pane's answer failed: {failures[0]}")
    if not results:
        raise RuntimeError("no answer within 300 s")
    return results[0]


def _watch_messages(chat: Any, finished: Any, failed: Any) -> Any:
    """Call ``finished``/``failed`` for the pane's answer messages (wrapping post_message)."""
    from orin_console.tui.widgets.chat import ChatPane

    original = chat.post_message

    def post(message: Any) -> bool:
        if isinstance(message, ChatPane.AnswerFinished):
            finished(message)
        elif isinstance(message, ChatPane.AnswerFailed):
            failed(message)
        return bool(original(message))

    chat.post_message = post

    def undo() -> None:
        chat.post_message = original
    return undo


class _SlowCallbacks(logging.Handler):
    """With ``--debug-loop``: asyncio's debug mode for the stall window, every callback over
    20 ms it reports (``Executing <Handle ...> took 0.123 seconds``), worst first. An empty
    list while the ticker still saw a long gap means the loop was not late in our code: its
    thread was not scheduled."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(logging.WARNING)
        self.enabled = enabled
        self.records: list[tuple[float, str]] = []
        if enabled:
            loop = asyncio.get_running_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = 0.02
            logging.getLogger("asyncio").addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        found = re.search(r"took ([0-9.]+) seconds", text)
        if found:
            self.records.append((float(found.group(1)), text[:300]))

    def close(self) -> None:
        if self.enabled:
            asyncio.get_running_loop().set_debug(False)
            logging.getLogger("asyncio").removeHandler(self)
        super().close()

    def summary(self) -> list[str]:
        return [f"{secs * 1000:.0f} ms: {text}" for secs, text in sorted(self.records, reverse=True)[:10]]


def headless_part(catalog: Path, state: Path, rounds: int, max_tokens: int, cli_state: Path,
                  debug_loop: bool = False) -> dict[str, Any]:
    from orin_console.core import create_core
    from orin_console.core.engine.types import GenerationParams
    from orin_console.core.settings import load_settings
    from orin_console.tui.app import build_app
    from orin_console.tui.widgets.chat import ChatPane

    out: dict[str, Any] = {}
    settings = load_settings(env={}, catalog_path=catalog, state_dir=state)
    shown: list[tuple[float, int]] = []
    original_drain = ChatPane._drain

    async def drain(self: Any, **options: Any) -> None:  # the time each burst of text reached the pane
        with self._lock:
            n = sum(len(p) for p in self._pending)
        await original_drain(self, **options)
        if n:
            shown.append((time.perf_counter(), n))

    ChatPane._drain = drain  # type: ignore[method-assign]
    core = create_core(settings)
    try:
        core.start()
        app = build_app(core, settings=settings, log_path=state / "console.log")

        async def scenario() -> None:
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                await asyncio.to_thread(lambda: core.manager.load("smollm2").result(timeout=300))
                chat = app.query_one(ChatPane)
                chat.mode = "manual"
                chat.preferred = "smollm2"
                chat._params = GenerationParams.build(max_tokens=max_tokens, temperature=0.0, seed=1)
                probe = LoopProbe()
                ticker = asyncio.create_task(probe.run())
                await asyncio.sleep(0.5)
                idle_worst, probe.worst = probe.worst, 0.0
                slow = _SlowCallbacks(debug_loop)
                load = core.manager.load("gemma3")
                t0 = time.perf_counter()
                try:
                    result = await _answer(app, chat, PROMPT, shown)
                    await asyncio.to_thread(lambda: load.result(timeout=300))
                finally:
                    slow.close()
                if debug_loop:
                    out["slow_callbacks"] = slow.summary()
                out["stall_window_s"] = round(time.perf_counter() - t0, 2)
                out["stall_max_ms"] = round(probe.worst * 1000, 1)
                out["stall_idle_max_ms"] = round(idle_worst * 1000, 1)
                out["concurrent_answer_tokens"] = result.tokens
                probe.running = False
                await ticker
                await asyncio.to_thread(lambda: core.manager.unload("gemma3").result(timeout=60))
                pane_rates, display_rates, cli = [], [], []
                for _ in range(rounds):
                    cli.extend(await asyncio.to_thread(cli_rates, catalog, cli_state, 1, max_tokens))
                    result = await _answer(app, chat, PROMPT, shown)
                    pane_rates.append(float(result.tok_per_s or 0.0))
                    if len(shown) > 1 and result.tokens > 1:
                        span = shown[-1][0] - shown[0][0]
                        # the tokens after the first burst, over the time they took to appear
                        chars = sum(n for _, n in shown)
                        later = chars - shown[0][1]
                        display_rates.append(result.tokens * (later / chars) / span if span > 0 else 0.0)
                out["cli_tok_per_s"] = [round(r, 1) for r in cli]
                out["pane_tok_per_s"] = [round(r, 1) for r in pane_rates]
                out["pane_display_tok_per_s"] = [round(r, 1) for r in display_rates]
                app.exit()

        asyncio.run(scenario())
    finally:
        ChatPane._drain = original_drain  # type: ignore[method-assign]
        core.close()
    return out


class _NoRates(Exception):
    """``--skip-rates``: no streaming ratio to compute."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=ROOT / "models.toml")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the first frame before idling")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--skip-pty", action="store_true")
    parser.add_argument("--skip-headless", action="store_true")
    parser.add_argument("--skip-rates", action="store_true", help="only the stall, not the pane/CLI tok/s rounds")
    parser.add_argument("--debug-loop", action="store_true",
                        help="asyncio debug mode during the stall window: list callbacks over 20 ms")
    args = parser.parse_args()
    catalog = args.catalog.resolve()
    figures: dict[str, Any] = {"benchmark": "console", "cpus": os.cpu_count(),
                               "load_average": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="orin-console-bench-") as scratch:
        base = Path(scratch)
        if not args.skip_pty:
            try:
                (base / "pty" / "state").mkdir(parents=True)
                figures.update(pty_part(catalog, base / "pty" / "state", args.idle_seconds, args.settle))
            except Exception as exc:  # noqa: BLE001 - report and go on to the other part
                figures["pty_error"] = str(exc)[:500]
            print(f"pty: {json.dumps({k: v for k, v in figures.items() if k not in ('benchmark',)})}", flush=True)
        if not args.skip_headless:
            try:
                (base / "cli" / "state").mkdir(parents=True)
                (base / "tui" / "state").mkdir(parents=True)
                figures.update(headless_part(catalog, base / "tui" / "state", 0 if args.skip_rates else args.rounds,
                                             args.max_tokens, base / "cli" / "state", args.debug_loop))
                cli = figures["cli_tok_per_s"]
                if not cli:
                    raise _NoRates
                pane = statistics.median(figures["pane_tok_per_s"])
                figures["stream_ratio"] = round(pane / statistics.median(cli), 3)
                if figures.get("pane_display_tok_per_s"):
                    figures["stream_display_ratio"] = round(
                        statistics.median(figures["pane_display_tok_per_s"]) / statistics.median(cli), 3)
            except _NoRates:
                pass
            except Exception as exc:  # noqa: BLE001
                figures["headless_error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
    goals = {"stall_max_ms": ("<=", 50), "idle_cpu_percent_of_core": ("<=", 2), "rss_mb": ("<=", 120),
             "terminal_bytes_per_s": ("<=", 2048), "first_frame_s": ("<=", 1.5), "stream_ratio": (">=", 0.97)}
    figures["goals_met"] = {key: (figures[key] <= goal if op == "<=" else figures[key] >= goal)
                            for key, (op, goal) in goals.items() if key in figures}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
