"""Adding a model as a dry run (``POST /models/add`` with ``"dry_run": true``, the SDK's
``models.add(path, dry_run=True)``, ``Manager.preview_add``): the entry that would be written,
the refused files with the reason, admission's verdict per tier; the catalog is never written."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from orin_console.api.app import create_app
from orin_console.client import AddPreview, OrinClient, ValidationError
from orin_console.core import Core
from orin_console.core.memory.admission import Budgets
from orin_console.testing.managers import make_core, settings_for


@pytest.fixture
def incoming(workdir: Path) -> Path:
    folder = workdir / "incoming"
    folder.mkdir()
    shutil.copyfile(workdir / "alpha.gguf", folder / "gamma.gguf")
    (folder / "broken.gguf").write_bytes(b"GGUF" + b"\x00" * 12)
    return folder


@pytest.fixture
def core(workdir: Path, incoming: Path) -> Iterator[Core]:
    settings = settings_for(workdir, model_folders=[incoming])
    budgets = Budgets(ram=1 << 20, swap=8 << 30, max_model=7 << 30, reserve=0)  # nothing fits in RAM
    with make_core(workdir, settings=settings, budgets=budgets) as built:
        yield built


@pytest.fixture
def api(core: Core) -> TestClient:
    return TestClient(create_app(core), base_url="http://127.0.0.1:8000")


def test_a_dry_run_says_what_would_be_added_and_writes_nothing(api: TestClient, workdir: Path,
                                                               incoming: Path) -> None:
    before = (workdir / "models.toml").read_bytes()
    answer = api.post("/models/add", json={"path": str(incoming / "gamma.gguf"), "tier": "ram", "dry_run": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["dry_run"] is True and body["addable"] is True and body["refused"] == []
    (entry,) = body["entries"]
    assert entry["id"] == "gamma" and entry["tier"] == "ram" and entry["tasks"] == ["chat"]
    assert entry["load_tier"] == "ram" and entry["file"].endswith("gamma.gguf")
    assert entry["header"]["architecture"] == "llama" and entry["header"]["chat_template"] is True
    assert entry["prediction"]["tier"] == "ram" and entry["prediction"]["total_bytes"] > 0
    assert set(entry["admission"]) == {"ram", "swap"}
    assert entry["fits"] == {"ram": False, "swap": True}
    assert entry["admission"]["ram"]["reasons"] and entry["admission"]["swap"]["ok"] is True
    assert (workdir / "models.toml").read_bytes() == before
    assert [m["id"] for m in api.get("/models/list").json()["models"]] == ["alpha", "beta"]


def test_a_dry_run_lists_refused_files_and_refuses_what_the_add_refuses(api: TestClient, workdir: Path,
                                                                       incoming: Path) -> None:
    before = (workdir / "models.toml").read_bytes()
    broken = api.post("/models/add", json={"path": str(incoming / "broken.gguf"), "dry_run": True})
    assert broken.status_code == 200, broken.text
    body = broken.json()
    assert body["addable"] is False and body["entries"] == []
    (refused,) = body["refused"]
    assert refused["path"].endswith("broken.gguf") and refused["reason"]
    taken = api.post("/models/add", json={"path": str(incoming / "gamma.gguf"), "id": "alpha", "dry_run": True})
    assert taken.status_code == 422 and taken.json()["error"]["type"] == "IdTaken"
    assert taken.json()["error"]["field"] == "id"
    outside = api.post("/models/add", json={"path": str(workdir / "beta.gguf"), "dry_run": True})
    assert outside.status_code == 403
    assert api.post("/models/add", json={"path": str(incoming / "gamma.gguf"), "dry_run": 1}).status_code == 422
    assert (workdir / "models.toml").read_bytes() == before


def test_the_real_add_refuses_a_taken_id_with_422_not_404(api: TestClient, incoming: Path) -> None:
    answer = api.post("/models/add", json={"path": str(incoming / "gamma.gguf"), "id": "beta"})
    assert answer.status_code == 422 and answer.json()["error"]["type"] == "IdTaken"


def test_manager_preview_add_gives_the_tui_a_verdict_per_tier(core: Core, incoming: Path, workdir: Path) -> None:
    verdict = core.manager.preview_add(incoming)
    assert verdict.error is None and verdict.addable
    assert [item.entry.id for item in verdict.accepted] == ["gamma"]
    assert [r.path.name for r in verdict.refused] == ["broken.gguf"]
    item = verdict.accepted[0]
    assert set(item.decisions) == {"ram", "swap"} and item.decision is item.decisions["swap"]
    assert item.prediction is not None and item.prediction.tier == "swap"
    assert core.manager.preview_add(workdir / "nowhere").error is not None
    assert [e.id for e in core.manager.catalog] == ["alpha", "beta"]


def test_the_sdk_previews_with_dry_run(core: Core, incoming: Path) -> None:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=create_app(core))
        async with OrinClient("http://127.0.0.1:8000", transport=transport) as client:
            preview = await client.models.add(str(incoming / "gamma.gguf"), dry_run=True)
            with pytest.raises(ValidationError, match="already in the catalog"):
                await client.models.add(str(incoming / "gamma.gguf"), id="alpha", dry_run=True)
            return preview

    preview = asyncio.run(main())
    assert isinstance(preview, AddPreview) and preview.addable
    (entry,) = preview.entries
    assert entry.id == "gamma" and entry.load_tier == "swap" and entry.fits["swap"] is True
    assert entry.admission["ram"].ok is False and entry.admission["ram"].reasons
    assert [e.id for e in core.manager.catalog] == ["alpha", "beta"]
