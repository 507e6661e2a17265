"""A cancel reaches llama.cpp inside a decode (its abort callback), so a stream dropped while a
long prompt is evaluated frees the runner at once instead of after the evaluation (found by
``stress.disconnects``). What is checked here is correctness: the aborted generation ends as
``cancelled`` (not a failure), and the runner then answers exactly as a fresh one would (an
aborted decode leaves no trace in its state). How fast it ends is ``stress.disconnects``'s
figure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orin_console.core.runner import GenerateRequest, Runner, tier_config
from orin_console.testing.tiny_models import write_tiny_llama


@pytest.fixture(scope="module")
def slow_prompt_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wide enough that evaluating a few hundred prompt tokens takes a noticeable while."""
    return write_tiny_llama(tmp_path_factory.mktemp("abort") / "wide.gguf", n_layers=4, n_embd=384, n_ff=1024,
                            n_ctx=1024, ascii_output=True, ftype="f16")


@pytest.fixture
def runner(slow_prompt_model: Path) -> Iterator[Runner]:
    r = Runner("wide", tier_config("swap", str(slow_prompt_model), n_ctx=1024, n_threads=1))
    r.start()
    yield r
    r.shutdown()


def _greedy(prompt: str) -> GenerateRequest:
    return GenerateRequest(prompt=prompt, max_tokens=8, temperature=0.0)


def test_a_cancel_during_the_prompt_ends_the_generation_as_cancelled(runner: Runner) -> None:
    before = runner.complete(_greedy("The same question, asked twice. " * 4))
    gen = runner.generate(_greedy("A long prompt nobody waits for. " * 30))
    time.sleep(0.05)  # in the prompt's evaluation
    runner.cancel()
    chunks = list(gen)
    assert chunks[-1].done and chunks[-1].stats is not None
    assert chunks[-1].stats.finish_reason == "cancelled"
    assert runner.alive
    after = runner.complete(_greedy("The same question, asked twice. " * 4))
    assert after.text == before.text  # nothing of the aborted prompt is left in the context
    assert after.stats is not None and after.stats.finish_reason == "length"
