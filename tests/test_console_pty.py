"""The real ``orin-console`` in a pseudo-terminal: it opens the console, and a closed terminal
(SIGHUP, as when SSH drops) or SIGTERM shuts it down with no process left behind."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orin_console.testing.waits import wait_until

from runner_procs import marked_processes

REPO = Path(__file__).resolve().parent.parent


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_the_console_in_a_terminal_ends_cleanly_on_a_signal(workdir: Path, sig: signal.Signals) -> None:
    mark = uuid.uuid4().hex
    env = {**os.environ, "ORIN_TEST_MARK": mark, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24",
           "ORIN_STATE_DIR": str(workdir / "state"), "ORIN_TELEMETRY_SOURCE": "psutil"}
    primary, secondary = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "orin_console", "--catalog", str(workdir / "models.toml")],
                            stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=REPO,
                            start_new_session=True)
    os.close(secondary)
    try:
        screen = _read_until(primary, b"Catalog", timeout=30)
        assert b"Catalog" in screen, screen[-2000:]
        os.write(primary, b"l")  # load alpha: a runner process starts
        wait_until(lambda: len(marked_processes(mark)) >= 2, timeout=30, what="a runner")
        runners = [p for p in marked_processes(mark) if p.pid != proc.pid]
        assert runners
        proc.send_signal(sig)
        if sig == signal.SIGHUP:
            os.close(primary)  # and the terminal is gone, as when SSH drops
            primary = -1
            tail = b""
        else:
            tail = _read_until(primary, b"shut down cleanly", timeout=30)
        assert proc.wait(timeout=30) == 128 + sig, tail[-3000:]
        wait_until(lambda: marked_processes(mark) == [], timeout=10, what="no process left")
    finally:
        if primary >= 0:
            os.close(primary)
        if proc.poll() is None:
            proc.kill()
    log = (workdir / "state" / "console.log").read_text()
    assert "plan to load alpha: admitted" in log or "plan to load alpha" in log


def _console(workdir: Path, mark: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "ORIN_TEST_MARK": mark, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24",
           "ORIN_STATE_DIR": str(workdir / "state"), "ORIN_TELEMETRY_SOURCE": "psutil"}
    primary, secondary = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "orin_console", "--catalog", str(workdir / "models.toml"),
                             *extra], stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=REPO,
                            start_new_session=True)
    os.close(secondary)
    return proc, primary


def test_a_second_console_attaches_to_the_serving_core_and_one_that_would_serve_is_refused(workdir: Path) -> None:
    from orin_console.core.instance import read_holder

    mark = uuid.uuid4().hex
    env = {**os.environ, "ORIN_TEST_MARK": mark, "ORIN_STATE_DIR": str(workdir / "state"),
           "ORIN_TELEMETRY_SOURCE": "psutil"}
    serve = subprocess.Popen([sys.executable, "-m", "orin_console", "--catalog", str(workdir / "models.toml"),
                              "serve", "--port", "0", "--log-level", "warning"], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        holder = wait_until(lambda: (h := read_holder(workdir / "state")) is not None and h.address
                            and not h.address.endswith(":0") and h, timeout=30, what="serve holding the lock")
        proc, primary = _console(workdir, mark)  # no flag: it attaches to serve's API (issue 13)
        try:
            out = _read_until(primary, b"attached", timeout=30)
            assert b"attached" in out, out[-2000:]
            out += _read_until(primary, b"? for help", timeout=10)
            os.write(primary, b"\x11")  # ctrl+q: the attached console ends, the server goes on
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                _read_until(primary, b"\x00never", timeout=0.2)  # keep the terminal drained meanwhile
            assert proc.wait(timeout=1) == 0
        finally:
            os.close(primary)
            if proc.poll() is None:
                proc.kill()
        assert serve.poll() is None
        proc, primary = _console(workdir, mark, "--serve", "127.0.0.1:0")  # it would own the core: refused
        try:
            out = _read_until(primary, b"state folder", timeout=30)
            out += _read_until(primary, b"ORIN_STATE_DIR", timeout=5)
            assert proc.wait(timeout=30) == 2, out[-2000:]
        finally:
            os.close(primary)
            if proc.poll() is None:
                proc.kill()
        text = b" ".join(out.split()).decode("utf-8", "replace")  # the message wraps at 80 columns
        assert f"serve (pid {serve.pid}" in text and f"use its API at {holder.address}" in text, text
        assert serve.poll() is None  # the first one goes on
    finally:
        serve.terminate()
        serve.wait(30)


def test_the_console_serves_the_api_and_quitting_stops_it(workdir: Path) -> None:
    import httpx

    from orin_console.core.instance import read_holder

    from api_live import free_port

    mark = uuid.uuid4().hex
    port = free_port()
    proc, primary = _console(workdir, mark, "--serve", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    try:
        screen = _read_until(primary, b"Catalog", timeout=30)
        assert b"Catalog" in screen, screen[-2000:]
        holder = read_holder(workdir / "state")
        assert holder is not None and holder.kind == "console" and holder.address == url
        wait_until(lambda: _healthy(url), timeout=30, what="the API up")
        reply = httpx.post(f"{url}/quick/generate", json={"prompt": "Hello!", "max_tokens": 4}, timeout=60)
        assert reply.status_code == 200 and reply.json()["model_id"] == "alpha", reply.text
        log = workdir / "state" / "console.log"
        wait_until(lambda: "api request" in log.read_text(), timeout=10, what="the request in the log")
        os.write(primary, b"\x11")  # ctrl+q
        tail = _read_until(primary, b"\x00never", timeout=3)
        assert proc.wait(timeout=30) == 0, tail[-2000:]
        assert not _healthy(url)  # the server stopped with the console
        wait_until(lambda: marked_processes(mark) == [], timeout=10, what="no process left")
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
    assert "API: serving " + url in log.read_text()


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/system/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
