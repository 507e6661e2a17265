"""Context bounds on every face: a hand-edited catalog context above the model's trained one
is refused at load (the catalog parser reads no model files, so ``models add`` alone caught
it), and a prompt far beyond the model's context is a ``PromptTooLong`` (413 on the seed
routes, OpenAI's 400 ``context_length_exceeded`` on ``/v1``). Tiny generated models: ``alpha``
trained with 512 tokens, ``wide`` the same file under a second name with ``context = 4096``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hostile_support import cli

from orin_console.api.app import create_app
from orin_console.core import Core
from orin_console.core.manager.types import ContextAboveTrained, ModelState
from orin_console.testing.managers import make_core
from orin_console.testing.tiny_models import write_tiny_llama
from orin_console.tui.app import build_app
from orin_console.tui.widgets.catalog import CatalogTable
from orin_console.tui.widgets.log import LogPane

from tui_support import settle

TRAINED = 512
CATALOG = f"""\
[[models]]
id = "alpha"
path = "alpha.gguf"
tasks = ["chat"]
tier = "swap"
context = {TRAINED}

# a hand edit: above the trained context (models add would refuse it)
[[models]]
id = "wide"
path = "wide.gguf"
tasks = ["code"]
tier = "swap"
context = 4096
"""
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("context")
    write_tiny_llama(work / "alpha.gguf", n_ctx=TRAINED, ascii_output=True)
    os.symlink("alpha.gguf", work / "wide.gguf")  # a second name for the same weights
    (work / "models.toml").write_text(CATALOG)
    return work


@pytest.fixture(scope="module")
def core(folder: Path) -> Iterator[Core]:
    with make_core(folder) as built:
        yield built


@pytest.fixture(scope="module")
def api(core: Core) -> TestClient:
    return TestClient(create_app(core), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


def assert_context_message(message: str) -> None:
    """The refusal names the entry, both contexts and the fix."""
    for words in ("`wide`", "context 4096", f"trained context {TRAINED}", "wide.gguf",
                  f"set context = {TRAINED} or less", "models.toml"):
        assert words in message, (words, message)


def error_of(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text
    error: dict[str, Any] = answer.json()["error"]
    return error


# -- a context above the trained one ------------------------------------------------------------


def test_the_catalog_still_loads_and_the_load_is_refused_naming_entry_contexts_and_fix(core: Core) -> None:
    manager = core.manager
    assert [entry.id for entry in manager.catalog] == ["alpha", "wide"]  # the parser reads no GGUF
    with pytest.raises(ContextAboveTrained) as info:
        manager.load("wide").result(timeout=30)
    exc = info.value
    assert (exc.model_id, exc.context, exc.trained) == ("wide", 4096, TRAINED)
    assert_context_message(str(exc))
    status = manager.model_status("wide")
    assert status.state != ModelState.READY and status.pid is None  # no runner was started
    assert status.error is not None
    assert_context_message(status.error)
    with pytest.raises(ContextAboveTrained):
        manager.plan("wide")  # the dry run says the same (the console's load asks it first)


def test_the_api_answers_the_load_with_a_422_that_names_the_fix(api: TestClient) -> None:
    error = error_of(api.post("/models/wide/load", json={}), 422)
    assert error["type"] == "ContextAboveTrained"
    assert_context_message(error["message"])
    error = error_of(api.post("/quick/generate", json={"prompt": "hi", "model": "wide", "max_tokens": 2}), 422)
    assert_context_message(error["message"])


def test_the_openai_routes_answer_a_400_in_their_shape(api: TestClient) -> None:
    body = {"model": "wide", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    error = error_of(api.post("/v1/chat/completions", json=body), 400)
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "context_above_trained" and error["type"] == "invalid_request_error"
    assert_context_message(error["message"])


def test_run_names_the_entry_and_the_fix(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "--catalog", str(folder / "models.toml"), "run", "hi", "--model", "wide",
                 "--max-tokens", "2")
    assert result.code == 2 and result.out == ""  # the catalog is bad input: status 2
    last = result.err.splitlines()[-1]  # after "loading wide into swap…"
    assert last.startswith("orin-console: error: ") and "Traceback" not in result.err, result.err
    assert_context_message(last)
    only_wide = folder / "only-wide.toml"
    only_wide.write_text(CATALOG[CATALOG.index("# a hand edit"):])
    result = cli(capsys, "--catalog", str(only_wide), "run", "hi", "--max-tokens", "2")  # auto: not admissible
    assert result.code == 2 and "context is above its trained one" in result.err and "models list" in result.err


def test_the_other_entry_of_the_same_file_still_serves(api: TestClient) -> None:
    answer = api.post("/quick/generate", json={"prompt": "hi", "model": "alpha", "max_tokens": 2})
    assert answer.status_code == 200, answer.text[:300]


# -- a prompt far beyond the context --------------------------------------------------------------

TOO_LONG = "a" * (TRAINED * 32 + 1)


@pytest.mark.parametrize(("path", "body"), [
    ("/quick/generate", {"prompt": TOO_LONG, "model": "alpha"}),
    ("/generate", {"prompt": TOO_LONG, "model": "alpha"}),
    ("/chat", {"messages": [{"role": "user", "content": TOO_LONG}], "mode": "manual", "model": "alpha"}),
])
def test_a_prompt_far_beyond_the_context_is_a_413_naming_sizes_and_fix(api: TestClient, core: Core, path: str,
                                                                        body: dict[str, Any]) -> None:
    error = error_of(api.post(path, json=body), 413)
    assert error["type"] == "PromptTooLong"
    for words in (f"the prompt is {len(TOO_LONG)} bytes", f"context of {TRAINED} tokens",
                  f"at most about {TRAINED * 32} bytes", "shorten it", "larger context"):
        assert words in error["message"], (words, error["message"])


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "alpha", "messages": [{"role": "user", "content": TOO_LONG}]}),
    ("/v1/completions", {"model": "alpha", "prompt": TOO_LONG}),
])
def test_openai_clients_get_context_length_exceeded(api: TestClient, path: str, body: dict[str, Any]) -> None:
    error = error_of(api.post(path, json=body), 400)
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert f"the prompt is {len(TOO_LONG)} bytes" in error["message"]


def test_the_sdk_raises_prompt_too_long_and_a_validation_error_for_the_context(core: Core) -> None:
    from orin_console.client import OrinClient, PromptTooLongError, ValidationError

    async def ask() -> tuple[BaseException, BaseException]:
        transport = httpx.ASGITransport(app=create_app(core))
        async with OrinClient("http://127.0.0.1:8000", transport=transport) as client:
            with pytest.raises(PromptTooLongError) as long:
                await client.inference.generate(TOO_LONG, model="alpha")
            with pytest.raises(ValidationError) as wide:
                await client.models.load("wide", wait=True)
        return long.value, wide.value

    long, wide = asyncio.run(ask())
    assert isinstance(long, ValidationError) and long.status == 413 and long.type == "PromptTooLong"
    assert "shorten it" in long.message
    assert not isinstance(wide, PromptTooLongError) and wide.type == "ContextAboveTrained"
    assert_context_message(wide.message)


def test_the_console_shows_the_refusal_in_its_log(tmp_path: Path) -> None:
    """``l`` on the hand-edited entry: the log and a notification carry the whole reason."""
    write_tiny_llama(tmp_path / "alpha.gguf", n_ctx=TRAINED, ascii_output=True)
    os.symlink("alpha.gguf", tmp_path / "wide.gguf")
    (tmp_path / "models.toml").write_text(CATALOG)
    core = make_core(tmp_path)
    core.start()
    app = build_app(core, settings=core.settings, clock=lambda: 1_700_000_000.0)

    def refusal() -> str | None:
        return next((text for level, text in app.query_one(LogPane).history
                     if level == "error" and "wide" in text), None)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, lambda: app.status is not None, what="the first status")
            await pilot.press("down")
            assert app.query_one(CatalogTable).selected_model_id == "wide"
            await pilot.press("l")
            await settle(pilot, lambda: refusal() is not None, what="the refusal in the log")
            assert app._notifications
            shown.append(refusal() or "")

    shown: list[str] = []
    try:
        asyncio.run(main())
    finally:
        core.close()
    assert len(shown) == 1
    assert_context_message(shown[0])
    assert core.manager.model_status("wide").state != ModelState.READY
