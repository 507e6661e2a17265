"""Schemathesis over the API's own ``/openapi.json``: every operation, in process (ASGI), on a
core over two tiny generated models.

Checks on every answer: no 5xx, the status is one the operation documents, the body matches the
schema documented for that status, the content type is a documented one, and every error answer
is in its documented shape (the seed routes' ``{"error": {"type", "message", ...}}``, OpenAI's
``{"error": {"message", "type", "param", "code"}}`` under ``/v1``).

Deterministic and quick: a fixed seed, a few examples per operation, and ``max_tokens`` kept
small where the generator picked a large valid one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response

from orin_console.api.app import create_app
from orin_console.core import Core
from orin_console.core.engine.types import MAX_TOKENS_LIMIT
from orin_console.testing.managers import make_core, settings_for
from orin_console.testing.tiny_models import write_tiny_llama

N_CTX = 512
SMALL_MAX_TOKENS = 8
"""A ``max_tokens`` above this (up to the document's bound) is cut to this: a generation costs
time, not coverage; and the bound that depends on the model (at most its context, a 422
``ParameterError``; test_api_generate checks it) cannot be in the document."""
DEFAULT_MAX_TOKENS = 4
"""Given where a generation body leaves ``max_tokens`` out (the engine's default is 256)."""

CATALOG = f"""\
[[models]]
id = "alpha"
path = "alpha.gguf"
tasks = ["chat"]
tier = "ram"
context = {N_CTX}

[[models]]
id = "beta"
path = "beta.gguf"
tasks = ["code"]
tier = "swap"
context = {N_CTX}
"""

GENERATION_PATHS = frozenset({"/quick/generate", "/generate", "/chat", "/batch", "/v1/chat/completions",
                              "/v1/completions"})
EVENTS_TIMEOUT_S = 1.0
"""``GET /events`` never ends by itself: the transport keeps what it sent in this long."""

NEGATIVE_REJECTED = ["400", "401", "403", "404", "406", "413", "422"]
"""schemathesis' default plus 413: a body over the server's 1 MB bound is refused before it is
validated (documented: `BodyTooLarge`)."""

OPENAI_GENERATION = ["/v1/chat/completions", "/v1/completions"]
OPENAI_POSITIVE = ["2xx", "400", "404", "409", "429"]
"""The OpenAI-compatible generation routes take OpenAI's whole request body (so an `openai` client's
body always validates) and refuse, with a 400 naming `param`, what this server does not do (`n`
other than 1, penalties, tools, `best_of`, ...) or what is out of the engine's ranges
(`max_tokens` 0): documented in docs/api_openai.md. So a schema-valid body may be a 400 there;
error_shape still checks it is OpenAI's."""

ADD_POSITIVE = ["2xx", "403", "404", "409", "422"]
"""A schema-valid `/models/add` body names a file that must exist, be a regular `.gguf` inside a
model folder and be a valid GGUF: facts about the disk no document can state; the 403 and the
422s (`InvalidPath`, `NotARegularFile`, `NotGGUF`, `ModelRefused`) are documented with their types."""

APPLY_POSITIVE = ["2xx", "409", "422"]
"""A schema-valid `/placement/apply` body may name models that have no move in the plan now (a fact
about the models' usage and residency at that moment): 422 `NoSuchMove`, documented; 409 while
another apply runs."""

SEED_GENERATION = ["/quick/generate", "/generate", "/chat"]
SEED_POSITIVE = ["2xx", "404", "409", "413", "422", "429"]
"""A schema-valid prompt (or 256 messages) may not fit the chosen model's context with its
``max_tokens``: a 422 ``RunnerInputError`` (``ParameterError`` for ``max_tokens`` alone), or a 413
``PromptTooLong`` for one over 32 bytes per context token, that depends on the model, so no
document can state it. (``/batch`` reports it per item, in a 200.)"""

CONFIG = {
    "seed": 20260105,
    "generation": {"max-examples": 4, "deterministic": True, "database": "none"},
    # a generation makes an example slow, and the bounded bodies make hypothesis filter: its
    # health checks would stop the run for that, not for anything the API did
    "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    "checks": {"negative_data_rejection": {"expected-statuses": NEGATIVE_REJECTED}},
    "operations": [
        *({"include-path": path, "checks": {"positive_data_acceptance": {"expected-statuses": OPENAI_POSITIVE}}}
          for path in OPENAI_GENERATION),
        {"include-path": "/models/add", "checks": {"positive_data_acceptance": {"expected-statuses": ADD_POSITIVE}}},
        {"include-path": "/placement/apply",
         "checks": {"positive_data_acceptance": {"expected-statuses": APPLY_POSITIVE}}},
        *({"include-path": path, "checks": {"positive_data_acceptance": {"expected-statuses": SEED_POSITIVE}}}
          for path in SEED_GENERATION),
    ],
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("api-fuzz")
    write_tiny_llama(work / "alpha.gguf", n_ctx=N_CTX, ascii_output=True)
    write_tiny_llama(work / "beta.gguf", seed=7, n_ctx=N_CTX, ascii_output=True)
    (work / "models.toml").write_text(CATALOG)
    return work


@pytest.fixture(scope="module")
def core(folder: Path) -> Iterator[Core]:
    settings = settings_for(folder, model_folders=[folder])
    with make_core(folder, settings=settings) as built:
        yield built


@pytest.fixture(scope="module")
def api_schema(core: Core) -> Any:
    # schemathesis' ASGI client sends `Host: testserver`, a name the app must be told to serve
    app = create_app(core, allowed_hosts=["testserver"])
    return schemathesis.openapi.from_asgi("/openapi.json", app,
                                          config=schemathesis.Config.from_dict(CONFIG))


schema = schemathesis.pytest.from_fixture("api_schema")


def _small_tokens(case: Case) -> None:
    body = case.body
    if case.path not in GENERATION_PATHS or not isinstance(body, dict):
        return
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if type(value) is int and SMALL_MAX_TOKENS < value <= MAX_TOKENS_LIMIT:
            body[name] = SMALL_MAX_TOKENS
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = DEFAULT_MAX_TOKENS


def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every error answer is in its routes' documented shape."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not an error shape: {body!r}"
    error = body["error"]
    if case.path.startswith("/v1/"):
        assert set(error) == {"message", "type", "param", "code"}, f"not OpenAI's error shape: {error!r}"
        assert isinstance(error["message"], str) and isinstance(error["type"], str)
    else:
        assert isinstance(error.get("type"), str) and isinstance(error.get("message"), str), error
    return True


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case: Case) -> None:
    _small_tokens(case)
    timeout = EVENTS_TIMEOUT_S if case.path == "/events" else 60
    case.call_and_validate(timeout=timeout, additional_checks=[error_shape])
