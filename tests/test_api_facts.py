"""The file facts of each catalog model in the API (issue 13's follow-up): ``facts`` on
ModelInfo (``GET /models/list``, ``GET /models/{id}``) and on each entry of the events'
``Snapshot`` catalog; read once per file, a hostile or invalid GGUF a ``problem`` (never a 500),
every text sanitised; documented in the OpenAPI schema (with the 507 of a full disk on an edit)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orin_console.api.app import create_app
from orin_console.api.facts import facts_cache
from orin_console.api.state import snapshot_extras
from orin_console.core import Core
from orin_console.testing.managers import make_core, settings_for

from gguf_craft import STRING, baseline, val

FACT_KEYS = {"file_size", "quantization", "architecture", "n_params", "context_length", "name", "problem"}


@pytest.fixture
def core(workdir: Path) -> Iterator[Core]:
    (workdir / "incoming").mkdir()
    with make_core(workdir, settings=settings_for(workdir, model_folders=[workdir / "incoming"])) as built:
        yield built


@pytest.fixture
def api(core: Core) -> TestClient:
    return TestClient(create_app(core), base_url="http://127.0.0.1:8000")


def _listed(api: TestClient) -> dict[str, dict[str, Any]]:
    answer = api.get("/models/list")
    assert answer.status_code == 200, answer.text
    return {m["id"]: m for m in answer.json()["models"]}


def test_every_model_carries_its_files_header_facts(api: TestClient, workdir: Path) -> None:
    alpha = _listed(api)["alpha"]["facts"]
    assert set(alpha) == FACT_KEYS
    assert alpha["file_size"] == os.path.getsize(workdir / "alpha.gguf")
    assert alpha["quantization"] == "F32" and alpha["architecture"] == "llama"
    assert alpha["n_params"] > 0 and alpha["context_length"] == 2048 and alpha["problem"] is None
    assert api.get("/models/alpha").json()["facts"] == alpha


def test_the_events_snapshot_carries_the_same_facts_per_catalog_entry(api: TestClient, core: Core) -> None:
    listed = _listed(api)
    catalog = {e["id"]: e for e in snapshot_extras(core)["catalog"]}
    assert catalog["alpha"]["facts"] == listed["alpha"]["facts"]
    assert catalog["beta"]["facts"] == listed["beta"]["facts"]


def test_each_header_is_read_once_until_the_file_changes(api: TestClient, core: Core, workdir: Path) -> None:
    _listed(api)
    cache = facts_cache(core)
    reads = cache.reads
    for _ in range(3):
        _listed(api)
        api.get("/models/beta")
    snapshot_extras(core)
    assert cache.reads == reads  # no header read again
    later = time.time() + 5
    os.utime(workdir / "beta.gguf", (later, later))  # a new file identity: read afresh
    _listed(api)
    assert cache.reads == reads + 1


def test_an_invalid_gguf_is_a_problem_not_a_500(api: TestClient, workdir: Path) -> None:
    (workdir / "beta.gguf").write_bytes(b"\x00" * 64)
    models = _listed(api)
    beta = models["beta"]["facts"]
    assert "magic" in beta["problem"] and "not a GGUF" in beta["problem"]
    assert all(beta[k] is None for k in FACT_KEYS - {"problem"})
    assert models["alpha"]["facts"]["problem"] is None
    (workdir / "alpha.gguf").unlink()
    gone = _listed(api)["alpha"]["facts"]
    assert gone["file_size"] is None and "cannot open" in gone["problem"]


def test_hostile_header_text_is_sanitised(api: TestClient, workdir: Path) -> None:
    craft = baseline()
    craft.set("general.name", val(STRING, "evil\x1b[2J\u202e[bold]name\x00"))
    (workdir / "alpha.gguf").write_bytes(craft.build())
    craft.set("general.architecture", val(STRING, "ll\x1b]0;owned\x07ama"))
    (workdir / "beta.gguf").write_bytes(craft.build())
    models = _listed(api)
    alpha, beta = models["alpha"]["facts"], models["beta"]["facts"]
    assert alpha["name"] == "evil\ufffd[2J\ufffd[bold]name\ufffd" and alpha["problem"] is not None  # context
    assert "architecture" in beta["problem"] and beta["architecture"] is None
    for text in (alpha["name"], beta["problem"]):
        assert not any(ord(c) < 32 or c in "\u202e\x7f" for c in text)


def test_a_context_above_the_trained_one_is_named_with_the_fix(make_workdir: Any) -> None:
    folder = make_workdir(TINY_ABOVE)
    with make_core(folder) as core:
        api = TestClient(create_app(core), base_url="http://127.0.0.1:8000")
        facts = _listed(api)["alpha"]["facts"]
    assert facts["quantization"] == "F32" and facts["context_length"] == 2048
    assert facts["problem"] == ("context 4096 is above the model's trained context 2048; "
                                "set context = 2048 or less")


TINY_ABOVE = """\
[[models]]
id = "alpha"
path = "alpha.gguf"
tasks = ["chat"]
context = 4096
"""


def test_the_openapi_schema_documents_the_facts_and_the_507(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    facts = schema["components"]["schemas"]["FileFacts"]
    assert set(facts["properties"]) >= FACT_KEYS and facts["examples"][0]["quantization"] == "Q4_K_M"
    info = schema["components"]["schemas"]["ModelInfo"]
    assert "facts" in info["properties"] and info["examples"][0]["facts"]["file_size"] > 0
    assert "507" in schema["paths"]["/models/add"]["post"]["responses"]
    assert "507" in schema["paths"]["/models/{model_id}/pin"]["post"]["responses"]
