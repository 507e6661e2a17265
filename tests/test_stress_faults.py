"""Issue 11, part 1: the quick run of ``stress.faults`` (one fault of each kind, at load and
mid-stream, while bystander clients stream from other models) against a real
``orin-console serve``. Correctness only: timings are the script's figures."""

from __future__ import annotations

from pathlib import Path

from stress import faults


def test_every_fault_is_survived_and_reported(tmp_path: Path) -> None:
    figures = faults.run(True, 11, folder=tmp_path)
    kinds = {f"{kind}@{phase}" for kind, phase in faults.KINDS}  # load, stream and move
    assert set(figures["by_kind"]) == kinds  # each kind was injected once
    assert figures["problems"] == []
    assert figures["survived"] == figures["injected"] == len(kinds)
    assert figures["console_survived"]
    assert figures["bystander_streams"] > 0
    assert figures["bystander_failures"] == 0, figures["bystander_failure_examples"]
    assert figures["bystander_runners_untouched"]
    assert figures["time_to_reason_ms"]["max"] is not None
    assert set(figures["queued_clients"]) == {"done"}  # requests queued behind a dead runner restart it
    assert figures["goal_met"]
