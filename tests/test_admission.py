"""Admission control: limits, itemised refusals, suggestions, moves, and the dry-run plan."""

from __future__ import annotations

import copy

import pytest

from orin_console.core.errors import OrinError
from orin_console.core.memory.admission import (
    AdmissionRefused,
    AdmissionRequest,
    Budgets,
    MachineMemory,
    Resident,
    admit,
    plan_load,
)
from orin_console.core.memory.prediction import GB, MB, Prediction
from orin_console.core.settings import load_settings

NEED = Prediction(weights=1400 * MB, kv_cache=400 * MB, compute=100 * MB, overhead=0, tier="ram")
"""1.9 GB: DESIGN.md's example."""
BUDGETS = Budgets(ram=5 * GB, swap=10 * GB, max_model=7 * GB, reserve=512 * MB)
ROOMY = MachineMemory(mem_available=7 * GB, swap_free=8 * GB)


def request(tier: str = "ram", model_id: str = "new", prediction: Prediction = NEED) -> AdmissionRequest:
    return AdmissionRequest(model_id, prediction, tier)


def test_fits() -> None:
    d = admit(request(), [Resident("phi", "ram", 2 * GB)], BUDGETS, ROOMY)
    assert d.ok and d.action == "load" and not d.reasons and not d.suggestions
    assert d.needed["total"] == 1900 * MB and d.needed["weights"] == 1400 * MB
    assert d.free == {"tier": 3 * GB, "machine": 7 * GB - 512 * MB}
    assert d.explain() == (
        "`new` fits the RAM tier: needs 1.9 GB (weights 1.4 + KV 0.4 + compute 0.1 + runner 0.0 GB); "
        "RAM tier has 3.0 GB free of its 5.0 GB budget; "
        "the machine has 6.5 GB available (MemAvailable 7.0 GB minus the 512.0 MB reserve)."
    )


def test_refused_by_the_tier_budget_with_the_design_example_suggestions() -> None:
    residents = [
        Resident("phi", "ram", 1800 * MB),
        Resident("llama", "ram", 2100 * MB, pinned=True),
        Resident("qwen-coder", "swap", 3 * GB),
    ]
    with pytest.raises(AdmissionRefused) as caught:
        admit(request(), residents, BUDGETS, ROOMY)
    d = caught.value.decision
    assert isinstance(caught.value, OrinError) and str(caught.value) == d.explain()
    assert not d.ok and [lim.name for lim in d.limits if not lim.ok] == ["tier"]
    assert d.free["tier"] == 5 * GB - 3900 * MB
    text = d.explain()
    assert text.startswith(
        "cannot load `new` into the RAM tier: needs 1.9 GB "
        "(weights 1.4 + KV 0.4 + compute 0.1 + runner 0.0 GB); RAM tier has 1.2 GB free"
    )
    assert "moving `phi` (ram, 1.8 GB) to swap would;" in text
    assert "unloading `qwen-coder` (swap, 3.0 GB) would not help" in text
    assert text.endswith("`llama` is pinned.")
    helpful = [s for s in d.suggestions if s.helps]
    assert [(s.action, s.model_id, s.to_tier) for s in helpful] == [("move", "phi", "swap")]
    assert all(s.model_id != "llama" for s in d.suggestions)
    assert d.pinned == ("llama",)


def test_refused_by_mem_available_minus_the_reserve() -> None:
    tight = MachineMemory(mem_available=2 * GB, swap_free=8 * GB)
    d = plan_load(request(), [], BUDGETS, tight)
    assert not d.ok and d.reasons == (
        "the machine has 1.5 GB available (MemAvailable 2.0 GB minus the 512.0 MB reserve)",
    )
    assert d.free["machine"] == 1536 * MB
    # Free swap does not count for the RAM tier, but does for the swap tier.
    assert plan_load(request("swap"), [], BUDGETS, tight).ok


def test_swap_tier_counts_mem_available_plus_free_swap() -> None:
    d = plan_load(request("swap"), [], BUDGETS, MachineMemory(mem_available=GB, swap_free=GB // 2))
    assert not d.ok
    assert d.reasons == (
        "the machine has 1.0 GB available (MemAvailable 1.0 GB + free swap 512.0 MB minus the "
        "512.0 MB reserve)",
    )
    assert plan_load(request("swap"), [], BUDGETS, MachineMemory(GB, 2 * GB)).ok


def test_refused_over_the_per_model_maximum_with_no_suggestions() -> None:
    budgets = Budgets(ram=5 * GB, swap=10 * GB, max_model=1536 * MB, reserve=512 * MB)
    d = plan_load(request(), [Resident("phi", "ram", GB)], budgets, ROOMY)
    assert not d.ok and d.reasons == ("over the per-model maximum of 1.5 GB",)
    assert d.suggestions == () and d.together == ()
    assert "no single move or unload" in d.explain()


def test_machine_shortage_is_helped_by_unloading_not_by_moving() -> None:
    tight = MachineMemory(mem_available=2 * GB, swap_free=8 * GB)
    residents = [Resident("phi", "ram", GB, busy=True), Resident("tiny", "swap", 100 * MB)]
    d = plan_load(request(), residents, BUDGETS, tight)
    by_model = {s.model_id: s for s in d.suggestions}
    assert by_model["phi"].action == "unload" and by_model["phi"].helps
    assert "unloading `phi` (ram, 1.0 GB, busy) would" in d.explain()
    assert not by_model["tiny"].helps


def test_file_backed_weights_are_not_counted_as_freed_machine_memory() -> None:
    tight = MachineMemory(mem_available=2 * GB, swap_free=0)
    mapped = Resident("phi", "swap", GB, file_backed=900 * MB)
    d = plan_load(request(), [mapped], BUDGETS, tight)
    assert not d.ok and not any(s.helps for s in d.suggestions)


def test_a_move_that_the_other_tier_cannot_take_would_not_help() -> None:
    budgets = Budgets(ram=5 * GB, swap=2 * GB, max_model=7 * GB, reserve=512 * MB)
    residents = [Resident("phi", "ram", 3800 * MB), Resident("q", "swap", GB, pinned=True)]
    d = plan_load(request(), residents, budgets, ROOMY)
    (s,) = d.suggestions
    assert (s.action, s.helps) == ("unload", True)  # the swap tier has only 1.0 GB free


def test_joint_unload_when_no_single_action_is_enough() -> None:
    residents = [
        Resident("a", "ram", 1500 * MB),
        Resident("b", "ram", 1500 * MB),
        Resident("c", "ram", 1500 * MB),
    ]
    budgets = Budgets(ram=5 * GB, swap=GB, max_model=7 * GB, reserve=512 * MB)
    d = plan_load(request(prediction=Prediction(2500 * MB, 500 * MB, 100 * MB, 0)), residents,
                  budgets, ROOMY)
    assert not d.ok and not any(s.helps for s in d.suggestions)
    assert len(d.together) == 2
    assert "together would" in d.explain()


def test_plan_is_a_dry_run_and_admit_gives_the_same_answer() -> None:
    residents = [Resident("phi", "ram", 4 * GB), Resident("q", "swap", GB)]
    before = copy.deepcopy(residents)
    first = plan_load(request(), residents, BUDGETS, ROOMY)
    second = plan_load(request(), residents, BUDGETS, ROOMY)
    assert residents == before
    assert first == second and not first.ok
    with pytest.raises(AdmissionRefused) as caught:
        admit(request(), residents, BUDGETS, ROOMY)
    assert caught.value.decision == first


def test_already_in_the_tier_is_a_no_op_and_disk_means_unload() -> None:
    residents = [Resident("phi", "ram", 4 * GB)]
    tiny_machine = MachineMemory(mem_available=0, swap_free=0)
    noop = admit(request(model_id="phi"), residents, BUDGETS, tiny_machine)
    assert (noop.ok, noop.action) == (True, "noop")
    unload = admit(request("disk", "phi"), residents, BUDGETS, tiny_machine)
    assert (unload.ok, unload.action, unload.frees) == (True, "unload", 4 * GB)
    assert unload.explain() == "unloading `phi` frees 4.0 GB of the RAM tier."
    assert admit(request("disk", "ghost"), residents, BUDGETS, tiny_machine).action == "noop"
    with pytest.raises(ValueError, match="unknown tier"):
        plan_load(request("gpu"), residents, BUDGETS, ROOMY)


def test_a_move_frees_the_old_tier_and_is_make_before_break() -> None:
    # `phi` in swap uses 1.9 GB; the RAM tier has exactly room for it.
    residents = [Resident("phi", "swap", 1900 * MB), Resident("x", "ram", 5 * GB - 1900 * MB)]
    d = admit(request(model_id="phi"), residents, BUDGETS, ROOMY)
    assert (d.ok, d.action, d.strategy, d.from_tier) == (True, "move", "make-before-break", "swap")
    assert d.free["tier"] == 1900 * MB
    assert "make-before-break" in d.explain()
    # Moving ram -> swap: the model's RAM bytes do not count against the swap tier.
    full_swap = [Resident("phi", "ram", 1900 * MB), Resident("y", "swap", 10 * GB - 1900 * MB)]
    assert admit(request("swap", "phi"), full_swap, BUDGETS, ROOMY).ok


def test_a_move_falls_back_to_break_before_make_only_when_the_machine_needs_it() -> None:
    residents = [Resident("phi", "swap", 1900 * MB)]
    # 1.8 GB available - 0.5 reserve = 1.3 GB: both runners at once do not fit; after the
    # old one stops (it gives back 1.9 GB), the new one does.
    tight = MachineMemory(mem_available=1800 * MB, swap_free=0)
    d = admit(request(model_id="phi"), residents, BUDGETS, tight)
    assert (d.ok, d.strategy) == (True, "break-before-make")
    assert "unavailable while it restarts" in d.explain()
    # Mapped weights come back to the page cache, not to MemAvailable: then it is refused.
    mapped = [Resident("phi", "swap", 1900 * MB, file_backed=1400 * MB)]
    refused = plan_load(request(model_id="phi"), mapped, BUDGETS, tight)
    assert not refused.ok and refused.action == "move"
    assert refused.explain().startswith("cannot move `phi` from swap to the RAM tier")


def test_budgets_come_from_the_settings() -> None:
    b = Budgets.from_settings(load_settings(ram_budget_gb=4.5, reserve_mb=256))
    assert (b.ram, b.swap, b.max_model, b.reserve) == (int(4.5 * GB), 10 * GB, 7 * GB, 256 * MB)
