"""``orin-console web`` without a browser: its refusals (token off loopback, bad arguments, a
core serving no API, a lock naming no address yet), its guard without a token (Host,
websocket Origin), its sessions (bounded, a stuck one killed, one that cannot attach ending
its page) and the core it starts when none runs. See test_web_console.py for the browser."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from orin_console.core.instance import read_holder

from web_support import cli, environment, free_port, healthy, stop, wait_for


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
        assert healthy(holder.address)
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
