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

import contextlib
import json
import re
import subprocess
import threading
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
from web_support import cli, environment, free_port, healthy, stop, wait_for

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "web-test-t0ken-9f2c"
PROMPT = "hello from the browser"
SUMMARY = re.compile(r"\d+ tokens")
"""The answer's summary line (``— alpha (auto: ...) · TTFT 2 ms · 830 tok/s · 256 tokens``)."""

pytestmark = pytest.mark.timeout(240)


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
        wait_for("the server's health", lambda: healthy(api))
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


