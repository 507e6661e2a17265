"""Helpers of the web console's tests (tests/test_web_*.py): processes of the real command on
loopback, in an environment of their own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


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


def healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/system/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
