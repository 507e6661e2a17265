"""Issue 11, part 2: the quick run of ``stress.budget``: random load/move/unload/pin/generate/
add/plan-apply traffic from concurrent API clients against tight budgets; no watcher (sampler,
every TierUsageChanged event, /system/status) ever sees a tier's reserved bytes over its budget."""

from __future__ import annotations

from pathlib import Path

from stress import budget


def test_no_tier_ever_exceeds_its_budget(tmp_path: Path) -> None:
    figures = budget.run(True, 11, folder=tmp_path)
    assert figures["operations"] == 4 * 15
    assert figures["samples"] > 100 and figures["events_checked"] > 0 and figures["status_reads"] > 0
    assert figures["violations"] == 0, figures["violation_examples"]
    assert figures["server_errors"] == 0, figures["server_error_examples"]
    assert figures["end_state_problems"] == []
    # the traffic did reach the scheduler: some loads or moves were admitted
    assert figures["by_status"].get("load 202", 0) + figures["by_status"].get("move 202", 0) > 0
    assert figures["goal_met"]
