"""Request text a runner cannot take is refused before anything is sent (issue 8, item 7).

A lone surrogate (which JSON can carry) cannot be encoded as UTF-8, and a prompt beyond the
channel's frame limit would break the channel and kill the runner. Both are the caller's input
errors: refused when the request is made, with the place or the size named, and the runner
stays usable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orin_console.core.errors import OrinError
from orin_console.core.runner import (
    MAX_PROMPT_BYTES,
    GenerateRequest,
    Runner,
    RunnerInputError,
    check_request_text,
    tier_config,
)
from orin_console.core.runner.protocol import MAX_FRAME
from orin_console.core.units import MB


def test_a_lone_surrogate_is_an_input_error_naming_its_place() -> None:
    with pytest.raises(RunnerInputError, match=r"the prompt .*U\+DCFF\) at position 3") as info:
        GenerateRequest(prompt="hi \udcff")
    assert isinstance(info.value, OrinError)  # the CLI's exit 2
    assert "errors='replace'" in str(info.value)  # the fix
    with pytest.raises(RunnerInputError, match=r"messages\[1\]\.content .* at position 2"):
        GenerateRequest(messages=[{"role": "system", "content": "ok"}, {"role": "user", "content": "ab\ud800"}])
    with pytest.raises(RunnerInputError, match=r"messages\[0\]\.role .* at position 0"):
        GenerateRequest(messages=[{"role": "\udc80", "content": "ok"}])
    with pytest.raises(RunnerInputError, match=r"stop\[1\] .* at position 1"):
        GenerateRequest(prompt="hi", stop=["ok", "x\udcff"])
    with pytest.raises(RunnerInputError, match=r"stop\[0\] must be a string"):
        GenerateRequest(prompt="hi", stop=[3])  # type: ignore[list-item]


def test_a_prompt_too_big_is_refused_naming_the_limit_and_the_size() -> None:
    assert MAX_PROMPT_BYTES * 6 + 4096 < MAX_FRAME  # any text fits a frame, escaped or not
    with pytest.raises(RunnerInputError, match=r"at least 65\.0 MB given .* limit is 8\.0 MB"):
        GenerateRequest(prompt="x" * (65 * MB))
    # Counted in UTF-8 bytes, prompt and stop strings together.
    with pytest.raises(RunnerInputError, match=r"10\.0 MB given .* limit is 8\.0 MB"):
        GenerateRequest(prompt="é" * (4 * MB), stop=["é" * MB])
    big_chat = [{"role": "user", "content": "y" * (5 * MB)}, {"role": "user", "content": "y" * (5 * MB)}]
    with pytest.raises(RunnerInputError, match=r"limit is 8\.0 MB"):
        GenerateRequest(messages=big_chat)
    assert check_request_text("é" * 10, None, ("ab",)) == 22
    GenerateRequest(prompt="x" * (MAX_PROMPT_BYTES - 10), stop=["stop"])  # just under: fine


def _changed(request: GenerateRequest, **fields: object) -> GenerateRequest:
    """The request with fields replaced after it was made (its checks skipped)."""
    for name, value in fields.items():
        object.__setattr__(request, name, value)
    return request


def test_a_failed_send_leaves_the_runner_usable(tiny_model_path: Path) -> None:
    """Text that slips past the request's checks is refused by generate(), nothing sent."""
    cfg = tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1)
    with Runner("input", cfg) as runner:
        runner.start()
        bad = _changed(GenerateRequest(prompt="hi"), prompt="hi \udcff")
        with pytest.raises(RunnerInputError, match=r"position 3"):
            runner.generate(bad)
        assert not runner.busy
        huge = _changed(GenerateRequest(prompt="hi"), prompt="\x01" * (12 * MB))
        with pytest.raises(RunnerInputError, match=r"limit is 8\.0 MB"):
            runner.generate(huge)  # escaped, this frame would exceed 64 MB
        assert not runner.busy and runner.alive
        final = runner.complete(GenerateRequest(prompt="hi", max_tokens=3, temperature=0.0))
        assert final.done and final.stats is not None and final.stats.tokens >= 1
        assert runner.ping().state == "idle"
