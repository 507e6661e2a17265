"""What an attached console needs from ``/events`` and ``/system/status`` (issue 13 part 3):
every event kind the console shows serialises losslessly enough to rebuild the core's values;
``?snapshot=1`` carries the whole state a late console draws at once (status, catalog, usage,
budgets, telemetry with its history and source, the latest plan); a slow consumer gets the bus's
rules (progress and telemetry coalesced, state events all and in order); ``/system/status`` names
the telemetry source and, on a fallback, why and the fix.

The event stream is driven as a raw ASGI call whose ``send`` the test holds back, so "slow"
is deterministic: nothing is taken from the subscription while the client does not read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from orin_console.api.app import create_app
from orin_console.api.routes.events import EVENT_KINDS, begin_shutdown
from orin_console.api.serialize import event_to_dict
from orin_console.core import Core
from orin_console.core.events.bus import EventBus
from orin_console.core.events.kinds import (
    CatalogChanged,
    GenerationFinished,
    GenerationStarted,
    LoadProgress,
    ManagerError,
    ModelStateChanged,
    TelemetrySample,
    TelemetrySourceChanged,
    TierUsageChanged,
)
from orin_console.core.manager.types import ModelState, ModelStatus, TierUsage
from orin_console.core.telemetry import Sampler
from orin_console.core.telemetry.base import Sample
from orin_console.testing.managers import make_core
from orin_console.testing.telemetry_fakes import ScriptedSource, failed, unavailable

TUI_KINDS = ("ModelStateChanged", "TierUsageChanged", "LoadProgress", "TelemetrySample", "TelemetrySourceChanged",
             "ManagerError", "PlanChanged", "CatalogChanged", "GenerationStarted", "GenerationFinished")


def sampler_over(bus: EventBus, *sources: ScriptedSource) -> Sampler:
    return Sampler(list(sources), bus=bus, interval_s=3600.0)  # the first sample at start, no more


@pytest.fixture
def core(workdir: Path) -> Iterator[Core]:
    bus = EventBus()
    jtop = ScriptedSource("jtop", opens=[unavailable("jtop", "jtop.service is not running",
                                                     "sudo systemctl restart jtop")])
    sampler = sampler_over(bus, jtop, ScriptedSource("psutil", clock=time.monotonic))  # fresh samples
    with make_core(workdir, bus=bus, telemetry=sampler, optimiser=True) as built:
        yield built


# -- driving GET /events with a client that reads only when told ---------------------------------


def scope_for(query: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": "/events", "raw_path": b"/events", "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000")], "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000)}


def frames_of(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def drive_events(app: FastAPI, query: str, while_held: Callable[[], None], until: str,
                 marker: bytes | None = None) -> list[tuple[str, dict]]:
    """Open ``GET /events?<query>``; once connected, hold the client back (no byte is taken)
    while ``while_held`` runs, then read until an event of kind ``until`` (or the bytes ``marker``)
    and shut the stream."""
    done_at = marker if marker is not None else f"event: {until}\n".encode()

    async def main() -> bytes:
        received = bytearray()
        connected, release, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def receive() -> dict[str, Any]:
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] != "http.response.body":
                return
            received.extend(message.get("body", b""))
            if not connected.is_set() and b": connected" in received:
                connected.set()
                await release.wait()  # a client that does not read: the stream blocks here
            if done_at in received[-len(done_at) - 4096:]:
                done.set()

        task = asyncio.create_task(app(scope_for(query), receive, send))
        await asyncio.wait_for(connected.wait(), 30)
        await asyncio.to_thread(while_held)
        release.set()
        await asyncio.wait_for(done.wait(), 30)
        begin_shutdown(app)
        await asyncio.wait_for(task, 30)
        return bytes(received)

    return frames_of(asyncio.run(main()))


# -- the event kinds ----------------------------------------------------------------------------


def test_every_kind_the_console_shows_is_on_events() -> None:
    assert set(TUI_KINDS) <= set(EVENT_KINDS)


def test_state_events_rebuild_the_core_values() -> None:
    status = ModelStatus(model_id="alpha", state=ModelState.MOVING, tier="swap", target_tier="ram",
                         preferred_tier="ram", pin=True, resident="pinned", progress=0.25, pid=4242,
                         predicted_bytes=61_000_000, prediction="weights 50 MB + KV 11 MB", measured_bytes=59_000_000,
                         prediction_error=0.03, load_seconds=1.5, move_seconds_per_gb=2.0, error=None, busy=True,
                         queued=2, notes=("CPU only", "not pinned: RLIMIT_MEMLOCK"))
    kind, data = event_to_dict(ModelStateChanged(model_id="alpha", status=status, ts=5.0))
    assert kind == "ModelStateChanged" and data["ts"] == 5.0
    fields = dict(data["status"])
    rebuilt = ModelStatus(**{**fields, "state": ModelState(fields["state"]), "notes": tuple(fields["notes"])})
    assert rebuilt == status

    usage = TierUsage(tier="ram", budget=100, used=60, models=("alpha", "beta"), in_flight=("beta",))
    _, data = event_to_dict(TierUsageChanged(tiers=(usage,)))
    (tier,) = data["tiers"]
    assert TierUsage(tier=tier["tier"], budget=tier["budget_bytes"], used=tier["used_bytes"],
                     models=tuple(tier["models"]), in_flight=tuple(tier["in_flight"])) == usage
    assert tier["free_bytes"] == usage.free


def test_telemetry_and_the_other_kinds_keep_every_field() -> None:
    sample = Sample(source="nvml", mono=10.0, wall=1_700_000_000.0, mem_total=8 << 30, mem_used=3 << 30,
                    cpu_per_core=(12.5, None), temperatures={"gpu": 41.5}, power_rails_w={"VDD_IN": 5.2},
                    gpu_process_bytes={4242: 1 << 20}, gpu_load=float("nan"), notes=("fan unknown",))
    _, data = event_to_dict(TelemetrySample(sample=sample))
    got = data["sample"]
    for f in dataclasses.fields(Sample):
        if f.name in ("mono", "gpu_load", "cpu_per_core", "gpu_process_bytes", "notes"):
            continue
        want = getattr(sample, f.name)
        assert got[f.name] == (dict(want) if isinstance(want, dict) else want), f.name
    assert got["cpu_per_core"] == [12.5, None] and got["notes"] == ["fan unknown"]
    assert got["gpu_process_bytes"] == {"4242": 1 << 20} and got["gpu_load"] is None  # JSON has no NaN
    assert {"age_s", "stale", "stale_after_s"} <= set(got)

    for event, want in (
        (TelemetrySourceChanged(previous="jtop", current="psutil", reason="jtop stopped", fix="restart jtop"),
         {"previous": "jtop", "current": "psutil", "reason": "jtop stopped", "fix": "restart jtop"}),
        (ManagerError(message="catalog edit refused", model_id="alpha", kind="CatalogError"),
         {"message": "catalog edit refused", "model_id": "alpha", "kind": "CatalogError"}),
        (CatalogChanged(model_ids=("alpha", "beta")), {"model_ids": ["alpha", "beta"]}),
        (LoadProgress(model_id="alpha", tier="ram", fraction=0.5),
         {"model_id": "alpha", "tier": "ram", "fraction": 0.5}),
        (GenerationStarted(request_id="api-1", source="api", model_id="alpha", explanation="chat: auto"),
         {"request_id": "api-1", "source": "api", "model_id": "alpha", "explanation": "chat: auto"}),
        (GenerationFinished(request_id="api-1", model_id="alpha", tokens=7, ttft_s=0.1, tok_per_s=40.0,
                            finish_reason="stop", error=None),
         {"request_id": "api-1", "model_id": "alpha", "tokens": 7, "ttft_s": 0.1, "tok_per_s": 40.0,
          "finish_reason": "stop", "error": None}),
    ):
        kind, data = event_to_dict(event)
        assert kind == type(event).__name__
        assert {k: v for k, v in data.items() if k != "ts"} == want


# -- the snapshot and the status ----------------------------------------------------------------


def test_a_late_console_gets_everything_to_draw_at_once(core: Core) -> None:
    core.manager.load("alpha", "swap").result(60)
    core.manager.usage.record("alpha", tokens=3)
    core.optimiser.run_once()  # type: ignore[union-attr]
    frames = drive_events(create_app(core), "snapshot=1&kinds=ManagerError",
                          lambda: core.bus.publish(ManagerError(message="end")), until="ManagerError")
    kind, snap = frames[0]
    assert kind == "Snapshot" and snap["reason"] == "subscribed"
    models = {m["model_id"]: m for m in snap["status"]["models"]}
    assert models["alpha"]["state"] == "ready" and models["alpha"]["tier"] == "swap"
    assert {"pid", "predicted_bytes", "measured_bytes", "notes", "busy", "queued"} <= set(models["alpha"])
    assert [t["tier"] for t in snap["status"]["tiers"]] == ["ram", "swap"]
    assert [e["id"] for e in snap["catalog"]] == ["alpha", "beta"]
    assert {"path", "tasks", "tier", "context", "priority", "pin", "facts"} <= set(snap["catalog"][0])
    assert snap["catalog"][0]["facts"]["quantization"] == "F32" and snap["catalog"][0]["facts"]["file_size"] > 0
    assert snap["usage"]["alpha"]["requests"] == 1
    assert set(snap["budgets"]) == {"ram", "swap", "max_model", "reserve"}
    assert snap["telemetry"]["source"] == "psutil" and len(snap["telemetry_history"]) >= 1
    source = snap["telemetry_source"]
    assert source["active"] == "psutil" and source["preferred"] == "jtop" and source["fallback"] is True
    assert "jtop.service is not running" in source["note"] and "sudo systemctl restart jtop" in source["note"]
    assert snap["plan"]["placements"] == {"alpha": "ram", "beta": "disk"}  # alpha's catalog tier is ram
    assert snap["plan"]["moves"][0]["text"].startswith("promote alpha swap → ram: ")
    assert frames[-1] == ("ManagerError", {"message": "end", "model_id": None, "kind": None, "ts": frames[-1][1]["ts"]})


def test_system_status_names_the_telemetry_source_and_its_fallback(core: Core, workdir: Path) -> None:
    api = TestClient(create_app(core), base_url="http://127.0.0.1:8000")
    body = api.get("/system/status").json()
    assert body["models"]["total"] == 2 and body["telemetry"]["source"] == "psutil"
    source = body["telemetry_source"]
    assert source["active"] == "psutil" and source["fallback"] is True and source["stale"] is False
    assert source["note"] == "jtop: jtop.service is not running (fix: sudo systemctl restart jtop)"
    assert [(s["name"], s["state"]) for s in source["sources"]] == [("jtop", "retrying"), ("psutil", "active")]
    assert body["budgets"]["ram"] == body["tiers"][0]["budget_bytes"]


def test_no_fallback_note_when_the_preferred_source_works(workdir: Path) -> None:
    bus = EventBus()
    with make_core(workdir, bus=bus, telemetry=sampler_over(bus, ScriptedSource("jtop", clock=time.monotonic))) as core:
        source = TestClient(create_app(core), base_url="http://127.0.0.1:8000").get("/system/status").json()
    assert source["telemetry_source"]["active"] == "jtop"
    assert source["telemetry_source"]["fallback"] is False and source["telemetry_source"]["note"] == ""


def test_a_source_that_fails_while_running_is_named_with_its_fix(workdir: Path) -> None:
    bus = EventBus()
    jtop = ScriptedSource("jtop", reads=[None, failed("jtop", "the jtop socket closed", "restart jtop")])
    psutil = ScriptedSource("psutil", clock=time.monotonic)
    with make_core(workdir, bus=bus, telemetry=sampler_over(bus, jtop, psutil)) as core:
        assert core.sampler is not None
        core.sampler.sample_once()  # the second read fails: psutil answers in the same tick
        body = TestClient(create_app(core), base_url="http://127.0.0.1:8000").get("/system/status").json()
    assert body["telemetry"]["source"] == "psutil"
    assert body["telemetry_source"]["note"] == "jtop: the jtop socket closed (fix: restart jtop)"


def test_telemetry_off_is_said_not_hidden(workdir: Path) -> None:
    with make_core(workdir) as core:
        body = TestClient(create_app(core), base_url="http://127.0.0.1:8000").get("/system/status").json()
    assert body["telemetry"] is None
    assert body["telemetry_source"]["active"] is None and "telemetry is off" in body["telemetry_source"]["note"]


# -- a slow consumer ----------------------------------------------------------------------------


def test_a_slow_consumer_gets_progress_and_telemetry_coalesced_and_every_state_event(core: Core) -> None:
    status = core.manager.model_status("alpha")
    sample = core.sampler.latest()  # type: ignore[union-attr]
    assert sample is not None

    def burst() -> None:
        for i in range(500):
            core.bus.publish(LoadProgress(model_id="alpha", tier="ram", fraction=i / 500))
            core.bus.publish(TelemetrySample(sample=dataclasses.replace(sample, mem_used=i)))
            if i % 50 == 0:
                core.bus.publish(ModelStateChanged(model_id="alpha", status=dataclasses.replace(status, queued=i)))
        core.bus.publish(ManagerError(message="end"))

    frames = drive_events(create_app(core), "kinds=LoadProgress,TelemetrySample,ModelStateChanged,ManagerError",
                          burst, until="ManagerError")
    progress = [d["fraction"] for k, d in frames if k == "LoadProgress"]
    samples = [d["sample"]["mem_used"] for k, d in frames if k == "TelemetrySample"]
    states = [d["status"]["queued"] for k, d in frames if k == "ModelStateChanged"]
    assert states == list(range(0, 500, 50))  # state events: every one, in order
    assert 1 <= len(progress) < 50 and progress[-1] == 499 / 500  # latest wins
    assert 1 <= len(samples) < 50 and samples[-1] == 499
    assert progress == sorted(progress)
    assert frames[-1][0] == "ManagerError"


def test_a_consumer_that_falls_10000_events_behind_resyncs_from_a_full_snapshot(core: Core) -> None:
    from orin_console.core.events.bus import DEFAULT_MAXSIZE

    def flood() -> None:
        for i in range(DEFAULT_MAXSIZE + 50):
            core.bus.publish(ManagerError(message=f"flood {i}"))
        core.bus.publish(ManagerError(message="end"))

    frames = drive_events(create_app(core), "kinds=ManagerError", flood, until="ManagerError",
                          marker=b'data: {"message":"end",')
    kinds = [k for k, _ in frames]
    assert "Snapshot" in kinds, kinds[:5]
    snap = frames[kinds.index("Snapshot")][1]
    assert snap["reason"] == "overflowed" and snap["dropped"] > 0
    assert [e["id"] for e in snap["catalog"]] == ["alpha", "beta"] and snap["telemetry_source"]["active"] == "psutil"
    after = [d["message"] for k, d in frames[kinds.index("Snapshot") + 1:] if k == "ManagerError"]
    assert after[-1] == "end" and len(frames) < DEFAULT_MAXSIZE + 50  # bounded, and nothing after it was lost
    numbers = [int(m.split()[1]) for m in after[:-1]]
    assert numbers == sorted(numbers) and (not numbers or numbers[-1] == DEFAULT_MAXSIZE + 49)
