"""An attached console when its server goes away and comes back, and how ``orin-console`` finds
the core that serves on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from orin_console.cli.attach import AttachError, check_attach_url, find_serving_core, lock_is_held
from orin_console.core.instance import hold_instance
from orin_console.core.manager.types import ModelState
from orin_console.testing.managers import settings_for
from orin_console.tui.app import build_app
from orin_console.tui.backend.remote import RemoteBackend
from orin_console.tui.widgets.log import LogPane

from api_live import free_port
from tui_support import settle

_MAIN = "from orin_console.cli.main import main; raise SystemExit(main())"


def _serve(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """``orin-console serve`` on ``port`` in its own process group (its runners with it)."""
    env = {**os.environ, "ORIN_STATE_DIR": str(workdir / "state")}
    process = subprocess.Popen([sys.executable, "-c", _MAIN, "--catalog", str(workdir / "models.toml"), "serve",
                                "--port", str(port)], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve ended: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/system/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("serve did not answer within 30 s")


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the server and its runners, as kill -9 of a service
    process.wait(10)


def test_a_killed_and_restarted_server_shows_reconnecting_then_its_new_state(workdir: Path) -> None:
    port = free_port()
    servers = [_serve(workdir, port)]
    backend = RemoteBackend(f"http://127.0.0.1:{port}")
    app = build_app(backend, settings=settings_for(workdir))

    def alpha() -> tuple[ModelState, str] | None:
        status = next((m for m in (app.status.models if app.status else ()) if m.model_id == "alpha"), None)
        return None if status is None else (status.state, status.tier)

    async def scenario(pilot: Pilot[Any]) -> None:
        await settle(pilot, lambda: app.status is not None, what="the first status")
        banner = app.query_one("#connection", Static)
        assert not banner.display
        await pilot.press("l")
        await settle(pilot, lambda: alpha() == (ModelState.READY, "ram"), what="alpha loaded on the server")
        _kill(servers[0])
        await settle(pilot, lambda: not app.connected, timeout=10, what="the console to notice")
        assert banner.display and "reconnecting to http://127.0.0.1:" in str(banner.render())
        assert alpha() == (ModelState.READY, "ram")  # the old state, under the banner that says so
        assert any("lost http://127.0.0.1:" in t for _l, t in app.query_one(LogPane).history)
        servers.append(_serve(workdir, port))
        await settle(pilot, lambda: app.connected, timeout=15, what="the console to reconnect")
        await settle(pilot, lambda: alpha() == (ModelState.UNLOADED, "disk"), what="the new server's state")
        assert not banner.display
        assert any("back after" in t for _l, t in app.query_one(LogPane).history)
        assert backend.reconnects == 1

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await scenario(pilot)

    try:
        asyncio.run(main())
    finally:
        for server in servers:
            _kill(server)


def test_the_serving_core_is_found_only_while_it_holds_the_lock(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert find_serving_core(state) is None  # no lock file
    with hold_instance(state, "serve", "http://127.0.0.1:8123"):
        assert lock_is_held(state)
        assert find_serving_core(state) == "http://127.0.0.1:8123"
    assert not lock_is_held(state) and find_serving_core(state) is None
    (state / "console.lock").write_text(json.dumps({"pid": 1, "address": "http://127.0.0.1:8123", "kind": "serve"}))
    assert find_serving_core(state) is None  # a description left behind, nobody holds the lock
    with hold_instance(state, "console", None):
        assert find_serving_core(state) is None  # a core that serves no API
    with hold_instance(state, "serve", "http://0.0.0.0:8124"):
        assert find_serving_core(state) == "http://127.0.0.1:8124"  # bound everywhere: reached on loopback
    with hold_instance(state, "serve", "http://[::]:8125"):
        assert find_serving_core(state) == "http://[::1]:8125"


@pytest.mark.parametrize(("url", "token", "expected"), [
    ("http://127.0.0.1:8000/", None, "http://127.0.0.1:8000"),
    ("http://localhost:8000", None, "http://localhost:8000"),
    ("http://[::1]:8000", None, "http://[::1]:8000"),
    ("https://orin.example:8443", "s3cret", "https://orin.example:8443"),
])
def test_attach_urls(url: str, token: str | None, expected: str) -> None:
    assert check_attach_url(url, token) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("http://10.0.0.5:8000", "needs its token"),
    ("orin.example:8000", "http://HOST:PORT"),
    ("ftp://127.0.0.1", "http://HOST:PORT"),
    ("http://127.0.0.1:99999", "http://HOST:PORT"),
    ("http://", "http://HOST:PORT"),
])
def test_bad_attach_urls_are_refused_with_the_fix(url: str, message: str) -> None:
    with pytest.raises(AttachError, match=message):
        check_attach_url(url, None)


@pytest.mark.parametrize("data", [{}, {"model_id": 3, "status": "ready", "tiers": {"x": 1}, "sample": [],
                                       "plan": 7, "fraction": "half", "model_ids": None, "ts": "now"},
                                  {"status": {"models": [{"state": "exploded", "tier": "moon", "pin": "yes",
                                                          "queued": True, "notes": [1, "ok"]}], "tiers": [None]},
                                   "sample": {"age_s": -5, "cpu_per_core": ["a", 3], "temperatures": {"cpu": "hot"},
                                              "gpu_process_bytes": {"12": 5, "x": 1}}}])
def test_the_servers_json_is_never_trusted(data: dict[str, Any]) -> None:
    """Each event kind from JSON of the wrong shapes: the core's event with defaults, or None; no
    exception (it would end the console's event stream)."""
    from orin_console.tui.backend import convert

    kinds = ["ModelStateChanged", "TierUsageChanged", "LoadProgress", "TelemetrySample", "TelemetrySourceChanged",
             "ManagerError", "PlanChanged", "CatalogChanged", "GenerationStarted", "GenerationFinished", "Snapshot",
             "TokenGenerated", "Unknown"]
    for kind in kinds:
        event = convert.event(kind, data)
        assert event is None or type(event).__name__ == kind
    snapshot = convert.event("Snapshot", data)
    assert snapshot is not None
    status = getattr(snapshot, "status", None)
    if status is not None and status.models:
        (model,) = status.models
        assert model.state == ModelState.UNLOADED and model.tier == "disk" and model.pin is False
        assert model.notes == ("ok",)
    assert convert.decision(data).ok is False
    assert convert.result(data).finish_reason == "stop"
