"""Text a runner sends is made safe before it reaches a terminal (issue 8, item 7).

llama.cpp quotes the model file in its errors and log (its name, a crafted GGUF's metadata); the
runner passes that on. Log lines, load errors, error replies and stderr tails in death reports
carry no control characters, bidi overrides or lone surrogates.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from pathlib import Path

import pytest

from orin_console.core.runner import LoadResult, Runner, RunnerLoadError, pick_tail, tier_config
from orin_console.core.runner.channel import stderr_loop
from orin_console.core.runner.messages import runner_text

UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
HOSTILE = "evil\x1b[2J\u202eftg.\x07"


def test_runner_log_lines_are_sanitised_before_they_are_kept_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, f"error loading model: {HOSTILE}\nplain line\n".encode() + b"bad \xff byte\n")
    os.close(write_fd)
    log: deque[str] = deque(maxlen=10)
    with caplog.at_level(logging.DEBUG, logger="orin_console.runner.t"):
        stderr_loop(os.fdopen(read_fd, "rb"), log, logging.getLogger("orin_console.runner.t"))
    assert len(log) == 3 and not any(UNSAFE.search(line) for line in log)
    assert log[0] == "error loading model: evil\ufffd[2J\ufffdftg.\ufffd"
    assert not any(UNSAFE.search(record.getMessage()) for record in caplog.records)


def test_error_texts_from_a_runner_are_one_safe_line() -> None:
    cleaned = runner_text(f"generation failed: {HOSTILE}\nsecond")
    assert cleaned == "generation failed: evil\ufffd[2J\ufffdftg.\ufffd\ufffdsecond"
    assert runner_text(None) == "None"  # a hostile runner's non-text error still reads
    assert not any(UNSAFE.search(line) for line in pick_tail(["ok", f"GGML_ASSERT {HOSTILE}", "last\x1b"]))
    wire = {"pid": 1, "load_seconds": 0.1, "gpu_offload_supported": False, "gpu_layers": 0,
            "n_layers": 2, "mlock_requested": True, "pinned": False, "pin_problem": f"no {HOSTILE}",
            "locked_bytes": 0, "model_bytes": 1, "memlock_limit": None, "oom_score_adj": 800,
            "n_ctx": 128, "n_ctx_train": 256, "n_threads": 1, "has_chat_template": True,
            "notes": [f"note {HOSTILE}"]}
    result = LoadResult.from_wire(wire)
    assert not UNSAFE.search(result.notes[0]) and not UNSAFE.search(result.pin_problem or "")


def test_a_load_error_quoting_a_hostile_file_name_is_safe(tiny_model_path: Path, tmp_path: Path) -> None:
    model = tmp_path / f"{HOSTILE}.gguf"
    data = tiny_model_path.read_bytes()
    model.write_bytes(data[: len(data) // 2])  # truncated: llama.cpp refuses it, naming the file
    runner = Runner("hostile", tier_config("swap", str(model), n_ctx=128, n_threads=1))
    with pytest.raises(RunnerLoadError) as info:
        runner.start()
    message = str(info.value)
    assert "evil\ufffd[2J\ufffdftg." in message  # the name is still recognisable
    assert not UNSAFE.search(message)
    assert info.value.stderr_tail and not any(UNSAFE.search(line) for line in info.value.stderr_tail)
    assert not any(UNSAFE.search(line) for line in runner.recent_log())
