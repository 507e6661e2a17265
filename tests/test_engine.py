"""The inference engine on a real manager with generated tiny models."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orin_console.core.engine.inference import Engine, residency_of
from orin_console.core.engine.selection import SelectionError
from orin_console.core.engine.types import BatchFailure, GenerationParams, ParameterError, Result
from orin_console.core.events.kinds import LoadProgress
from orin_console.core.manager.manager import Manager
from orin_console.core.manager.types import ModelBusy, ModelState
from orin_console.core.memory.admission import Budgets
from orin_console.testing.managers import make_manager as make_test_manager
from orin_console.testing.tiny_models import write_tiny_llama
from orin_console.testing.waits import wait_until

CATALOG = """\
[[models]]
id = "alpha"
path = "alpha.gguf"
tasks = ["chat"]
tier = "ram"
context = 512

[[models]]
id = "beta"
path = "beta.gguf"
tasks = ["code"]
tier = "swap"
context = 256
"""
CODE_PROMPT = "Write a Python function that reverses a list:\n```python\ndef rev(xs):\n```"
CHAT_PROMPT = "Hello! How are you today?"
STEADY_PROMPT = "hello"
"""Greedy raw completion of this prompt by the tiny model starts with plain ASCII, so the
first piece arrives at once (llama-cpp-python holds back text it cannot yet decode, and its
chat path holds back the tiny model's whole answer)."""
SLOW_ENV = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.05"}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("engine-models")
    write_tiny_llama(folder / "alpha.gguf", n_ctx=512)
    write_tiny_llama(folder / "beta.gguf", seed=7, n_ctx=512)
    return folder


@pytest.fixture
def workdir(tmp_path: Path, model_files: Path) -> Path:
    for name in ("alpha.gguf", "beta.gguf"):
        (tmp_path / name).symlink_to(model_files / name)
    (tmp_path / "models.toml").write_text(CATALOG)
    return tmp_path


def make_manager(workdir: Path, **kwargs: object) -> Manager:
    return make_test_manager(workdir, **kwargs)


@pytest.fixture
def manager(workdir: Path) -> Iterator[Manager]:
    with make_manager(workdir) as mgr:
        yield mgr


@pytest.fixture
def engine(manager: Manager) -> Engine:
    return Engine(manager)


def check_figures(result: Result, max_tokens: int) -> None:
    assert result.ok and result.finish_reason in ("stop", "length")
    assert result.ttft_s is not None and result.ttft_s > 0
    assert result.prompt_tokens > 0 and result.tokens >= 0
    assert result.total_s > 0 and result.elapsed_s >= result.total_s
    if result.tokens >= 2:
        assert result.tok_per_s and result.tok_per_s > 0


# -- quick, chat and the modes ------------------------------------------------------------

def test_quick_auto_loads_the_best_model_and_explains(engine: Engine, manager: Manager) -> None:
    progress = manager.bus.subscribe(kinds=(LoadProgress,))
    result = engine.quick(CHAT_PROMPT, max_tokens=16, temperature=0)
    assert result.model_id == "alpha" and result.task == "chat"
    assert result.selection.mode == "auto" and result.selection.runner_up == "beta"
    assert result.load_s is not None and result.loaded_tier == "ram"
    assert result.prompt_format == "chat"  # the tiny model has a chat template
    check_figures(result, 16)
    assert "alpha for chat (auto): fits chat, must load from disk" in result.explanation
    assert any(isinstance(e, LoadProgress) and e.model_id == "alpha" for e in progress.drain())
    summary = result.summary()
    assert summary.startswith("alpha (auto: chat, fits chat") and "runner-up beta" in summary
    assert "TTFT" in summary and "tok/s" in summary and f"{result.tokens} tokens" in summary
    again = engine.quick(CHAT_PROMPT, max_tokens=16, temperature=0)
    assert again.text == result.text  # greedy is deterministic
    assert again.load_s is None and "resident in ram" in again.explanation
    assert manager.usage.get("alpha").requests == 2


def test_quick_code_prompt_goes_to_the_code_model(engine: Engine) -> None:
    result = engine.quick(CODE_PROMPT, max_tokens=8, temperature=0)
    assert (result.model_id, result.task, result.loaded_tier) == ("beta", "code", "swap")
    assert result.to_dict()["task_reasons"]
    raw = engine.quick(CODE_PROMPT, max_tokens=8, temperature=0, as_chat=False)
    assert raw.prompt_format == "raw" and raw.prompt_tokens < result.prompt_tokens


def test_manual_mode_uses_the_named_model(engine: Engine) -> None:
    result = engine.quick(CHAT_PROMPT, mode="manual", model="beta", max_tokens=8)
    assert result.model_id == "beta" and result.selection.mode == "manual"
    assert "chosen by the operator" in result.explanation
    with pytest.raises(SelectionError, match=r"no model 'gamma'.*known: alpha, beta"):
        engine.quick(CHAT_PROMPT, mode="manual", model="gamma")
    with pytest.raises(SelectionError, match="needs a model id"):
        engine.quick(CHAT_PROMPT, mode="manual")


def test_hybrid_prefers_the_loaded_fitting_model(engine: Engine, manager: Manager) -> None:
    cold = engine.quick(CODE_PROMPT, mode="hybrid", preferred="alpha", max_tokens=4)
    assert cold.model_id == "beta" and "preferred alpha not loaded (disk), so auto" in cold.explanation
    manager.load("alpha").result(60)
    warm = engine.quick(CHAT_PROMPT, mode="hybrid", preferred="alpha", max_tokens=4)
    assert warm.model_id == "alpha" and "preferred model alpha" in warm.explanation
    unfit = engine.quick(CHAT_PROMPT, mode="hybrid", preferred="beta", max_tokens=4)
    assert unfit.model_id == "alpha" and "preferred beta does not fit chat, so auto" in unfit.explanation


def test_on_cold_resident_uses_the_best_loaded_model(workdir: Path) -> None:
    with make_manager(workdir) as manager:
        engine = Engine(manager, on_cold="resident")
        first = engine.quick(CODE_PROMPT, max_tokens=4)  # nothing loaded: it must load
        assert first.model_id == "beta" and first.load_s is not None
        assert "no loaded model can serve code, so `beta` is loaded" in first.notes
        route = engine.preview(CHAT_PROMPT)
        assert route.selection.model_id == "beta" and route.load_tier is None
        result = engine.quick(CHAT_PROMPT, max_tokens=4)
        assert result.model_id == "beta" and result.load_s is None
        assert "auto picked `alpha`, which is not loaded" in result.explanation
        assert manager.model_status("alpha").state == ModelState.UNLOADED
        assert "on_cold=resident" in result.summary()
        # manual always loads the named model
        assert engine.quick(CHAT_PROMPT, mode="manual", model="alpha", max_tokens=4).load_s is not None


def test_failed_load_falls_back_to_a_loaded_model(workdir: Path) -> None:
    budgets = Budgets(ram=40 * 2**20, swap=10 * 2**30, max_model=7 * 2**30, reserve=0)
    with make_manager(workdir, budgets=budgets) as manager:
        engine = Engine(manager)
        manager.load("beta").result(60)
        route = engine.preview(CHAT_PROMPT)  # alpha prefers ram (too small): it would load in swap
        assert route.selection.model_id == "alpha" and route.load_tier == "swap"
        stream = engine.stream_quick(CHAT_PROMPT, max_tokens=4)
        (workdir / "alpha.gguf").unlink()  # the load will fail now
        result = stream.collect()
        assert result.model_id == "beta"
        assert any("`alpha` could not be loaded" in note for note in result.notes)
        with pytest.raises(Exception, match="alpha"):
            engine.quick(CHAT_PROMPT, mode="manual", model="alpha")  # manual: no fallback


def test_chat_uses_the_template_and_the_last_user_message(engine: Engine) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": CODE_PROMPT},
    ]
    result = engine.chat(messages, max_tokens=8, temperature=0)
    assert result.task == "code" and result.model_id == "beta" and result.prompt_format == "chat"
    check_figures(result, 8)
    with pytest.raises(ParameterError, match=r"messages\[1\]\.role = 'robot': must be one of system, user"):
        engine.chat([{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}])
    with pytest.raises(ParameterError, match="at least one user message"):
        engine.chat([{"role": "system", "content": "x"}])
    with pytest.raises(ParameterError, match="messages"):
        engine.chat([])


# -- parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "match"), [
    ({"max_tokens": 0}, r"max_tokens = 0: must be an integer from 1 to 131072"),
    ({"max_tokens": True}, r"max_tokens = True: must be an integer"),
    ({"temperature": 2.5}, r"temperature = 2.5: must be a number from 0 to 2"),
    ({"temperature": float("nan")}, r"temperature = nan"),
    ({"top_p": 0}, r"top_p = 0: must be a number greater than 0 and at most 1"),
    ({"top_p": 1.01}, r"top_p = 1.01"),
    ({"stop": ["a"] * 5}, r"stop = .*: must be at most 4 strings of 1 to 64 characters"),
    ({"stop": ["x" * 65]}, r"stop = "),
    ({"stop": [""]}, r"stop = "),
    ({"seed": -1}, r"seed = -1: must be an integer from 0 to 4294967294"),
    ({"seed": 2**32}, r"seed = 4294967296"),
    ({"colour": "red"}, r"colour = 'red': must be one of the fields max_tokens, seed, stop"),
])
def test_parameters_are_validated_with_the_field_named(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ParameterError, match=match) as info:
        GenerationParams.build(**fields)  # type: ignore[arg-type]
    assert info.value.field == next(iter(fields))


def test_parameter_edges_and_context_bound(engine: Engine) -> None:
    params = GenerationParams.build(max_tokens=1, temperature=0, top_p=1, stop="END", seed=0)
    assert params.stop == ("END",)
    assert GenerationParams.build(params, temperature=2, seed=None).temperature == 2
    with pytest.raises(ParameterError, match=r"max_tokens = 300: must be an integer from 1 to 256 "
                       r"\(the context of `beta`\)"):
        engine.stream_quick(CODE_PROMPT, max_tokens=300)
    with pytest.raises(ParameterError, match="prompt = '  ': must be a non-empty string"):
        engine.quick("  ")
    with pytest.raises(ParameterError, match="mode = 'fast'"):
        engine.quick(CHAT_PROMPT, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="on_cold"):
        Engine(engine.manager, on_cold="never")  # type: ignore[arg-type]


# -- streaming, cancel, busy --------------------------------------------------------------

def test_streaming_pieces_make_the_result(engine: Engine) -> None:
    stream = engine.stream_quick(CHAT_PROMPT, max_tokens=24, temperature=0)
    assert stream.model_id == "alpha" and stream.will_load and stream.load_tier == "ram"
    assert stream.result is None
    pieces = list(stream)
    assert stream.result is not None and "".join(pieces) == stream.result.text
    assert stream.result.text == engine.quick(CHAT_PROMPT, max_tokens=24, temperature=0).text
    assert list(stream) == []  # finished streams stay finished


def test_stream_cancel_stops_within_a_token(workdir: Path) -> None:
    with make_manager(workdir, runner_env=SLOW_ENV) as manager:
        engine = Engine(manager)
        with engine.stream_quick(STEADY_PROMPT, max_tokens=64, temperature=0, as_chat=False) as stream:
            first = next(stream)
            started = time.monotonic()
            stream.cancel()
            rest = list(stream)
            assert time.monotonic() - started < 2.0
        assert stream.result is not None and stream.result.finish_reason == "cancelled"
        assert stream.result.text == first + "".join(rest) and stream.result.tokens < 64
        before = engine.stream_quick(CHAT_PROMPT, max_tokens=8)
        before.cancel()  # cancelled before it started: nothing runs
        assert list(before) == [] and before.result is not None
        assert before.result.finish_reason == "cancelled" and before.result.tokens == 0
        assert engine.quick(CHAT_PROMPT, max_tokens=2).ok  # usable again


def test_full_queue_is_a_busy_error(workdir: Path) -> None:
    with make_manager(workdir, runner_env=SLOW_ENV, queue_limit=1) as manager:
        engine = Engine(manager)
        manager.load("alpha").result(60)
        running = engine.stream_quick(STEADY_PROMPT, max_tokens=64, temperature=0, as_chat=False)
        next(running)
        waited: list[Result] = []
        waiter = threading.Thread(target=lambda: waited.append(engine.quick(CHAT_PROMPT, max_tokens=2)))
        waiter.start()
        wait_until(lambda: manager.model_status("alpha").queued >= 1, timeout=10, what="the second request to queue")
        with pytest.raises(ModelBusy, match="`alpha` is busy: one generation running and 1 queued"):
            engine.quick(CHAT_PROMPT, max_tokens=2)
        running.close()
        waiter.join(30)
        assert waited and waited[0].model_id == "alpha"


# -- batch --------------------------------------------------------------------------------

def test_batch_keeps_order_and_survives_a_failing_member(engine: Engine) -> None:
    too_long = "word " * 200  # over beta's and alpha's context once tokenised byte by byte
    items = [CHAT_PROMPT, "", too_long, CODE_PROMPT, [{"role": "user", "content": "Hi"}]]
    results = engine.batch(items, max_tokens=6, temperature=0)
    assert [r.ok for r in results] == [True, False, False, True, True]
    assert isinstance(results[1], BatchFailure) and results[1].kind == "ParameterError"
    assert results[1].index == 1 and "prompt" in results[1].error
    assert isinstance(results[2], BatchFailure) and results[2].kind == "RunnerInputError"  # the request's fault
    assert "exceed context window" in results[2].error and results[2].model_id is not None
    assert [r.model_id for r in results if isinstance(r, Result)] == ["alpha", "beta", "alpha"]
    with pytest.raises(ParameterError, match="prompts"):
        engine.batch([])
    with pytest.raises(ParameterError, match="temperature"):
        engine.batch([CHAT_PROMPT], temperature=-1)


def test_stream_batch_pieces_and_cancel(engine: Engine) -> None:
    stream = engine.stream_batch([CHAT_PROMPT, CODE_PROMPT, CHAT_PROMPT], max_tokens=6, temperature=0)
    texts: dict[int, str] = {}
    for piece in stream:
        texts[piece.index] = texts.get(piece.index, "") + piece.text
        if piece.done and piece.index == 1:
            stream.cancel()
    assert len(stream.results) == 3
    first, second, third = stream.results
    assert isinstance(first, Result) and first.text == texts[0]
    assert isinstance(second, Result) and second.model_id == "beta"
    assert isinstance(third, BatchFailure) and "cancelled" in third.error


def test_residency_view_of_states(manager: Manager) -> None:
    assert residency_of(manager.status()) == {}
    manager.load("beta").result(60)
    assert residency_of(manager.status()) == {"beta": "swap"}
