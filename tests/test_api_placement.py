"""The placement plan over the API and the SDK (in process): ``GET /placement/plan`` shows the
plan the console shows (moves with their one-line text, placements, use and budgets, where each
model is now); ``POST /placement/apply`` applies every move or the ones named and reports each
outcome; ``PlanChanged`` on ``/events`` carries the same moves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from orin_console.api.app import create_app
from orin_console.api.serialize import event_to_dict
from orin_console.client import ApplyResult, OrinClient, PlacementPlan, ValidationError
from orin_console.core import Core
from orin_console.core.events.kinds import PlanChanged
from orin_console.core.placement.current import current_plan
from orin_console.testing.managers import make_core


@pytest.fixture
def core(workdir: Path) -> Iterator[Core]:
    with make_core(workdir, optimiser=True) as built:
        yield built


@pytest.fixture
def api(core: Core) -> TestClient:
    return TestClient(create_app(core), base_url="http://127.0.0.1:8000")


def sdk(core: Core, call: Any) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=create_app(core))
        async with OrinClient("http://127.0.0.1:8000", transport=transport) as client:
            return await call(client)

    return asyncio.run(main())


def test_an_idle_catalog_plans_nothing(api: TestClient) -> None:
    plan = api.get("/placement/plan").json()
    assert plan["moves"] == []
    assert plan["placements"] == {"alpha": "disk", "beta": "disk"}
    assert plan["current"] == {"alpha": "disk", "beta": "disk"}
    assert set(plan["budgets"]) == {"ram", "swap"} and plan["used"] == {"ram": 0, "swap": 0}
    assert plan["fits"] == {"ram": True, "swap": True}
    assert "needed to be loaded" in plan["reasons"]["alpha"] and plan["policy"] and plan["explanation"]
    applied = api.post("/placement/apply").json()
    assert applied["outcomes"] == [] and applied["done"] == applied["total"] == 0


def test_an_unused_loaded_model_is_planned_out_and_applying_unloads_it(core: Core, api: TestClient) -> None:
    core.manager.load("alpha", "swap").result(60)
    plan = api.get("/placement/plan").json()
    assert plan["current"]["alpha"] == "swap"
    (move,) = plan["moves"]
    assert move["model_id"] == "alpha" and move["kind"] == "unload"
    assert (move["from_tier"], move["to_tier"]) == ("swap", "disk")
    assert move["text"].startswith("unload alpha swap → disk: ") and move["reason"] in move["text"]

    refused = api.post("/placement/apply", json={"model_ids": ["beta"]})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["type"] == "NoSuchMove" and error["field"] == "model_ids"
    assert "'beta'" in error["message"] and "'alpha'" in error["message"]
    assert core.manager.model_status("alpha").tier == "swap"  # nothing was applied

    answer = api.post("/placement/apply", json={"model_ids": ["alpha"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (outcome,) = body["outcomes"]
    assert outcome["status"] == "done" and outcome["ok"] is True and body["done"] == body["total"] == 1
    assert outcome["outcome"].startswith("unload alpha swap → disk: done")
    assert [m["model_id"] for m in body["plan"]["moves"]] == ["alpha"]
    assert core.manager.model_status("alpha").state.value == "unloaded"


def test_a_used_model_is_planned_in_and_the_sdk_applies_it(core: Core) -> None:
    for _ in range(3):
        core.manager.usage.record("beta", tokens=5)

    async def call(client: OrinClient) -> tuple[PlacementPlan, ApplyResult]:
        return await client.placement.plan(), await client.placement.apply(timeout=120)

    plan, result = sdk(core, call)
    assert isinstance(plan, PlacementPlan)
    (move,) = plan.moves
    assert (move.model_id, move.kind, move.from_tier, move.to_tier) == ("beta", "load", "disk", "swap")
    assert move.text == move["text"] and move.text.startswith("load beta disk → swap: ")
    assert plan.placements["beta"] == "swap" and plan.used["swap"] > 0 and plan.budgets["swap"] > 0
    assert plan.current == {"alpha": "disk", "beta": "disk"}
    (outcome,) = result.outcomes
    assert outcome.ok and outcome.status == "done" and result.done == result.total == 1
    assert core.manager.model_status("beta").tier == "swap"


def test_the_sdk_checks_model_ids_before_sending(core: Core) -> None:
    async def call(client: OrinClient, value: Any) -> Any:
        return await client.placement.apply(model_ids=value)

    for value, kind in (("alpha", TypeError), ([1], TypeError), ([], ValueError), (["../x"], ValueError),
                        (["a\x00b"], ValueError), (["x" * 65], ValueError), (7, TypeError)):
        with pytest.raises(kind, match="model_ids"):
            sdk(core, lambda client, v=value: call(client, v))

    async def unknown(client: OrinClient) -> Any:
        return await client.placement.apply(model_ids=["nope"])

    with pytest.raises(ValidationError, match="no move for 'nope'"):
        sdk(core, unknown)


@pytest.mark.parametrize("body", [{"model_ids": []}, {"model_ids": "alpha"}, {"model_ids": ["../x"]},
                                  {"model_ids": ["alpha"], "all": True}, {"model_ids": [None]}])
def test_a_bad_apply_body_is_422_naming_the_field(api: TestClient, body: dict[str, Any]) -> None:
    answer = api.post("/placement/apply", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["type"] == "ValidationError"


def test_plan_changed_events_carry_each_moves_text(core: Core) -> None:
    core.manager.load("alpha", "swap").result(60)
    plan, _ = current_plan(core)
    kind, data = event_to_dict(PlanChanged(plan=plan))
    assert kind == "PlanChanged"
    (move,) = data["plan"]["moves"]
    assert move == {"model_id": "alpha", "kind": "unload", "from_tier": "swap", "to_tier": "disk",
                    "reason": plan.moves[0].reason, "text": plan.moves[0].describe()}
    assert data["plan"]["placements"] == {"alpha": "disk", "beta": "disk"}
    assert set(data["plan"]) >= {"placements", "reasons", "moves", "used", "budgets", "fits", "created"}
