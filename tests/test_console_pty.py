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
