"""Hostile SDK arguments (issue 11 part 7): a wrong type is a ``TypeError`` and a wrong value a
``ValueError``, each naming the argument, raised before any request is sent (the transport here
fails the test if anything is)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orin_console.client import OrinClient

Call = Callable[[OrinClient], Awaitable[Any]]


def never(request: httpx.Request) -> httpx.Response:  # pragma: no cover - nothing may be sent
    raise AssertionError(f"sent {request.method} {request.url}")


def run(call: Call) -> Any:
    async def main() -> Any:
        async with OrinClient(transport=httpx.MockTransport(never)) as client:
            result = call(client)
            if hasattr(result, "text") and not asyncio.iscoroutine(result):  # a TextStream: start it
                return await result.text()
            return await result

    return asyncio.run(main())


CASES: list[tuple[str, Call, type[Exception], str]] = [
    # generation
    ("prompt surrogate", lambda c: c.inference.quick_generate("a\ud800"), ValueError, "prompt"),
    ("prompt empty", lambda c: c.inference.quick_generate(""), ValueError, "prompt"),
    ("prompt huge", lambda c: c.inference.generate("a" * 262_145), ValueError, "prompt"),
    ("prompt bytes", lambda c: c.inference.generate(b"hi"), TypeError, "prompt"),
    ("max_tokens 0", lambda c: c.inference.quick_generate("x", max_tokens=0), ValueError, "max_tokens"),
    ("max_tokens -5", lambda c: c.inference.generate("x", max_tokens=-5), ValueError, "max_tokens"),
    ("max_tokens huge", lambda c: c.inference.generate("x", max_tokens=2**40), ValueError, "max_tokens"),
    ("max_tokens float", lambda c: c.inference.generate("x", max_tokens=5.0), TypeError, "max_tokens"),
    ("temperature nan", lambda c: c.inference.generate("x", temperature=float("nan")), ValueError, "temperature"),
    ("temperature inf", lambda c: c.inference.generate("x", temperature=float("inf")), ValueError, "temperature"),
    ("temperature 3", lambda c: c.inference.generate("x", temperature=3), ValueError, "temperature"),
    ("temperature str", lambda c: c.inference.generate("x", temperature="0.5"), TypeError, "temperature"),
    ("top_p 0", lambda c: c.inference.generate("x", top_p=0), ValueError, "top_p"),
    ("top_p 1.5", lambda c: c.inference.generate("x", top_p=1.5), ValueError, "top_p"),
    ("seed -1", lambda c: c.inference.generate("x", seed=-1), ValueError, "seed"),
    ("seed bool", lambda c: c.inference.generate("x", seed=True), TypeError, "seed"),
    ("stop many", lambda c: c.inference.generate("x", stop=["a", "b", "c", "d", "e"]), ValueError, "stop"),
    ("stop empty", lambda c: c.inference.generate("x", stop=[""]), ValueError, "stop[0]"),
    ("stop long", lambda c: c.inference.generate("x", stop=["a" * 65]), ValueError, "stop[0]"),
    ("stop int", lambda c: c.inference.generate("x", stop=[1]), TypeError, "stop[0]"),
    ("stop surrogate", lambda c: c.inference.generate("x", stop=["\udc00"]), ValueError, "stop[0]"),
    ("mode", lambda c: c.inference.generate("x", mode="telepathic"), ValueError, "mode"),
    ("model traversal", lambda c: c.inference.generate("x", model="../x"), ValueError, "model"),
    ("model NUL", lambda c: c.inference.chat("hi", model="a\x00b"), ValueError, "model"),
    ("model long", lambda c: c.inference.chat("hi", model="a" * 65), ValueError, "model"),
    ("request_id", lambda c: c.inference.generate("x", request_id="a b"), ValueError, "request_id"),
    ("request_id long", lambda c: c.inference.generate("x", request_id="a" * 81), ValueError, "request_id"),
    ("messages empty", lambda c: c.inference.chat([]), ValueError, "messages"),
    ("messages many", lambda c: c.inference.chat([{"role": "user", "content": "x"}] * 257), ValueError, "messages"),
    ("role", lambda c: c.inference.chat([{"role": "god", "content": "x"}]), ValueError, "messages[0]['role']"),
    ("content surrogate", lambda c: c.inference.chat([{"role": "user", "content": "\ud800"}]), ValueError,
     "messages[0]['content']"),
    ("chat str surrogate", lambda c: c.inference.chat("\ud800"), ValueError, "messages"),
    ("batch empty", lambda c: c.inference.batch([]), ValueError, "items"),
    ("batch many", lambda c: c.inference.batch(["x"] * 65), ValueError, "items"),
    ("batch surrogate", lambda c: c.inference.batch(["ok", "\ud800"]), ValueError, "items[1]"),
    ("batch item int", lambda c: c.inference.batch(["ok", 5]), TypeError, "items[1]"),
    ("wait str", lambda c: c.models.wait("op-1"), TypeError, "operation"),
    ("stream surrogate", lambda c: c.inference.stream(prompt="\ud800"), ValueError, "prompt"),
    ("stream bad tokens", lambda c: c.inference.stream(prompt="x", max_tokens=0), ValueError, "max_tokens"),
    # models
    ("get traversal", lambda c: c.models.get("../system/status"), ValueError, "model_id"),
    ("get NUL", lambda c: c.models.get("a\x00b"), ValueError, "model_id"),
    ("get long", lambda c: c.models.get("a" * 65), ValueError, "model_id"),
    ("get int", lambda c: c.models.get(5), TypeError, "model_id"),
    ("load tier", lambda c: c.models.load("alpha", "attic"), ValueError, "tier"),
    ("load tier disk", lambda c: c.models.load("alpha", "disk"), ValueError, "tier"),
    ("load wait", lambda c: c.models.load("alpha", wait="yes"), TypeError, "wait"),
    ("load timeout", lambda c: c.models.load("alpha", timeout=-1), ValueError, "timeout"),
    ("move tier", lambda c: c.models.move("alpha", "attic"), ValueError, "tier"),
    ("move none", lambda c: c.models.move("alpha", None), TypeError, "tier"),
    ("unload id", lambda c: c.models.unload("a/b"), ValueError, "model_id"),
    ("pin", lambda c: c.models.pin("alpha", pinned=1), TypeError, "pinned"),
    ("plan tier", lambda c: c.models.plan("alpha", tier="attic"), ValueError, "tier"),
    ("operation NUL", lambda c: c.models.operation("op\ud800"), ValueError, "operation_id"),
    ("operation long", lambda c: c.models.operation("o" * 81), ValueError, "operation_id"),
    ("add NUL", lambda c: c.models.add("/models/a\x00.gguf"), ValueError, "path"),
    ("add surrogate", lambda c: c.models.add("/models/\udcff.gguf"), ValueError, "path"),
    ("add empty", lambda c: c.models.add(""), ValueError, "path"),
    ("add long", lambda c: c.models.add("/" + "a" * 5000), ValueError, "path"),
    ("add pathlike", lambda c: c.models.add(b"/models/a.gguf"), TypeError, "path"),
    ("add id", lambda c: c.models.add("/m/a.gguf", id="../x"), ValueError, "id"),
    ("add tasks str", lambda c: c.models.add("/m/a.gguf", tasks="chat"), TypeError, "tasks"),
    ("add tasks unknown", lambda c: c.models.add("/m/a.gguf", tasks=["dance"]), ValueError, "tasks[0]"),
    ("add tasks twice", lambda c: c.models.add("/m/a.gguf", tasks=["chat", "chat"]), ValueError, "tasks"),
    ("add tasks empty", lambda c: c.models.add("/m/a.gguf", tasks=[]), ValueError, "tasks"),
    ("add tier", lambda c: c.models.add("/m/a.gguf", tier="attic"), ValueError, "tier"),
    ("add context", lambda c: c.models.add("/m/a.gguf", context=-5), ValueError, "context"),
    ("add context 0", lambda c: c.models.add("/m/a.gguf", context=0), ValueError, "context"),
    ("add context bool", lambda c: c.models.add("/m/a.gguf", context=True), TypeError, "context"),
    ("add dry_run", lambda c: c.models.add("/m/a.gguf", dry_run="yes"), TypeError, "dry_run"),
    # placement
    ("apply str", lambda c: c.placement.apply(model_ids="alpha"), TypeError, "model_ids"),
    ("apply empty", lambda c: c.placement.apply(model_ids=[]), ValueError, "model_ids"),
    ("apply traversal", lambda c: c.placement.apply(model_ids=["../x"]), ValueError, "model_ids[0]"),
    ("apply dict", lambda c: c.placement.apply(model_ids={"alpha": 1}), TypeError, "model_ids"),
    ("apply timeout", lambda c: c.placement.apply(timeout=0), ValueError, "timeout"),
]


@pytest.mark.parametrize(("call", "kind", "name"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_argument_is_refused_before_any_request_naming_it(call: Call, kind: type[Exception], name: str) -> None:
    with pytest.raises(kind) as raised:
        run(call)
    assert name in str(raised.value), str(raised.value)


def test_events_arguments_are_checked_before_connecting() -> None:
    async def first(**kwargs: Any) -> Any:
        async with OrinClient(transport=httpx.MockTransport(never)) as client:
            async for event in client.events(**kwargs):
                return event
        return None

    for kwargs, kind, name in (({"kinds": ["Model StateChanged"]}, ValueError, "kinds"),
                               ({"kinds": ["\x00"]}, ValueError, "kinds"), ({"kinds": [5]}, TypeError, "kinds"),
                               ({"kinds": 5}, TypeError, "kinds"), ({"kinds": []}, ValueError, "kinds"),
                               ({"snapshot": "yes"}, TypeError, "snapshot")):
        with pytest.raises(kind, match=name):
            asyncio.run(first(**kwargs))


@pytest.mark.parametrize(("token", "kind"), [("a\r\nX-Injected: 1", ValueError), ("tok en", ValueError),
                                             ("tök", ValueError), ("", TypeError), (5, TypeError)])
def test_a_token_that_could_not_be_a_header_is_refused(token: Any, kind: type[Exception]) -> None:
    with pytest.raises(kind, match="token"):
        OrinClient(token=token, transport=httpx.MockTransport(never))


def test_valid_edge_values_are_sent() -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, json={"text": "", "model": "a", "model_id": "a", "task": "chat",
                                         "explanation": "", "ttft_s": None, "tok_per_s": None, "tokens": 0,
                                         "finish_reason": "stop", "request_id": "r"})

    async def main() -> None:
        async with OrinClient(transport=httpx.MockTransport(handler)) as client:
            await client.inference.generate("é\U0001f600", max_tokens=131072, temperature=0, top_p=1, seed=0,
                                            stop=["a" * 64] * 4, model="a" * 64, request_id="r:1/2")
            await client.inference.chat([{"role": "system", "content": ""}, {"role": "user", "content": "x"}])

    asyncio.run(main())
    assert len(bodies) == 2


@pytest.mark.parametrize(("kwargs", "kind", "name"), [
    ({"base_url": 5}, TypeError, "base_url"),
    ({"base_url": "127.0.0.1:8000"}, ValueError, "base_url"),
    ({"base_url": "http://"}, ValueError, "base_url"),
    ({"base_url": "http://a b"}, ValueError, "base_url"),
    ({"base_url": "http://host\r\nX-Injected: 1"}, ValueError, "base_url"),
    ({"base_url": "http://\ud800"}, ValueError, "base_url"),
    ({"base_url": "http://127.0.0.1:99999"}, ValueError, "base_url"),
    ({"timeout": -1}, ValueError, "timeout"),
    ({"timeout": float("nan")}, ValueError, "timeout"),
    ({"timeout": "5"}, TypeError, "timeout"),
    ({"headers": {"X": "a\r\nb"}}, ValueError, "headers"),
    ({"headers": {"X Y": "a"}}, ValueError, "headers"),
    ({"headers": {"X": 1}}, TypeError, "headers"),
    ({"headers": [("X", "a")]}, TypeError, "headers"),
])
def test_bad_client_options_are_refused_naming_them(kwargs: dict[str, Any], kind: type[Exception], name: str) -> None:
    with pytest.raises(kind, match=name):
        OrinClient(**kwargs)


def test_good_client_options_are_taken() -> None:
    for kwargs in ({"base_url": "https://jetson.local:8000/"}, {"base_url": "http://[::1]:8000"}, {"timeout": 3},
                   {"timeout": None}, {"timeout": httpx.Timeout(5.0)}, {"headers": {"X-Trace": "abc"}}):
        assert OrinClient(**kwargs).base_url.startswith("http")


# -- hostile answers: the SDK's types read any JSON object without raising ------------------------

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3),
                           max_leaves=12)


@pytest.mark.parametrize("kind", [
    "AddPreview", "AddResult", "ApplyResult", "FileFacts", "GenerationResult", "Health", "ModelInfo", "ModelStats",
    "MoveOutcome",
    "Operation", "PlacementMove", "PlacementPlan", "PlanVerdict", "ProposedModel", "SystemStatus", "TierInfo",
    "BatchFailure", "Routed", "ServerEvent", "Suggestion",
])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_every_result_type_reads_any_json_object(kind: str, data: st.DataObject) -> None:
    import orin_console.client as sdk

    cls = getattr(sdk, kind)
    keys = [f.name for f in dataclasses.fields(cls)] + ["models", "telemetry_source", "admission", "plan"]
    body = data.draw(st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), JSON_VALUES, max_size=8))
    result = cls.from_dict(body)
    assert dict(result) == body
    with pytest.raises(TypeError):
        cls.from_dict([body])


def test_model_facts_of_the_wrong_type_are_missing_never_coerced() -> None:
    from orin_console.client import FileFacts, ModelInfo

    good = {"file_size": 437472, "quantization": "Q4_K_M", "architecture": "llama", "n_params": 107328,
            "context_length": 2048, "name": "tiny", "problem": None}
    info = ModelInfo.from_dict({"id": "alpha", "state": "ready", "facts": good})
    assert info.facts == FileFacts(437472, "Q4_K_M", "llama", 107328, 2048, "tiny", None)
    assert info.facts is not None and info.facts["quantization"] == "Q4_K_M"
    hostile = {"file_size": "437472", "quantization": 4, "architecture": ["llama"], "n_params": -1,
               "context_length": True, "name": {"x": 1}, "problem": 1.5}
    assert ModelInfo.from_dict({"id": "a", "facts": hostile}).facts == FileFacts()
    assert ModelInfo.from_dict({"id": "a", "facts": 1.0e308}).facts is None
    assert ModelInfo.from_dict({"id": "a", "facts": [good]}).facts is None
    assert ModelInfo.from_dict({"id": "a"}).facts is None  # an older server
