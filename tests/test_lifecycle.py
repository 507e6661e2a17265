"""The manager's life cycle: nothing starts before it is needed, close() leaves no process,
every wait is cancellable, and a warm request does no file work."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from orin_console.core import gguf
from orin_console.core.cancel import Cancelled, CancelToken
from orin_console.core.errors import OrinError
from orin_console.core.events.kinds import GenerationFinished, TierUsageChanged
from orin_console.core.manager import predictions
from orin_console.core.manager.manager import Manager
from orin_console.core.manager.types import ManagerClosed, ModelState
from orin_console.core.runner import GenerateRequest
from orin_console.core.tier import Tier
from orin_console.testing.managers import make_manager
from orin_console.testing.tiny_models import write_tiny_llama
from orin_console.testing.waits import wait_until

from runner_procs import runner_processes

CATALOG = "".join(
    f'[[models]]\nid = "{mid}"\npath = "{mid}.gguf"\ntasks = ["chat"]\ntier = "{tier}"\ncontext = 512\n\n'
    for mid, tier in (("alpha", "ram"), ("beta", "swap"), ("gamma", "disk"))
)
LONG = GenerateRequest(prompt="count", max_tokens=400, temperature=0.0)
SLOW_LOAD = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_LOAD_DELAY_S": "3"}
SLOW_TOKENS = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.02"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("life") / "tiny.gguf", n_ctx=512, ascii_output=True)


@pytest.fixture
def folder(tmp_path: Path, tiny: Path) -> Path:
    for mid in ("alpha", "beta", "gamma"):
        (tmp_path / f"{mid}.gguf").symlink_to(tiny)
    (tmp_path / "models.toml").write_text(CATALOG)
    return tmp_path


def assert_no_runner_left(within: float = 0.0) -> None:
    """No runner process right now (or within ``within`` seconds)."""
    if within:
        wait_until(lambda: not runner_processes(), timeout=within, what="every runner process to end")
    assert runner_processes() == []


def test_a_manager_starts_nothing_until_the_first_load(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[str] = []
    monkeypatch.setattr(predictions, "probe_gpu_offload", lambda python: probes.append(python) or False)
    manager = make_manager(folder, gpu_offload=None, spare_runner=True)
    try:
        manager.start()
        assert manager.plan("beta", "swap").ok and manager.status().models and list(manager.catalog)
        assert manager.tier_for("gamma") is Tier.SWAP and manager.tier_for("alpha") is Tier.RAM
        manager.plan("alpha", "ram")  # a dry run of a RAM-tier load
        manager.prediction("alpha", "ram")
        assert runner_processes() == [] and probes == []  # no spare, no probe
        manager.load("beta").result(60)
        assert runner_processes() and probes == []  # the runner (and from now on a spare)
        manager.load("alpha").result(60)
        manager.move("beta", "ram").result(60)
        assert len(probes) == 1  # asked once, by the first real RAM-tier load
    finally:
        manager.close()
    assert_no_runner_left()


def test_close_during_loads_leaves_no_process(folder: Path) -> None:
    manager = make_manager(folder, runner_env=SLOW_LOAD).start()
    futures = [manager.load(mid) for mid in ("alpha", "beta", "gamma")]
    wait_until(lambda: len(runner_processes()) >= 3, timeout=10, what="the runners to start loading")
    began = time.monotonic()
    manager.close()
    took = time.monotonic() - began
    print(f"close() during three loads took {took:.3f} s")
    assert_no_runner_left()
    assert took < 2.5  # the starting runners were killed, not waited for (each load takes 3 s)
    for future in futures:
        with pytest.raises(Cancelled):
            future.result(1)
    assert manager.scheduler.reserved() == {Tier.RAM: 0, Tier.SWAP: 0}
    with pytest.raises(ManagerClosed):
        manager.load("alpha")


def test_close_during_moves_leaves_no_process(folder: Path) -> None:
    manager = make_manager(folder, runner_env=SLOW_LOAD).start()
    try:
        loads = [manager.load("alpha", "swap"), manager.load("beta", "swap")]  # side by side: one load delay, not two
        for future in loads:
            future.result(60)
    except BaseException:
        manager.close()
        raise
    moves = [manager.move("alpha", "ram"), manager.move("beta", "ram")]
    wait_until(lambda: manager.model_status("beta").state == ModelState.MOVING, what="the moves to start")
    manager.close()
    assert_no_runner_left()
    for future in moves:
        with pytest.raises(Cancelled):
            future.result(1)
    assert manager.scheduler.reserved() == {Tier.RAM: 0, Tier.SWAP: 0}


def test_close_during_generations_leaves_no_process(folder: Path) -> None:
    manager = make_manager(folder, runner_env=SLOW_TOKENS).start()
    manager.load("alpha").result(60)
    outcomes: list[object] = []

    def consume() -> None:
        try:
            with manager.generate("alpha", LONG) as stream:
                last = list(stream)[-1]
                outcomes.append(last.stats.finish_reason if last.stats else "no stats")
        except OrinError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=consume) for _ in range(3)]  # one runs, two queue
    for t in threads:
        t.start()
    wait_until(lambda: manager.model_status("alpha").queued == 2, what="two generations to queue")
    manager.close()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 3, outcomes
    queued = [o for o in outcomes if isinstance(o, OrinError)]
    assert len(queued) >= 2 and all("shutting down" in str(o) for o in queued[:2]), outcomes
    assert all(o == "cancelled" or isinstance(o, OrinError) for o in outcomes), outcomes  # never ran to the end
    assert_no_runner_left()


def test_cancel_while_queued_returns_at_once_and_frees_the_place(folder: Path) -> None:
    with make_manager(folder, runner_env=SLOW_TOKENS, queue_limit=1) as manager:
        manager.load("alpha").result(60)
        first = manager.generate("alpha", LONG)
        next(first)
        token = CancelToken()
        raised: list[tuple[BaseException, float]] = []

        def queued() -> None:
            try:
                manager.generate("alpha", LONG, cancel=token)
            except Cancelled as exc:
                raised.append((exc, time.monotonic()))

        thread = threading.Thread(target=queued)
        thread.start()
        wait_until(lambda: manager.model_status("alpha").queued == 1, what="the request to queue")
        began = time.monotonic()
        token.cancel("the client went away")
        thread.join(5)
        assert raised, "the queued request was not cancelled"
        took = raised[0][1] - began
        print(f"cancel while queued returned in {took * 1000:.1f} ms")
        assert took < 1.0 and str(raised[0][0]) == "the client went away"
        assert manager.model_status("alpha").queued == 0  # the place is free
        first.close()
        with manager.generate("alpha", GenerateRequest(prompt="hi", max_tokens=2)) as stream:
            assert list(stream)[-1].done  # and the model serves the next request


def test_cancel_while_loading_returns_at_once(folder: Path) -> None:
    with make_manager(folder, runner_env=SLOW_LOAD) as manager:
        token = CancelToken()
        raised: list[float] = []

        def ask() -> None:
            try:
                manager.generate("alpha", LONG, cancel=token)
            except Cancelled:
                raised.append(time.monotonic())

        thread = threading.Thread(target=ask)
        thread.start()
        wait_until(lambda: manager.model_status("alpha").state == ModelState.LOADING, what="the load to start")
        began = time.monotonic()
        token.cancel()
        thread.join(5)
        assert raised, "the request waiting for the load was not cancelled"
        print(f"cancel while loading returned in {(raised[0] - began) * 1000:.1f} ms")
        assert raised[0] - began < 1.0


def test_unload_during_a_load_kills_the_starting_runner_and_releases_memory(folder: Path) -> None:
    with make_manager(folder, runner_env=SLOW_LOAD, spare_runner=False) as manager:
        usage = manager.bus.subscribe(kinds=(TierUsageChanged,))
        loading = manager.load("alpha")
        wait_until(lambda: manager.scheduler.reserved()[Tier.RAM] > 0, what="the load to reserve")
        assert manager.status().tiers[0].in_flight == ("alpha",)
        began = time.monotonic()
        assert manager.unload("alpha").result(10).state == ModelState.UNLOADED
        print(f"unload during a load took {time.monotonic() - began:.3f} s")
        with pytest.raises(Cancelled):
            loading.result(1)
        assert manager.scheduler.reserved() == {Tier.RAM: 0, Tier.SWAP: 0}
        assert_no_runner_left()  # the starting runner was killed, not left to finish its load
        events = [e for e in usage.drain() if isinstance(e, TierUsageChanged)]
        assert events[0].tiers[0].used > 0 and events[-1].tiers[0].used == 0  # published both ways


def test_a_warm_request_reads_no_header_and_plans_nothing(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[object] = []
    real = gguf.read_gguf
    monkeypatch.setattr(gguf, "read_gguf", lambda path, *a, **k: reads.append(path) or real(path, *a, **k))
    with make_manager(folder) as manager:
        manager.load("alpha").result(60)
        assert len(reads) == 1
        plans: list[object] = []
        real_plan = manager.scheduler.plan
        monkeypatch.setattr(manager.scheduler, "plan", lambda r: plans.append(r) or real_plan(r))
        for _ in range(3):
            with manager.generate("alpha", GenerateRequest(prompt="hi", max_tokens=2)) as stream:
                list(stream)
        assert reads == [folder / "alpha.gguf"] or len(reads) == 1
        assert plans == []
        manager.plan("alpha", "swap")
        manager.plan("beta", "swap")  # the same file under another id: one read per file
        assert len(reads) == 1
        (folder / "alpha.gguf").resolve().touch()  # a changed file is read again
        manager.plan("alpha", "swap")
        assert len(reads) == 2


def test_a_generation_closed_early_publishes_its_end_with_the_reason(folder: Path) -> None:
    with make_manager(folder) as manager:
        ends = manager.bus.subscribe(kinds=(GenerationFinished,))
        stream = manager.generate("alpha", LONG, request_id="req-7")
        next(stream)
        stream.close()
        event = ends.get(timeout=5)
        assert isinstance(event, GenerationFinished) and event.request_id == "req-7"
        assert event.finish_reason == "cancelled" and event.error


def test_close_twice_and_from_another_thread(folder: Path) -> None:
    manager: Manager = make_manager(folder).start()
    manager.load("beta").result(60)
    closer = threading.Thread(target=manager.close)
    closer.start()
    manager.close()
    closer.join(10)
    assert_no_runner_left(within=5)
