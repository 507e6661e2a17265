"""Many callers at once: the scheduler admits exactly what fits, and no tier ever goes over.

Every test samples the reservations from another thread every few milliseconds while loads,
moves, the preloader and the optimiser race, and checks the invariant at each sample.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import pytest

from orin_console.core.errors import OrinError
from orin_console.core.manager.manager import Manager
from orin_console.core.manager.types import ModelState
from orin_console.core.memory.admission import AdmissionRefused, Budgets
from orin_console.core.placement.optimiser import AutoOptimiser
from orin_console.core.placement.preload import Preloader
from orin_console.core.runner import GenerateRequest
from orin_console.core.tier import Tier
from orin_console.testing.managers import make_manager
from orin_console.testing.tiny_models import write_tiny_llama
from orin_console.testing.waits import wait_until

from runner_procs import FakeMachine, runner_processes

GB = 2**30
IDS = [f"m{i}" for i in range(6)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("conc") / "tiny.gguf", n_ctx=512)


def catalog(folder: Path, tiny: Path, tier: str = "ram") -> None:
    text = ""
    for mid in IDS:
        (folder / f"{mid}.gguf").symlink_to(tiny)
        text += f'[[models]]\nid = "{mid}"\npath = "{mid}.gguf"\ntasks = ["chat"]\ntier = "{tier}"\ncontext = 512\n\n'
    (folder / "models.toml").write_text(text)


def size_of(folder: Path, tier: str) -> int:
    """One model's predicted bytes in ``tier`` (a manager that loads nothing)."""
    with make_manager(folder) as probe:
        return probe.prediction("m0", tier).total


class Sampler:
    """Check ``check()`` every 2 ms on a thread until stopped; keep every violation."""

    def __init__(self, check: Callable[[], str | None]) -> None:
        self.check = check
        self.violations: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            problem = self.check()
            self.samples += 1
            if problem:
                self.violations.append(problem)
            time.sleep(0.002)

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


def within_budgets(manager: Manager) -> str | None:
    reserved = manager.scheduler.reserved()
    for tier in (Tier.RAM, Tier.SWAP):
        if reserved[tier] > manager.budgets.of(tier):
            return f"{tier.value}: {reserved[tier]} reserved > budget {manager.budgets.of(tier)}"
    for usage in manager.status().tiers:
        if usage.used > usage.budget:
            return f"status {usage.tier}: {usage.used} > {usage.budget}"
    return None


def race(calls: list[Callable[[], Future]]) -> list[object]:  # type: ignore[type-arg]
    """Run each call on its own thread at the same moment; each outcome is a status or an error."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = calls[i]().result(60)
        except OrinError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return outcomes


def no_runner_left() -> None:
    wait_until(lambda: not runner_processes(), timeout=10, what="every runner process to end")


def test_concurrent_loads_admit_exactly_what_fits_the_tier(tmp_path: Path, tiny: Path) -> None:
    catalog(tmp_path, tiny)
    size = size_of(tmp_path, "ram")
    budgets = Budgets(ram=size * 5 // 2, swap=4 * GB, max_model=4 * GB, reserve=0)  # holds 2
    with make_manager(tmp_path, budgets=budgets) as manager:
        with Sampler(lambda: within_budgets(manager)).running() as sampler:
            outcomes = race([lambda mid=mid: manager.load(mid, "ram") for mid in IDS])
        admitted = [o for o in outcomes if not isinstance(o, Exception)]
        refused = [o for o in outcomes if isinstance(o, AdmissionRefused)]
        assert len(admitted) == 2 and len(refused) == 4, outcomes
        for exc in refused:
            text = str(exc)
            assert "into the RAM tier" in text and "RAM tier has" in text and "weights" in text
        assert sampler.samples > 10 and sampler.violations == []
        ram = next(t for t in manager.status().tiers if t.tier == "ram")
        assert len(ram.models) == 2 and ram.used <= ram.budget and ram.in_flight == ()
        for mid in IDS:
            status = manager.model_status(mid)
            assert status.state in (ModelState.READY, ModelState.UNLOADED), status
    no_runner_left()


def test_loads_in_flight_count_against_the_machine(tmp_path: Path, tiny: Path) -> None:
    """MemAvailable does not show a load until it is done: the scheduler subtracts it itself."""
    catalog(tmp_path, tiny, tier="swap")
    size = size_of(tmp_path, "swap")
    reserve = 64 * 2**20
    machine = FakeMachine(total=reserve + size * 5 // 2)  # room for 2 after the reserve
    budgets = Budgets(ram=4 * GB, swap=4 * GB, max_model=4 * GB, reserve=reserve)
    with make_manager(tmp_path, budgets=budgets, machine_memory=machine) as manager:
        machine.manager = manager

        def invariant() -> str | None:
            total = sum(manager.scheduler.reserved().values())
            return f"{total} reserved > {machine.total - reserve}" if total > machine.total - reserve else None

        with Sampler(invariant).running() as sampler:
            outcomes = race([lambda mid=mid: manager.load(mid, "swap") for mid in IDS])
        admitted = [o for o in outcomes if not isinstance(o, Exception)]
        refused = [o for o in outcomes if isinstance(o, AdmissionRefused)]
        assert len(admitted) == 2 and len(refused) == 4, outcomes
        assert all("the machine has" in str(exc) and "reserve" in str(exc) for exc in refused)
        assert sampler.violations == []
    no_runner_left()


def test_moves_racing_loads_never_overfill_the_target(tmp_path: Path, tiny: Path) -> None:
    catalog(tmp_path, tiny)
    size = size_of(tmp_path, "ram")
    budgets = Budgets(ram=size * 5 // 2, swap=4 * GB, max_model=4 * GB, reserve=0)
    with make_manager(tmp_path, budgets=budgets) as manager:
        for mid in IDS[:3]:
            manager.load(mid, "swap").result(60)
        pids = {mid: manager.model_status(mid).pid for mid in IDS[:3]}
        calls = [lambda mid=mid: manager.move(mid, "ram") for mid in IDS[:3]]
        calls += [lambda mid=mid: manager.load(mid, "ram") for mid in IDS[3:]]
        with Sampler(lambda: within_budgets(manager)).running() as sampler:
            outcomes = race(calls)
        assert sum(not isinstance(o, Exception) for o in outcomes) == 2, outcomes
        assert all(isinstance(o, AdmissionRefused) for o in outcomes if isinstance(o, Exception))
        assert sampler.violations == []
        for mid, outcome in zip(IDS[:3], outcomes[:3], strict=True):
            status = manager.model_status(mid)
            if isinstance(outcome, AdmissionRefused):  # a refused move leaves the model serving
                # (and the swap tier holds only those: the moved ones gave their reservation back)
                assert (status.state, status.tier, status.pid) == (ModelState.READY, "swap", pids[mid])
            else:
                assert status.tier == "ram" and status.pid != pids[mid]
        swap = next(t for t in manager.status().tiers if t.tier == "swap")
        assert set(swap.models) == {mid for mid, o in zip(IDS[:3], outcomes[:3], strict=True)
                                    if isinstance(o, AdmissionRefused)}
    no_runner_left()


def test_preloader_and_optimiser_race_loads_within_budgets(tmp_path: Path, tiny: Path) -> None:
    catalog(tmp_path, tiny)
    size = size_of(tmp_path, "ram")
    budgets = Budgets(ram=size * 5 // 2, swap=size * 3 // 2, max_model=4 * GB, reserve=0)
    request = GenerateRequest(prompt="hi", max_tokens=2, temperature=0)
    with make_manager(tmp_path, budgets=budgets) as manager:
        for mid in IDS:
            manager.usage.record(mid)
        optimiser = AutoOptimiser(manager, interval_s=0.05, enabled=True, apply_timeout=60)
        preloader = Preloader(manager, min_count=1, min_share=0.3)
        errors: list[BaseException] = []

        def client(ids: list[str]) -> None:
            for mid in ids * 2:
                try:
                    with manager.generate(mid, request) as stream:
                        list(stream)
                    preloader.after(mid)
                except OrinError as exc:  # refused, or in transition for the optimiser
                    if not isinstance(exc, AdmissionRefused) and "wait for it" not in str(exc) \
                            and "unloaded" not in str(exc):
                        errors.append(exc)

        with Sampler(lambda: within_budgets(manager)).running() as sampler, optimiser, preloader:
            threads = [threading.Thread(target=client, args=(IDS[i::3],)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        assert sampler.samples > 10 and sampler.violations == [], sampler.violations[:3]
        assert errors == []
    no_runner_left()
