"""The OpenAI-compatible routes, driven by the official ``openai`` package over a live server
on loopback (real manager, conftest's tiny pair: alpha chat/ram, beta code/swap; greedy
generations are deterministic and run to ``max_tokens``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from openai.types.chat import ChatCompletionMessageParam

from orin_console.api.app import create_app
from orin_console.api.routes.openai import header_text
from orin_console.core import Core
from orin_console.testing.managers import make_core
from orin_console.testing.waits import wait_until

from api_live import live_server

TOKEN = "oai-test-token"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello! How are you today?"}]
SLOW_TOKENS = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.05"}
GENEROUS_S = 1.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, tiny_pair: Path) -> Path:
    from conftest import TINY_CATALOG

    work = tmp_path_factory.mktemp("api-openai")
    for name in ("alpha.gguf", "beta.gguf"):
        (work / name).write_bytes((tiny_pair / name).read_bytes())
    (work / "models.toml").write_text(TINY_CATALOG)
    return work


@pytest.fixture(scope="module")
def core(folder: Path) -> Iterator[Core]:
    with make_core(folder) as built:
        yield built


@pytest.fixture(scope="module")
def base_url(core: Core) -> Iterator[str]:
    with live_server(core) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=60)


def _free(core: Core, model_id: str) -> bool:
    status = core.manager.model_status(model_id)
    return not status.busy and status.queued == 0


# -- the happy paths ---------------------------------------------------------------------------------


def test_models_lists_the_catalog_and_auto(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["auto", "alpha", "beta"]
    assert all(m.object == "model" and m.owned_by == "orin-console" for m in models.data)
    assert client.models.retrieve("beta").id == "beta"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_chat_names_the_model_that_answered_with_usage_and_the_selection_header(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="alpha", messages=HELLO, max_tokens=12,
                                                             temperature=0)
    answer = raw.parse()
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == "alpha"
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"  # the tiny models never stop by themselves
    assert answer.usage is not None and answer.usage.completion_tokens == 12
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 12
    selection = raw.headers["x-orin-selection"]
    assert selection.startswith("alpha") and "manual" in selection and selection.isascii()
    assert raw.headers["x-orin-request-id"].startswith("oai-")


def test_auto_picks_by_task_and_says_so(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(model="auto", prompt="def add(a, b):\n    return",
                                                      max_tokens=6, temperature=0)
    answer = raw.parse()
    assert answer.object == "text_completion" and answer.model == "beta"  # the code model
    assert answer.choices[0].finish_reason == "length" and answer.choices[0].text
    assert "auto" in raw.headers["x-orin-selection"] and "code" in raw.headers["x-orin-selection"]
    chat = client.chat.completions.create(model="auto", messages=HELLO, max_tokens=4, temperature=0)
    assert chat.model == "alpha"  # the chat model


def test_streamed_chat_is_the_same_text_as_the_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="alpha", messages=HELLO, max_tokens=16, temperature=0)
    stream = client.chat.completions.create(model="alpha", messages=HELLO, max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert {c.model for c in chunks} == {"alpha"} and len({c.id for c in chunks}) == 1
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 16


def test_streamed_completion_on_the_wire_is_openais(base_url: str) -> None:
    body = {"model": "beta", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-orin-selection"].startswith("beta")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" and c["model"] == "beta" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert "".join(c["choices"][0]["text"] for c in chunks)


def test_stop_ends_the_answer_before_the_stop_string(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="alpha", prompt="hello", max_tokens=24, temperature=0)
    text = whole.choices[0].text
    cut = len(text) // 2
    stop = text[cut:cut + 2]
    first = text.find(stop)
    stopped = client.completions.create(model="alpha", prompt="hello", max_tokens=24, temperature=0,
                                        stop=[stop, "\u00a7never"])
    print(f"whole {text!r}, stop {stop!r} -> {stopped.choices[0].text!r}")
    assert stopped.choices[0].text == text[:first]
    assert stopped.choices[0].finish_reason == "stop"


def test_seed_and_top_p_and_max_completion_tokens_are_taken(client: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": "alpha", "messages": HELLO, "temperature": 1.0, "top_p": 0.9, "seed": 42,
                            "max_completion_tokens": 10, "n": 1, "user": "someone", "presence_penalty": 0}
    one = client.chat.completions.create(**args)
    two = client.chat.completions.create(**args)
    assert one.usage is not None and one.usage.completion_tokens == 10
    assert one.choices[0].message.content == two.choices[0].message.content  # same seed, same text


# -- errors in OpenAI's shape --------------------------------------------------------------------------


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}, body
    return body


@pytest.mark.parametrize(("changes", "param"), [
    ({"n": 2}, "n"),
    ({"temperature": 5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "5"}, "max_tokens"),
    ({"max_completion_tokens": 999_999}, "max_completion_tokens"),
    ({"seed": -1}, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stream": "yes"}, "stream"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content"),
    ({"messages": []}, "messages"),
    ({"frequency_penalty": 1.5}, "frequency_penalty"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"temperature": True}, "temperature"),
])
def test_a_bad_parameter_is_a_400_naming_it(client: openai.OpenAI, changes: dict[str, Any], param: str) -> None:
    args: dict[str, Any] = {"model": "alpha", "messages": HELLO, "max_tokens": 4}
    extra = {k: v for k, v in changes.items() if k in ("messages",)}
    args.update(extra)
    if "max_completion_tokens" in changes:
        del args["max_tokens"]
    body = {k: v for k, v in changes.items() if k not in extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**args, extra_body=body)
    error = _error(caught.value)
    assert caught.value.status_code == 400
    assert error["param"] == param and error["type"] == "invalid_request_error", error


@pytest.mark.parametrize(("changes", "param"), [
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
    ({"stop": ["\ud800"]}, "stop[0]"),
])
def test_a_lone_surrogate_is_a_400_naming_where(base_url: str, changes: dict[str, Any], param: str) -> None:
    body = json.dumps({"model": "alpha", "messages": HELLO, "max_tokens": 2, **changes})  # escaped: \ud800
    answer = httpx.post(f"{base_url}/v1/chat/completions", content=body,
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param, answer.text


def test_an_unknown_field_and_an_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="alpha", prompt="hi", extra_body={"frobnicate": 1})
    assert _error(caught.value)["param"] == "frobnicate"
    assert "Unrecognized request argument" in _error(caught.value)["message"]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    error = _error(missing.value)
    assert error["code"] == "model_not_found" and error["param"] == "model" and "alpha" in error["message"]


def test_malformed_bodies_are_400s_in_openais_shape(base_url: str) -> None:
    for content in (b"{not json", b"[]", b"null", b'{"model": "alpha"}', b'{"model": 5, "prompt": "x"}'):
        answer = httpx.post(f"{base_url}/v1/completions", content=content,
                            headers={"Content-Type": "application/json"}, timeout=30)
        assert answer.status_code == 400, (content, answer.text)
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert httpx.post(f"{base_url}/v1/completions", json={"model": "alpha"}).json()["error"]["param"] == "prompt"


def test_a_wrong_method_or_path_under_v1_is_in_openais_shape(core: Core) -> None:
    # found by test_api_fuzz: the router's own 405 (and 404) under /v1 were in the seed routes' shape
    api = TestClient(create_app(core), base_url="http://127.0.0.1:8000")
    for method, path, status in (("GET", "/v1/completions", 405), ("TRACE", "/v1/chat/completions", 405),
                                 ("DELETE", "/v1/models", 405), ("GET", "/v1/nowhere", 404)):
        answer = api.request(method, path)
        assert answer.status_code == status, (method, path, answer.text)
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert api.get("/v1/completions").headers["allow"] == "POST"
    assert set(api.get("/models/nowhere/stats").json()["error"]) == {"type", "message"}  # the seed's own shape


def test_the_document_says_a_completion_may_stream(core: Core) -> None:
    # found by test_api_fuzz: a streamed answer's text/event-stream was an undocumented content type
    paths = TestClient(create_app(core), base_url="http://127.0.0.1:8000").get("/openapi.json").json()["paths"]
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert set(paths[path]["post"]["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}


def test_the_seed_routes_keep_their_own_error_shape(core: Core) -> None:
    api = TestClient(create_app(core), base_url="http://127.0.0.1:8000")
    seed = api.post("/quick/generate", json={"prompt": "hi", "max_tokens": "lots"})
    assert seed.status_code == 422 and seed.json()["error"]["type"] == "ValidationError"
    assert api.post("/v1/completions", json={"model": "alpha", "prompt": "hi", "max_tokens": "lots"}).status_code == 400


def test_with_a_token_the_client_must_send_it(core: Core) -> None:
    with live_server(core, token=TOKEN) as url:
        good = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)
        assert good.chat.completions.create(model="alpha", messages=HELLO, max_tokens=2).model == "alpha"
        bad = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()


def test_header_text_is_printable_ascii() -> None:
    shown = header_text("alpha \u2014 fits chat \u00b7 caf\u00e9\n\x1b[31m" + "x" * 2000)
    assert shown.isascii() and shown.isprintable() and len(shown) <= 1024
    assert shown.startswith("alpha - fits chat | caf\\xe9")


# -- cancellation and concurrency ----------------------------------------------------------------------


def test_a_client_leaving_mid_stream_frees_the_runner(folder: Path) -> None:
    with make_core(folder, runner_env=SLOW_TOKENS) as slow, live_server(slow) as url:
        slow.manager.load("alpha").result(60)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)
        stream = client.chat.completions.create(model="alpha", messages=HELLO, max_tokens=400,
                                                temperature=0, stream=True)
        pieces = 0
        for chunk in stream:
            pieces += bool(chunk.choices and chunk.choices[0].delta.content)
            if pieces >= 2:
                break
        assert not _free(slow, "alpha")  # 400 tokens at 50 ms: generating for 20 s more
        left = time.perf_counter()
        stream.close()
        wait_until(lambda: _free(slow, "alpha"), timeout=10)
        freed = time.perf_counter() - left
        print(f"runner free {freed * 1000:.0f} ms after the client left")
        assert freed < GENEROUS_S
        started = time.perf_counter()
        again = client.chat.completions.create(model="alpha", messages=HELLO, max_tokens=2)
        assert again.model == "alpha" and again.choices[0].finish_reason == "length"
        print(f"next request answered in {(time.perf_counter() - started) * 1000:.0f} ms")


def test_a_client_leaving_a_non_streamed_request_frees_the_runner(folder: Path) -> None:
    with make_core(folder, runner_env=SLOW_TOKENS) as slow, live_server(slow) as url:
        slow.manager.load("alpha").result(60)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", timeout=0.5,
                       json={"model": "alpha", "messages": HELLO, "max_tokens": 400})
        left = time.perf_counter()
        wait_until(lambda: _free(slow, "alpha"), timeout=10)
        print(f"runner free {(time.perf_counter() - left) * 1000:.0f} ms after the client timed out")
        assert time.perf_counter() - left < GENEROUS_S


def test_concurrent_clients_on_two_models(client: openai.OpenAI) -> None:
    def ask(i: int) -> tuple[str, str, str]:
        model = ("alpha", "beta")[i % 2]
        if i % 4 < 2:
            answer = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, temperature=0)
            return model, answer.model, answer.choices[0].message.content or ""
        stream = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, temperature=0,
                                                stream=True)
        chunks = list(stream)
        return model, chunks[-1].model, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert all(asked == answered for asked, answered, _ in answers)
    by_model: dict[str, set[str]] = {}
    for model, _, text in answers:
        by_model.setdefault(model, set()).add(text)
    assert all(len(texts) == 1 for texts in by_model.values()), by_model  # greedy: streamed == not streamed
