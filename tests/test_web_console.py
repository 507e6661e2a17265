"""``orin-console web`` in a real browser: Debian's chromium (installed by
``scripts/setup_browser.sh``, which ``make test`` runs) driven by Playwright through its
executable path.

One stack for the module: ``orin-console serve`` on a free loopback port with the tiny pair
and a token (it holds the machine's one-core lock, naming its address), then
``orin-console web`` on the same state folder, which finds that core through the lock and
attaches every browser session to it. The browser opens the page (refused without the
token, then ``/?token=``), the console appears, a prompt typed into its chat streams an
answer, and the session process is an attached console: ``--attach`` on its command line,
the token only in its environment, no runner of its own, the lock still the server's, and
the server's event stream shows the request coming in over the API.

The page draws the terminal with xterm.js on a canvas, so the test reads the screen from the
bytes the page's terminal received over its websocket (Playwright's frame events), replayed
into a terminal emulator (pyte) of the size the page asked for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psutil
import pyte
import pytest

from orin_console.core.instance import read_holder

from conftest import TINY_CATALOG

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "web-test-t0ken-9f2c"
PROMPT = "hello from the browser"
SUMMARY = re.compile(r"\d+ tokens")
"""The answer's summary line (``— alpha (auto: ...) · TTFT 2 ms · 830 tok/s · 256 tokens``)."""

pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("orin-console")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "orin_console"]


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORIN_", "TEXTUAL"))}
    env.update(HOME=str(home), ORIN_STATE_DIR=str(home / "state"), ORIN_CONFIG=str(home / "config.toml"), **extra)
    return env


def wait_for(what: str, check: Any, timeout: float = 30.0, step: float = 0.05, sleep: Any = time.sleep) -> Any:
    """Poll ``check`` until truthy. With a page, ``sleep=lambda s: page.wait_for_timeout(s * 1000)``:
    Playwright's sync API delivers the page's events (the websocket frames) only inside its calls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
    return int(proc.returncode)


@dataclass
class Stack:
    home: Path
    serve: subprocess.Popen[bytes]
    api: str
    web: subprocess.Popen[bytes]
    page_url: str
    web_log: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from orin_console.testing.tiny_models import write_tiny_llama

    home = tmp_path_factory.mktemp("web-home")
    models = tmp_path_factory.mktemp("web-models")
    write_tiny_llama(models / "alpha.gguf", n_ctx=2048, ascii_output=True)
    write_tiny_llama(models / "beta.gguf", seed=7, n_ctx=2048, ascii_output=True)
    (models / "models.toml").write_text(TINY_CATALOG)
    env = environment(home, ORIN_TOKEN=TOKEN)
    serve_log = home / "serve.log"
    with serve_log.open("wb") as out:
        serve = subprocess.Popen([*cli(), "--catalog", str(models / "models.toml"), "serve", "--port", "0"],
                                 env=env, stdout=out, stderr=subprocess.STDOUT)
    web = None
    try:
        def bound() -> Any:
            h = read_holder(home / "state")
            if serve.poll() is not None:
                pytest.fail(f"serve exited: {serve_log.read_text()[-2000:]}")
            return h if h is not None and h.pid == serve.pid and h.address and not h.address.endswith(":0") else None

        holder = wait_for("the server's address in the lock file", bound)
        api = holder.address
        wait_for("the server's health", lambda: _healthy(api))
        port = free_port()
        web_log = home / "web.log"
        with web_log.open("wb") as out:
            web = subprocess.Popen([*cli(), "web", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for("orin-console web to serve", lambda: "serving the console on" in web_log.read_text() or (
            web.poll() is not None and pytest.fail(f"web exited {web.returncode}: {web_log.read_text()[-2000:]}")))
        yield Stack(home, serve, api, web, f"http://127.0.0.1:{port}", web_log)
    finally:
        web_status = stop(web) if web is not None else 0
        serve_status = stop(serve)
    assert web_status == 0, f"orin-console web ended with {web_status}"
    assert serve_status == 0, f"orin-console serve ended with {serve_status}: {serve_log.read_text()[-2000:]}"


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/system/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Terminal:
    """The screen the page's xterm.js shows, replayed from the bytes it received."""

    screen: pyte.Screen | None = None
    stream: pyte.ByteStream | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    frames: int = 0
    history: list[str] = field(default_factory=list)

    def attach(self, ws: Any) -> None:
        query = parse_qs(urlsplit(ws.url).query)
        width, height = int(query["width"][0]), int(query["height"][0])
        with self.lock:
            self.screen = pyte.Screen(width, height)
            self.stream = pyte.ByteStream(self.screen)
        ws.on("framereceived", self.feed)

    def feed(self, payload: Any) -> None:
        if not isinstance(payload, bytes | bytearray):
            return
        with self.lock:
            if self.stream is None:
                return
            self.stream.feed(bytes(payload))
            self.frames += 1
            self.history.append(self.text_locked())

    def text_locked(self) -> str:
        assert self.screen is not None
        return "\n".join(line.rstrip() for line in self.screen.display)

    def text(self) -> str:
        with self.lock:
            return self.text_locked() if self.screen is not None else ""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup_browser.sh` (make test runs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), args=LAUNCH_ARGS,
            headless=True, viewport={"width": 1100, "height": 720})
        try:
            yield context
        finally:
            context.close()


class Events(threading.Thread):
    """The server's ``GET /events`` stream, read on a thread."""

    def __init__(self, api: str) -> None:
        super().__init__(daemon=True, name="events")
        self.api = api
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.stream(
                "GET", f"{self.api}/events", params={"kinds": "GenerationStarted,GenerationFinished"},
                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx.Timeout(5, read=None)) as response:
            self.ready.set()
            kind = ""
            for line in response.iter_lines():
                if self.done.is_set():
                    return
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    self.seen.append((kind, json.loads(line[5:])))


def session_processes(web: subprocess.Popen[bytes]) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(web.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "--attach" in child.cmdline():
                found.append(child)
    return found


def test_browser_session_is_an_attached_console(stack: Stack, browser: Any) -> None:
    page = browser.new_page()
    terminal = Terminal()

    def pump(seconds: float) -> None:
        page.wait_for_timeout(seconds * 1000)

    def wait(what: str, check: Any, timeout: float = 30.0) -> Any:
        return wait_for(what, check, timeout, sleep=pump)

    page.on("websocket", terminal.attach)

    refused = page.goto(stack.page_url + "/")
    assert refused is not None and refused.status == 401
    assert "token" in page.inner_text("body")
    assert not session_processes(stack.web), "a session started without the token"

    page.goto(f"{stack.page_url}/?token={TOKEN}")
    assert "token" not in page.url, "the token stays in the address bar after the first page"
    page.wait_for_selector("body.-first-byte", timeout=30_000)
    wait("the console's frame in the page", lambda: all(
        word in terminal.text() for word in ("Catalog", "alpha", "beta", "Chat")))
    wait("the status line naming the server", lambda: "attached" in terminal.text() and (
        stack.api.removeprefix("http://") in terminal.text()))

    (session,) = wait("the session process", lambda: session_processes(stack.web))
    argv = session.cmdline()
    assert argv[argv.index("--attach") + 1] == stack.api
    assert session.ppid() == stack.web.pid, "a shell between web and the console (killing it would leave the console)"
    assert not any(TOKEN in arg for arg in argv), "the token is on the session's command line"
    assert session.environ().get("ORIN_TOKEN") == TOKEN

    events = Events(stack.api)
    events.start()
    assert events.ready.wait(10)
    page.focus(".xterm-helper-textarea")
    footer = terminal.text().rstrip().splitlines()[-1]
    page.keyboard.press("/")
    # the footer shows the chat input's keys once it has the focus: only then type (the
    # prompt's letters are console keys elsewhere: l loads, o plans, r and s move)
    wait("the chat input's focus", lambda: terminal.text().rstrip().splitlines()[-1] != footer)
    page.keyboard.type(PROMPT, delay=15)
    wait("the prompt echoed in the chat input", lambda: PROMPT in terminal.text())
    typed_at = len(terminal.history)
    page.keyboard.press("Enter")
    finished = wait("the answer's summary line", lambda: SUMMARY.search(terminal.text()) and terminal.text(),
                    timeout=60)
    assert "alpha" in finished

    started = wait("the server's GenerationStarted", lambda: [d for k, d in events.seen
                                                                  if k == "GenerationStarted"])
    assert started[0]["model_id"] == "alpha" and started[0]["source"] == "api", started[0]
    done = wait("the server's GenerationFinished", lambda: [d for k, d in events.seen
                                                                if k == "GenerationFinished"])
    events.done.set()
    answer_lines = _answer_lines(finished)
    assert answer_lines, f"no answer text under the prompt:\n{finished}"
    first = answer_lines[0][:20]
    partial = [screen for screen in terminal.history[typed_at:] if first in screen and not SUMMARY.search(screen)]
    assert partial, f"the answer appeared only whole, never streaming:\n{finished}"
    assert done[0]["tokens"] > 1

    # An attached console: no runner of its own, the lock still the server's, its runner there.
    assert session.children(recursive=True) == [], f"the session runs processes: {session.children()}"
    holder = read_holder(stack.home / "state")
    assert holder is not None and holder.pid == stack.serve.pid
    assert psutil.Process(stack.serve.pid).children(recursive=True), "the server has no runner for alpha"

    page.close()
    wait_for("the session to end with its page", lambda: not session.is_running() or (
        session.status() == psutil.STATUS_ZOMBIE))
    alpha = httpx.get(f"{stack.api}/models/alpha", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
    assert alpha["state"] == "ready", f"the server's model did not outlive the browser session: {alpha}"


def test_a_session_that_cannot_attach_ends_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's process ends at once (nothing listens): its websocket closes, so the page
    shows that the session ended (and why it may have) instead of waiting forever."""
    from aiohttp import WSMsgType
    from aiohttp.test_utils import TestClient, TestServer

    from orin_console.cli.web import session_command
    from orin_console.web.server import WebConsole

    for key, value in environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    with socket.socket() as sock:  # a loopback port where nothing listens
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        console = WebConsole(session_command(dead, None), target=dead, token=None, api_token=None,
                             bind_host="127.0.0.1")

        async def check() -> None:
            async with TestClient(TestServer(console.make_app())) as client:
                page = await (await client.get("/")).text()
                assert "could not attach" in page and dead in page
                ws = await client.ws_connect("/ws?width=80&height=24", origin=str(client.make_url("")).rstrip("/"))
                kinds = []
                async with asyncio.timeout(60):
                    async for message in ws:
                        kinds.append(message.type)
                assert ws.closed and WSMsgType.ERROR not in kinds
                async with asyncio.timeout(15):  # the handler's own clean-up, just after the close
                    while console.sessions:
                        await asyncio.sleep(0.02)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, check()).result(90)


def _answer_lines(screen: str) -> list[str]:
    """The chat pane's lines between the prompt and the summary line, without the borders."""
    lines = [line.split("│")[-2].strip() if line.count("│") >= 2 else "" for line in screen.splitlines()]
    try:
        start = next(i for i, line in enumerate(lines) if PROMPT in line)
    except StopIteration:
        return []
    out = []
    for line in lines[start + 1:]:
        if SUMMARY.search(line) or line.startswith("—"):
            break
        if line:
            out.append(line)
    return out


def test_the_page_and_the_websocket_need_the_token(stack: Stack) -> None:
    with httpx.Client(base_url=stack.page_url, timeout=5, follow_redirects=False) as client:
        assert client.get("/").status_code == 401
        assert client.get("/static/js/textual.js").status_code == 401
        assert client.get("/", params={"token": "wrong"}).status_code == 401
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": stack.page_url}
        assert client.get("/ws", headers=upgrade).status_code == 401
        first = client.get("/", params={"token": TOKEN})
        assert first.status_code == 303 and first.headers["location"] == "/"
        cookie = first.headers["set-cookie"]
        assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = client.get("/")
        assert page.status_code == 200 and "textual-terminal" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        foreign = client.get("/ws", headers={**upgrade, "Origin": "http://evil.example"})
        assert foreign.status_code == 403
    assert httpx.get(f"{stack.page_url}/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).status_code == 200
    assert not session_processes(stack.web)


def test_off_loopback_without_a_token_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from orin_console.cli.main import main

    port = free_port()
    assert main(["web", "--host", "0.0.0.0", "--port", str(port), "--attach", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0" in err and "ORIN_TOKEN" in err and "Traceback" not in err
    with socket.socket() as sock:  # nothing was bound
        sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize(("argv", "words"), [
    (["--attach", "ftp://x"], "http://HOST:PORT"),
    (["--attach", "http://192.0.2.1:8000"], "needs its token"),
    (["--port", "70000"], "0 to 65535"),
    (["--max-sessions", "0"], "1 to 64"),
])
def test_bad_arguments_are_refused(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    from orin_console.cli.main import main

    assert main(["web", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err


def test_without_a_token_only_loopback_hosts_are_served() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from orin_console.web.server import WebConsole

    console = WebConsole(["true"], target="http://127.0.0.1:9", token=None, api_token=None, bind_host="127.0.0.1")

    async def check() -> None:
        async with TestClient(TestServer(console.make_app())) as client:
            assert (await client.get("/")).status == 200
            rebound = await client.get("/", headers={"Host": "attacker.example:8080"})
            assert rebound.status == 400 and "DNS rebinding" in await rebound.text()
            ws = await client.get("/ws", headers={"Origin": "http://attacker.example", "Connection": "Upgrade",
                                                  "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
            assert ws.status == 403

    # on a thread of its own: the module's Playwright (sync API) may hold this thread's event loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, check()).result(60)


def test_without_a_core_web_starts_one_and_holds_the_lock(make_workdir: Any, tmp_path_factory: pytest.TempPathFactory
                                                          ) -> None:
    """No core runs: web takes the lock itself and serves the core's API on loopback (so a
    terminal console attaches to it too); stopping web closes it all."""
    folder = make_workdir()
    home = tmp_path_factory.mktemp("web-own-home")
    log = home / "web.log"
    with log.open("wb") as out:
        web = subprocess.Popen([*cli(), "--catalog", str(folder / "models.toml"), "web", "--port", str(free_port()),
                                "--api-port", "0"], env=environment(home), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for("web to serve", lambda: "serving the console on" in log.read_text() or (
            web.poll() is not None and pytest.fail(f"web exited {web.returncode}: {log.read_text()[-2000:]}")))
        holder = read_holder(home / "state")
        assert holder is not None and holder.pid == web.pid and holder.kind == "web", holder
        assert holder.address and holder.address.startswith("http://127.0.0.1:")
        assert _healthy(holder.address)
        assert f"this process's core (API {holder.address})" in log.read_text()
        loaded = httpx.post(f"{holder.address}/models/alpha/load", json={}, timeout=30)
        assert loaded.status_code in (200, 202), loaded.text
        runners = wait_for("alpha's runner", lambda: psutil.Process(web.pid).children(recursive=True))
    finally:
        status = stop(web)
    assert status == 0, log.read_text()[-2000:]
    assert not [r for r in runners if r.is_running() and r.status() != psutil.STATUS_ZOMBIE], "a runner outlived web"
    assert "closing the core" in log.read_text()
    holder = read_holder(home / "state")
    assert holder is None or holder.pid != web.pid or not holder.address, "the lock still names the stopped web"


def test_a_core_without_an_api_is_refused_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    from orin_console.cli.main import main
    from orin_console.core.instance import hold_instance
    from orin_console.core.settings import load_settings

    with hold_instance(load_settings().state_dir, "console", None):
        assert main(["web", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "serves no API" in err and "--attach URL" in err and "Traceback" not in err, err


def test_the_lock_files_address_is_reached_on_loopback() -> None:
    from orin_console.cli.web import local_url
    from orin_console.core.errors import OrinError

    assert local_url("http://0.0.0.0:8000") == "http://127.0.0.1:8000"
    assert local_url("http://[::]:8000") == "http://[::1]:8000"
    assert local_url("http://127.0.0.1:8123") == "http://127.0.0.1:8123"
    for still_binding_or_bad in ("http://127.0.0.1:0", "not a url", "http://x:99999", "ftp://127.0.0.1:21"):
        with pytest.raises(OrinError, match="not an address to attach to yet"):
            local_url(still_binding_or_bad)


def test_sessions_are_bounded_and_a_stuck_one_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    """--max-sessions: one more websocket is refused (503) while the others are open; a session
    process that ignores the quit message is killed when its page goes."""
    from aiohttp import WSServerHandshakeError
    from aiohttp.test_utils import TestClient, TestServer

    from orin_console.web import server
    from orin_console.web.server import WebConsole

    monkeypatch.setattr(server, "STOP_TIMEOUT_S", 0.5)
    console = WebConsole(["sleep", "60"], target="http://127.0.0.1:9", token=None, api_token=None,
                         bind_host="127.0.0.1", max_sessions=1)

    async def check() -> None:
        async with TestClient(TestServer(console.make_app())) as client:
            origin = str(client.make_url("")).rstrip("/")
            first = await client.ws_connect("/ws", origin=origin)
            async with asyncio.timeout(15):
                while not console.sessions or next(iter(console.sessions)).pid is None:
                    await asyncio.sleep(0.02)
            pid = next(iter(console.sessions)).pid
            with pytest.raises(WSServerHandshakeError) as refused:
                await client.ws_connect("/ws", origin=origin)
            assert refused.value.status == 503
            await first.close()
            async with asyncio.timeout(15):
                while console.sessions:
                    await asyncio.sleep(0.02)
            assert pid is not None and not psutil.pid_exists(pid), "the stuck session process was not killed"

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, check()).result(60)
