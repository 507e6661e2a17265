"""The warm spare runner: taken by the next runner that starts, replaced in the background."""

from __future__ import annotations

import sys
from pathlib import Path

from orin_console.core.runner import GenerateRequest, Runner, SpareRunners, tier_config
from orin_console.testing.waits import wait_until


def _wait_for_spare(spares: SpareRunners, timeout: float = 30.0) -> int:
    spare = wait_until(lambda: spares._spare, timeout=timeout, what="a spare runner to start")
    return spare[0].pid


def test_runner_adopts_the_spare_and_a_new_one_follows(tiny_model_path: Path) -> None:
    spares = SpareRunners(sys.executable)
    try:
        spare_pid = _wait_for_spare(spares)
        runner = Runner("tiny", tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1), spares=spares)
        with runner:
            result = runner.start()
            assert result.pid == spare_pid == runner.pid
            final = runner.complete(GenerateRequest(prompt="hi", max_tokens=4, temperature=0.0))
            assert final.stats is not None and final.stats.tokens >= 1
            assert _wait_for_spare(spares) != spare_pid  # replaced in the background
    finally:
        spares.close()
    assert spares._spare is None


def test_a_runner_with_other_settings_does_not_take_the_spare(tiny_model_path: Path) -> None:
    spares = SpareRunners(sys.executable, env={"X_TEST": "1"})
    try:
        spare_pid = _wait_for_spare(spares)
        with Runner("tiny", tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1),
                    spares=spares) as runner:
            assert runner.start().pid != spare_pid
        assert spares._spare is not None and spares._spare[0].pid == spare_pid
    finally:
        spares.close()


def test_a_dead_spare_is_not_used(tiny_model_path: Path) -> None:
    spares = SpareRunners(sys.executable)
    try:
        _wait_for_spare(spares)
        assert spares._spare is not None
        proc = spares._spare[0]
        proc.kill()
        proc.wait()
        with Runner("tiny", tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1),
                    spares=spares) as runner:
            assert runner.start().pid != proc.pid
            assert runner.alive
    finally:
        spares.close()
