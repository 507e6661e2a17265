"""``GET /events`` on a live loopback server: a snapshot first with ``?snapshot=1``, a load's
progress and state changes as they happen, ``?kinds=`` filtering (an unknown name is a 422),
and the stream ending with a ``ShuttingDown`` error event at shutdown. Also the JSON forms of
``api/serialize.py``."""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from orin_console.api.app import create_app
from orin_console.api.routes.events import KINDS_PATTERN, _parse_kinds, begin_shutdown
from orin_console.api.serialize import event_to_dict, result_to_dict
from orin_console.core import Core
from orin_console.core.engine.types import ParameterError
from orin_console.core.events.kinds import GenerationFinished, ManagerError, ModelStateChanged, TokenGenerated
from orin_console.core.manager.types import ModelState, ModelStatus
from orin_console.testing.managers import make_core
from orin_console.testing.waits import wait_until
from tests.test_api_generate import LiveServer


@pytest.fixture
def core(workdir: Path) -> Iterator[Core]:
    with make_core(workdir) as built:
        yield built


def read_events(http: httpx.Client, params: dict[str, str], until: str, out: list[tuple[str, dict[str, Any]]],
                ready: threading.Event) -> None:
    with http.stream("GET", "/events", params=params) as answer:
        assert answer.status_code == 200
        event = ""
        for line in answer.iter_lines():
            if line.startswith(": connected"):
                ready.set()
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
                if event == until:
                    return


def test_snapshot_then_a_load_as_it_happens_filtered(core: Core) -> None:
    with LiveServer(core) as base, httpx.Client(base_url=base, timeout=60) as http:
        frames: list[tuple[str, dict[str, Any]]] = []
        ready = threading.Event()
        reader = threading.Thread(target=read_events, daemon=True, args=(
            http, {"snapshot": "1", "kinds": "ModelStateChanged,LoadProgress,TierUsageChanged,ManagerError"},
            "ManagerError", frames, ready))
        reader.start()
        assert ready.wait(30)
        answer = http.post("/models/alpha/load", json={"tier": "swap"})
        assert answer.status_code == 202
        op_id = answer.json()["operation"]["id"]
        wait_until(lambda: http.get(f"/operations/{op_id}").json()["state"] == "done", timeout=60,
                   what="the load to finish")
        core.bus.publish(ManagerError(message="end of test \x1b[31m"))
        reader.join(30)
        kinds = [kind for kind, _ in frames]
        assert kinds[0] == "Snapshot", kinds
        snapshot = frames[0][1]
        assert [m["model_id"] for m in snapshot["status"]["models"]] == ["alpha", "beta"]
        assert snapshot["reason"] == "subscribed"
        states = [d["status"]["state"] for k, d in frames if k == "ModelStateChanged" and d["model_id"] == "alpha"]
        assert "loading" in states and states[-1] == "ready", states
        assert "TierUsageChanged" in kinds
        assert set(kinds) <= {"Snapshot", "ModelStateChanged", "LoadProgress", "TierUsageChanged", "ManagerError"}
        assert frames[-1][1]["message"] == "end of test \ufffd[31m"  # sanitised


def test_unknown_kinds_are_422(core: Core) -> None:
    api = TestClient(create_app(core), base_url="http://127.0.0.1:8000")
    answer = api.get("/events", params={"kinds": "ModelStateChanged,Nope"})
    assert answer.status_code == 422 and "kinds" in answer.json()["error"]["message"]
    assert api.get("/events", params={"kinds": "x" * 2000}).status_code == 422


_PIECES = [" ", ",", "\t", "\n", "\x85", "LoadProgress", "PlanChanged", "Load", "Nope", "Snapshot", "Event"]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=8).map("".join))
def test_the_documented_kinds_pattern_is_what_the_route_takes(kinds: str) -> None:
    # found by test_api_fuzz: `kinds` was documented as any string, so a 422 for an unknown name
    # was a schema-valid request refused; the pattern documents what _parse_kinds accepts
    try:
        _parse_kinds(kinds)
        taken = True
    except ParameterError:
        taken = False
    assert bool(re.search(KINDS_PATTERN, kinds)) == taken


def test_the_kinds_pattern_is_in_the_openapi_document(core: Core) -> None:
    api = TestClient(create_app(core), base_url="http://127.0.0.1:8000")
    parameters = api.get("/openapi.json").json()["paths"]["/events"]["get"]["parameters"]
    kinds = next(p for p in parameters if p["name"] == "kinds")
    assert kinds["schema"]["pattern"] == KINDS_PATTERN  # next to anyOf [string, null]: it constrains strings


def test_the_stream_ends_with_shutting_down(core: Core) -> None:
    server = LiveServer(core)
    with server as base, httpx.Client(base_url=base, timeout=30) as http:
        frames: list[tuple[str, dict[str, Any]]] = []
        ready = threading.Event()
        reader = threading.Thread(target=read_events, args=(http, {}, "error", frames, ready), daemon=True)
        reader.start()
        assert ready.wait(30)
        begin_shutdown(server.app)
        reader.join(10)
        assert not reader.is_alive()
        kind, data = frames[-1]
        assert kind == "error" and data["error"]["type"] == "ShuttingDown"
        assert "shutting down" in data["error"]["message"]


def test_serialize_forms() -> None:
    status = ModelStatus("a\u202e", ModelState.READY, "ram", notes=("note\x07",), progress=math.nan)
    kind, data = event_to_dict(ModelStateChanged(model_id="a", status=status))
    assert kind == "ModelStateChanged"
    assert data["status"]["state"] == "ready" and data["status"]["model_id"] == "a\ufffd"
    assert data["status"]["notes"] == ["note\ufffd"] and data["status"]["progress"] is None
    json.dumps(data, allow_nan=False)
    kind, data = event_to_dict(TokenGenerated(request_id="r", model_id="a", text="x\x1by"))
    assert data["text"] == "x\x1by"  # model output is data: JSON escapes it
    kind, data = event_to_dict(GenerationFinished(request_id="r", model_id="a", tokens=1, ttft_s=math.inf,
                                                  tok_per_s=None, finish_reason="stop"))
    assert data["ttft_s"] is None and "ts" in data

    class FakeResult:
        def to_dict(self) -> dict[str, Any]:
            return {"text": "raw\x1b", "model": "a", "notes": ["n\x1b"]}

    out = result_to_dict(FakeResult())
    assert out["text"] == "raw\x1b" and out["model_id"] == "a" and out["notes"] == ["n\ufffd"]
