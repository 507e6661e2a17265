"""Runner processes with a real llama.cpp and the tiny generated model (DESIGN.md, "Model runners").

Load with progress, streamed and whole generations, greedy determinism, chat through the
GGUF's own template, cancel within one token, busy, stats, ping, two runners at once,
oom_score_adj, captured llama.cpp logs, shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orin_console.core.runner import (
    CPU_ONLY_NOTE,
    OOM_SCORE_ADJ,
    GenerateRequest,
    Runner,
    RunnerBusy,
    RunnerError,
    RunnerInputError,
    tier_config,
)
from orin_console.testing.waits import wait_until

HOOKS = {"ORIN_RUNNER_TEST_HOOKS": "1"}
TOKEN_DELAY_S = 0.02  # the slow runner stands in for a real model: 50 tokens/s
GREEDY = {"temperature": 0.0, "seed": 1}


def _oom_score_adj(pid: int | str) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text().strip())


@pytest.fixture(scope="module")
def started(tiny_model_path: Path) -> Iterator[tuple[Runner, list[float]]]:
    """A fast ram-tier runner on the tiny model, shared by the module, and its load progress."""
    r = Runner("tiny", tier_config("ram", str(tiny_model_path), n_ctx=256, n_threads=1))
    progress: list[float] = []
    r.start(progress=progress.append)
    yield r, progress
    r.shutdown()


@pytest.fixture
def runner(started: tuple[Runner, list[float]]) -> Runner:
    return started[0]


@pytest.fixture(scope="module")
def slow_runner(tiny_model_path: Path) -> Iterator[Runner]:
    """A swap-tier runner whose tokens take TOKEN_DELAY_S each (test hook)."""
    env = {**HOOKS, "ORIN_RUNNER_TEST_TOKEN_DELAY_S": str(TOKEN_DELAY_S)}
    r = Runner("tiny-slow", tier_config("swap", str(tiny_model_path), n_ctx=256, n_threads=1), env=env)
    r.start()
    yield r
    r.shutdown()


def test_load_reports_progress_and_the_model(started: tuple[Runner, list[float]]) -> None:
    runner, progress = started
    assert progress and progress[-1] == 1.0
    assert progress == sorted(progress)
    res = runner.load_result
    assert res is not None and res.pid == runner.pid and runner.alive
    assert res.n_ctx == 256 and res.n_ctx_train == 256 and res.n_threads == 1 and res.n_layers == 2
    assert res.has_chat_template
    assert res.model_bytes > 0 and res.load_seconds >= 0
    assert res.mlock_requested
    if res.gpu_offload_supported:
        assert res.gpu_layers == -1
    else:
        assert res.gpu_layers == 0 and CPU_ONLY_NOTE in res.notes


def test_stream_yields_text_then_a_final_chunk_with_stats(runner: Runner) -> None:
    chunks = list(runner.generate(GenerateRequest(prompt="Hello", max_tokens=12, **GREEDY)))
    *text_chunks, last = chunks
    assert text_chunks and all(c.text and not c.done for c in text_chunks)
    assert last.done and last.text == "" and last.stats is not None
    stats = last.stats
    assert stats.finish_reason in ("length", "stop")
    assert 1 <= stats.tokens <= 12
    assert stats.prompt_tokens == len(b"Hello") + 1  # byte vocabulary plus BOS
    assert stats.ttft_s is not None and 0 < stats.ttft_s <= stats.total_s
    assert runner.stats() == stats
    assert not runner.busy


def test_greedy_is_deterministic_streamed_or_not(runner: Runner) -> None:
    req = GenerateRequest(prompt="The quick brown fox", max_tokens=16, **GREEDY)
    streamed = "".join(c.text for c in runner.generate(req))
    whole = runner.complete(req)
    again = runner.complete(req)
    assert whole.done and whole.text == streamed == again.text
    assert whole.stats is not None and whole.stats.tokens == again.stats.tokens  # type: ignore[union-attr]


def test_chat_renders_the_models_own_template(runner: Runner) -> None:
    messages = [{"role": "user", "content": "hi"}]
    chunk = runner.complete(GenerateRequest(messages=messages, max_tokens=8, **GREEDY))
    assert chunk.stats is not None
    # The tiny model's template renders "<|user|>\nhi\n<|assistant|>\n"; one token per byte.
    assert chunk.stats.prompt_tokens == len(b"<|user|>\nhi\n<|assistant|>\n")
    assert any("Using gguf chat template" in line for line in runner.recent_log())


def test_stop_string_ends_the_generation(runner: Runner) -> None:
    pieces = [c.text for c in runner.generate(GenerateRequest(prompt="Hello", max_tokens=12, **GREEDY))]
    full, stop = "".join(pieces), pieces[1]
    cut = runner.complete(GenerateRequest(prompt="Hello", max_tokens=12, stop=[stop], **GREEDY))
    assert cut.text == full[: full.index(stop)]
    assert cut.stats is not None and cut.stats.finish_reason == "stop"


def wait_for_tokens(r: Runner, n: int, timeout: float = 10.0) -> int:
    """Poll the runner (bounded) until its generation has produced ``n`` tokens."""

    def tokens() -> int:
        health = r.ping()
        return health.tokens if health.state == "generating" and health.tokens >= n else 0

    return wait_until(tokens, timeout=timeout, interval=TOKEN_DELAY_S / 4, what=f"{r.model_id} to reach {n} tokens")


def test_cancel_stops_within_one_token(slow_runner: Runner) -> None:
    gen = slow_runner.generate(GenerateRequest(prompt="Hello", max_tokens=200, **GREEDY))
    seen = wait_for_tokens(slow_runner, 3)
    cancelled_at = time.monotonic()
    assert slow_runner.cancel()
    last = list(gen)[-1]
    elapsed = time.monotonic() - cancelled_at
    assert last.done and last.stats is not None
    assert last.stats.finish_reason == "cancelled"
    # The token being computed when the cancel arrived may finish (+1); one more for the
    # gap between the ping that counted and the cancel.
    assert seen <= last.stats.tokens <= seen + 2
    assert elapsed < 10 * TOKEN_DELAY_S + 1.0  # 200 tokens would take 4 s
    assert not slow_runner.busy and not slow_runner.cancel()


def test_leaving_a_stream_early_cancels_it_and_frees_the_runner(slow_runner: Runner) -> None:
    with slow_runner.generate(GenerateRequest(prompt="Hello", max_tokens=200, **GREEDY)) as gen:
        pass
    assert gen.finished and not slow_runner.busy
    stats = slow_runner.stats()
    assert stats is not None and stats.finish_reason == "cancelled" and stats.tokens <= 2
    # A dropped stream is cancelled too (by the next request at the latest): no "busy".
    slow_runner.generate(GenerateRequest(prompt="Hello", max_tokens=200, **GREEDY))
    started = time.monotonic()
    chunk = slow_runner.complete(GenerateRequest(prompt="Hi", max_tokens=2, **GREEDY))
    assert chunk.done and time.monotonic() - started < 2.0


def test_cancel_stops_a_chat_too(slow_runner: Runner) -> None:
    messages = [{"role": "user", "content": "Tell me a long story"}]
    with slow_runner.generate(GenerateRequest(messages=messages, max_tokens=200, **GREEDY)) as gen:
        seen = wait_for_tokens(slow_runner, 2)
        gen.cancel()
        last = list(gen)[-1]
    assert last.stats is not None and last.stats.finish_reason == "cancelled"
    assert last.stats.tokens <= seen + 2


def test_one_generation_at_a_time_and_ping_mid_stream(slow_runner: Runner) -> None:
    with slow_runner.generate(GenerateRequest(prompt="Hello", max_tokens=200, **GREEDY)):
        wait_for_tokens(slow_runner, 1)
        with pytest.raises(RunnerBusy, match="already generating"):
            slow_runner.generate(GenerateRequest(prompt="Hi", max_tokens=2))
        health = slow_runner.ping()  # answered by the runner's reader thread, not queued
        assert health.state == "generating" and health.pid == slow_runner.pid
        assert health.rtt_s < 1.0 and slow_runner.busy


def test_two_runners_generate_at_the_same_time(runner: Runner, slow_runner: Runner) -> None:
    assert runner.pid != slow_runner.pid and runner.alive and slow_runner.alive
    req = GenerateRequest(prompt="Two at once", max_tokens=10, **GREEDY)
    results: dict[str, str] = {}

    def work(r: Runner) -> None:
        results[r.model_id] = "".join(c.text for c in r.generate(req))

    threads = [threading.Thread(target=work, args=(r,)) for r in (runner, slow_runner)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["tiny"] == results["tiny-slow"]  # same model, same greedy text


def test_runner_oom_score_adj_is_above_the_consoles(runner: Runner, slow_runner: Runner) -> None:
    console = _oom_score_adj("self")
    assert _oom_score_adj(runner.pid) > console  # type: ignore[arg-type]
    assert _oom_score_adj(slow_runner.pid) > _oom_score_adj(runner.pid)  # type: ignore[arg-type]
    assert runner.load_result is not None and runner.load_result.oom_score_adj == max(OOM_SCORE_ADJ["ram"], console + 1)


def test_bad_request_is_an_error_and_the_runner_carries_on(runner: Runner) -> None:
    # the request's fault, not the runner's: an input error (422 at the API), not a RunnerError
    with pytest.raises(RunnerInputError, match="do not fit the model's context"):
        runner.complete(GenerateRequest(prompt="x" * 400, max_tokens=4))  # beyond n_ctx=256
    assert runner.complete(GenerateRequest(prompt="Hi", max_tokens=2, **GREEDY)).done


def test_llama_cpp_log_is_captured_not_printed(
    tiny_model_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="orin_console.runner.tiny-log")
    r = Runner("tiny-log", tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1), log_lines=2000)
    try:
        r.start()
        r.complete(GenerateRequest(prompt="Hi", max_tokens=4, **GREEDY))
    finally:
        r.shutdown()
    out, err = capfd.readouterr()
    assert "llama_model_loader" not in out + err
    assert any(line.startswith("llama_model_loader") for line in r.recent_log())
    assert any("llama_model_loader" in rec.getMessage() for rec in caplog.records)
    assert all(rec.name == "orin_console.runner.tiny-log" for rec in caplog.records)


def test_shutdown_ends_the_process(tiny_model_path: Path) -> None:
    exits: list[object] = []
    done = threading.Event()

    def on_exit(r: Runner, died: object) -> None:
        exits.append(died)
        done.set()

    r = Runner("tiny-stop", tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1), on_exit=on_exit)
    r.start()
    pid = r.pid
    assert r.shutdown(timeout=5) == 0
    assert done.wait(5) and exits == [None]
    assert not r.alive and not Path(f"/proc/{pid}").exists()  # gone and reaped: memory returned
    with pytest.raises(RunnerError, match="shut down"):
        r.generate(GenerateRequest(prompt="Hi", max_tokens=2))
    assert r.shutdown() == 0  # idempotent


def test_generate_before_start_is_a_clear_error(tiny_model_path: Path) -> None:
    r = Runner("never", tier_config("swap", str(tiny_model_path)))
    with pytest.raises(RunnerError, match="never started"):
        r.generate(GenerateRequest(prompt="Hi"))
    assert r.pid is None and not r.alive and r.shutdown() is None


def test_tier_move_restarts_the_runner_with_the_other_settings(tiny_model_path: Path) -> None:
    r = Runner("mover", tier_config("ram", str(tiny_model_path), n_ctx=128, n_threads=1))
    try:
        first = r.start()
        assert first.mlock_requested and first.oom_score_adj is not None
        r.shutdown()
        moved = r.start(config=tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1))
        assert r.config.tier == "swap" and moved.pid != first.pid
        assert not moved.mlock_requested and moved.gpu_layers == 0
        assert moved.oom_score_adj is not None and moved.oom_score_adj > first.oom_score_adj
        with pytest.raises(RunnerError, match="already running"):
            r.start()
    finally:
        r.shutdown()


def test_load_timeout_ends_the_runner(tiny_model_path: Path) -> None:
    exits: list[object] = []
    r = Runner("late", tier_config("swap", str(tiny_model_path)), on_exit=lambda _r, died: exits.append(died))
    with pytest.raises(RunnerError, match="did not answer `load` within"):
        r.start(timeout=0.001)  # a Python process cannot even start that fast
    assert not r.alive and exits == [None]
