"""The scheduler alone: reservations, in-flight memory, moves, releases, races (no processes)."""

from __future__ import annotations

import threading

import pytest

from orin_console.core.memory.admission import AdmissionRefused, AdmissionRequest, Budgets, MachineMemory
from orin_console.core.memory.prediction import Prediction
from orin_console.core.memory.scheduler import Reserved, Scheduler
from orin_console.core.tier import Tier

MB = 2**20
BUDGETS = Budgets(ram=250 * MB, swap=400 * MB, max_model=1024 * MB, reserve=100 * MB)
PLENTY = MachineMemory(mem_available=8192 * MB, swap_free=0)


def request(mid: str, size_mb: int, tier: str = "ram") -> AdmissionRequest:
    prediction = Prediction(weights=size_mb * MB, kv_cache=0, compute=0, overhead=0, tier=tier, n_ctx=0,
                            basis="model", compute_at_load=0, details={})
    return AdmissionRequest(mid, prediction, tier)


def scheduler(machine: MachineMemory = PLENTY, **kw: object) -> Scheduler:
    return Scheduler(lambda: BUDGETS, lambda: machine, **kw)  # type: ignore[arg-type]


def test_reservations_fill_a_tier_and_release_frees_it() -> None:
    s = scheduler()
    a, decision = s.reserve(request("a", 100))
    assert decision.ok and s.reserved() == {Tier.RAM: 100 * MB, Tier.SWAP: 0}
    s.reserve(request("b", 100))
    with pytest.raises(AdmissionRefused) as refused:
        s.reserve(request("c", 100))
    text = str(refused.value)
    assert "cannot load `c` into the RAM tier" in text and "RAM tier has 50.0 MB free" in text
    assert "moving `a` (ram, 100.0 MB) to swap would" in text  # the itemised suggestion
    assert s.reserved()[Tier.RAM] == 200 * MB  # a refusal reserves nothing
    s.release(a)
    s.release(a)  # twice is harmless
    assert s.reserve(request("c", 100))[0].tier is Tier.RAM
    assert s.plan(request("d", 100)).ok is False  # the dry run sees the same reservations


def test_memory_in_flight_is_taken_from_the_machine_until_settled() -> None:
    machine = MachineMemory(mem_available=450 * MB, swap_free=0)  # 350 MB after the reserve
    s = scheduler(machine)
    first, _ = s.reserve(request("a", 150, "swap"))
    s.reserve(request("b", 150, "swap"))
    assert s.in_flight() == 300 * MB
    with pytest.raises(AdmissionRefused, match=r"the machine has 50\.0 MB available"):
        s.reserve(request("c", 150, "swap"))  # MemAvailable does not show a and b yet
    assert not s.plan(request("c", 100, "swap")).ok
    s.settle(first, measured=120 * MB)  # loaded: now MemAvailable shows it
    assert s.reserved()[Tier.SWAP] == 300 * MB  # still the larger of prediction and measurement
    assert s.in_flight() == 150 * MB
    assert s.plan(request("c", 100, "swap")).ok  # before settling: 100 MB would not fit the machine


def test_measurement_above_the_prediction_grows_the_reservation() -> None:
    s = scheduler()
    r, _ = s.reserve(request("a", 100))
    s.settle(r, measured=90 * MB)
    assert s.reserved()[Tier.RAM] == 100 * MB
    s.measured(r, 140 * MB)
    assert s.reserved()[Tier.RAM] == 140 * MB
    with pytest.raises(AdmissionRefused):
        s.reserve(request("b", 120))


def test_a_move_reserves_the_target_while_the_old_tier_is_held() -> None:
    s = scheduler()
    old, _ = s.reserve(request("a", 100, "swap"))
    new, decision = s.reserve(request("a", 100, "ram"))
    assert decision.action == "move" and decision.strategy == "make-before-break"
    assert s.reserved() == {Tier.RAM: 100 * MB, Tier.SWAP: 100 * MB}
    s.release(old)  # the old runner stopped
    assert s.reserved() == {Tier.RAM: 100 * MB, Tier.SWAP: 0}
    with pytest.raises(ValueError, match="already holds the RAM tier"):
        s.reserve(request("a", 100, "ram"))
    with pytest.raises(ValueError, match="disk tier"):
        s.reserve(request("a", 0, "disk"))
    s.release(new)


def test_every_change_is_reported_in_order() -> None:
    seen: list[tuple[Reserved, ...]] = []
    s = scheduler(on_change=seen.append)
    r, _ = s.reserve(request("a", 100))
    s.settle(r, 50 * MB)
    s.release(r)
    assert [tuple((x.model_id, x.bytes, x.in_flight) for x in snap) for snap in seen] == [
        (("a", 100 * MB, True),), (("a", 100 * MB, False),), ()]


def test_concurrent_reservations_never_exceed_the_budget() -> None:
    s = scheduler()
    barrier = threading.Barrier(10)
    admitted: list[str] = []
    refused: list[str] = []
    peak = 0
    lock = threading.Lock()

    def ask(i: int) -> None:
        nonlocal peak
        barrier.wait()
        try:
            s.reserve(request(f"m{i}", 60))
        except AdmissionRefused as exc:
            assert "RAM tier has" in str(exc)
            with lock:
                refused.append(f"m{i}")
            return
        with lock:
            admitted.append(f"m{i}")
            peak = max(peak, s.reserved()[Tier.RAM])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 4 and len(refused) == 6  # 4 x 60 MB fit in 250 MB
    assert peak <= BUDGETS.ram and s.reserved()[Tier.RAM] == 240 * MB
