"""A runner that measures more than predicted never takes its tier past its budget (found by
``stress.budget`` with the runner's ballast test hook: the scheduler grew reservations to the
measurement without looking at the budget)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orin_console.core.memory.admission import AdmissionRefused, AdmissionRequest, Budgets, MachineMemory
from orin_console.core.memory.prediction import Prediction
from orin_console.core.memory.scheduler import Scheduler
from orin_console.core.tier import Tier
from orin_console.testing.managers import make_manager

MB = 2**20
BUDGETS = Budgets(ram=250 * MB, swap=400 * MB, max_model=1024 * MB, reserve=100 * MB)


def _request(mid: str, size_mb: int) -> AdmissionRequest:
    prediction = Prediction(weights=size_mb * MB, kv_cache=0, compute=0, overhead=0, tier="ram", n_ctx=0,
                            basis="model", compute_at_load=0, details={})
    return AdmissionRequest(mid, prediction, "ram")


def test_a_measurement_grows_a_reservation_only_within_the_budget() -> None:
    s = Scheduler(lambda: BUDGETS, lambda: MachineMemory(mem_available=8192 * MB, swap_free=0))
    a, _ = s.reserve(_request("a", 100))
    b, _ = s.reserve(_request("b", 100))
    s.settle(a, 140 * MB)  # 240 of 250 MB: fits
    assert s.reserved()[Tier.RAM] == 240 * MB
    with pytest.raises(AdmissionRefused, match=r"`b` measures 120\.0 MB in the RAM tier") as refused:
        s.settle(b, 120 * MB)
    assert "RAM tier has 110.0 MB free of its 250.0 MB budget" in str(refused.value)
    assert s.reserved()[Tier.RAM] == 240 * MB  # nothing changed; the caller stops the runner
    with pytest.raises(AdmissionRefused):
        s.measured(a, 200 * MB)  # after use, the same rule
    assert s.reserved()[Tier.RAM] == 240 * MB
    s.release(b)
    s.measured(a, 200 * MB)
    assert s.reserved()[Tier.RAM] == 200 * MB


def test_a_load_bigger_than_predicted_that_does_not_fit_is_stopped_and_learned(workdir: Path) -> None:
    env = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_BALLAST_MB": "beta=80"}
    with make_manager(workdir, runner_env=env) as manager:
        alpha = manager.load("alpha", "ram").result(60)
        budget = (alpha.measured_bytes or 0) + (manager.prediction("beta", "ram").total * 3) // 2
        manager.budgets = Budgets(ram=budget, swap=manager.budgets.swap, max_model=manager.budgets.max_model,
                                  reserve=manager.budgets.reserve)
        assert manager.plan("beta", "ram").ok  # by its prediction it fits
        with pytest.raises(AdmissionRefused, match=r"more than the .* predicted"):
            manager.load("beta", "ram").result(60)
        status = manager.model_status("beta")
        assert status.state.value == "failed" and status.pid is None and "predicted" in (status.error or "")
        assert manager.scheduler.reserved()[Tier.RAM] <= budget
        assert [r.model_id for r in manager.scheduler.reservations()] == ["alpha"]
        assert not manager.plan("beta", "ram").ok  # the next prediction includes the measurement
