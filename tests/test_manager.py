"""The manager facade with real runners and generated tiny models."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orin_console.core.cancel import Cancelled
from orin_console.core.errors import GGUFError, OrinError
from orin_console.core.events.kinds import LoadProgress, ManagerError, ModelStateChanged
from orin_console.core.manager.manager import Manager
from orin_console.core.manager.types import ModelBusy, ModelState
from orin_console.core.memory.admission import AdmissionRefused, Budgets, MachineMemory
from orin_console.core.runner import GenerateRequest, RunnerDied
from orin_console.testing.managers import make_manager as make_test_manager
from orin_console.testing.waits import wait_until

from conftest import TINY_CATALOG as CATALOG  # what conftest's ``workdir`` writes: alpha chat/ram, beta code/swap

LONG = GenerateRequest(prompt="count", max_tokens=1900, temperature=0.0)


def greedy(prompt: str = "hello", n: int = 12) -> GenerateRequest:
    return GenerateRequest(prompt=prompt, max_tokens=n, temperature=0.0)


def make_manager(workdir: Path, **kwargs: object) -> Manager:
    kwargs.setdefault("watch_interval_s", 0.05)
    kwargs.setdefault("runner_env", {"ORIN_RUNNER_TEST_HOOKS": "1"})
    return make_test_manager(workdir, **kwargs)


@pytest.fixture
def manager(workdir: Path) -> Iterator[Manager]:
    with make_manager(workdir) as mgr:
        yield mgr


def text_of(stream: object) -> str:
    return "".join(chunk.text for chunk in stream)  # type: ignore[attr-defined]


def test_load_generate_stream_unload(manager: Manager) -> None:
    status = manager.load("alpha").result(60)
    assert status.state == ModelState.READY and status.tier == "ram" and status.pid
    assert status.measured_bytes and status.predicted_bytes
    pid = status.pid
    chunks = list(manager.generate("alpha", greedy()))
    assert chunks[-1].done and chunks[-1].stats is not None and chunks[-1].stats.tokens >= 1
    assert len(chunks) > 2  # streamed piece by piece
    assert text_of(manager.generate("alpha", greedy())) == "".join(c.text for c in chunks)  # greedy is deterministic
    usage = manager.usage.get("alpha")
    assert usage.requests == 2 and usage.tokens >= 2 and usage.tok_per_s
    manager.unload("alpha").result(30)
    assert manager.model_status("alpha").state == ModelState.UNLOADED
    assert manager.model_status("alpha").tier == "disk"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the process is gone: its memory came back


def test_two_models_resident_and_status(manager: Manager) -> None:
    manager.load("alpha").result(60)
    manager.load("beta").result(60)
    status = manager.status()
    tiers = {t.tier: t for t in status.tiers}
    assert tiers["ram"].models == ("alpha",) and tiers["swap"].models == ("beta",)
    assert tiers["ram"].used > 0 and tiers["ram"].free < tiers["ram"].budget
    assert {m.resident for m in status.models} == {"pinned", "pageable"} or \
        {m.resident for m in status.models} == {"resident, not pinned", "pageable"}
    a = text_of(manager.generate("alpha", greedy()))
    b = text_of(manager.generate("beta", greedy()))
    assert a and b and a != b


def test_every_tier_move(manager: Manager) -> None:
    assert manager.load("beta", "ram").result(60).tier == "ram"
    before = text_of(manager.generate("beta", greedy()))
    moved = manager.move("beta", "swap").result(60)
    assert moved.tier == "swap" and moved.resident == "pageable" and moved.move_seconds_per_gb
    assert text_of(manager.generate("beta", greedy())) == before
    assert manager.move("beta", "ram").result(60).tier == "ram"
    assert manager.move("beta", "disk").result(60).tier == "disk"
    assert manager.move("beta", "swap").result(60).tier == "swap"
    assert manager.move("beta", "disk").result(60).state == ModelState.UNLOADED
    assert manager.load("beta", "swap").result(60).tier == "swap"
    assert manager.load("beta", "swap").result(60).tier == "swap"  # already there: a no-op


def test_move_keeps_model_available_make_before_break(manager: Manager) -> None:
    manager.load("alpha", "swap").result(60)
    old_pid = manager.model_status("alpha").pid
    stream = manager.generate("alpha", LONG)
    first = next(stream)
    future = manager.move("alpha", "ram")
    time.sleep(0.3)
    assert manager.model_status("alpha").state in (ModelState.MOVING, ModelState.READY)
    more = [c for c, _ in zip(stream, range(5), strict=False)]  # the old runner still serves
    assert first.text is not None and len(more) == 5
    stream.close()
    status = future.result(60)
    assert status.tier == "ram" and status.pid != old_pid


def test_concurrent_loads_share_one(manager: Manager) -> None:
    futures = []
    barrier = threading.Barrier(6)

    def ask() -> None:
        barrier.wait()
        futures.append(manager.load("alpha"))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(f) for f in futures}) == 1
    pids = {f.result(60).pid for f in futures}
    assert len(pids) == 1


def test_cancel_stops_within_a_token(manager: Manager) -> None:
    manager.load("alpha").result(60)
    stream = manager.generate("alpha", LONG)
    next(stream)
    assert manager.cancel("alpha")
    rest = list(stream)
    assert rest[-1].done and rest[-1].stats is not None
    assert rest[-1].stats.finish_reason == "cancelled"
    # Pieces already on their way are delivered; the runner itself stopped far short of the end.
    assert rest[-1].stats.tokens < LONG.max_tokens // 2
    assert text_of(manager.generate("alpha", greedy())) != ""  # usable again


def test_busy_queue_is_a_clear_error(workdir: Path) -> None:
    with make_manager(workdir, queue_limit=1) as manager:
        manager.load("alpha").result(60)
        first = manager.generate("alpha", LONG)
        next(first)
        waiter_done = threading.Event()

        def queued() -> None:
            with manager.generate("alpha", greedy(n=2)) as s:
                list(s)
            waiter_done.set()

        t = threading.Thread(target=queued)
        t.start()
        wait_until(lambda: manager.model_status("alpha").queued >= 1, timeout=10, what="a request queued on alpha")
        with pytest.raises(ModelBusy, match="busy"):
            manager.generate("alpha", greedy())
        first.close()
        t.join(30)
        assert waiter_done.is_set()


def test_admission_refusal_is_itemised_and_plan_agrees(workdir: Path) -> None:
    budgets = Budgets(ram=120 * 2**20, swap=10 * 2**30, max_model=7 * 2**30, reserve=512 * 2**20)
    with make_manager(workdir, budgets=budgets) as manager:
        manager.load("alpha", "ram").result(60)
        plan = manager.plan("beta", "ram")
        assert not plan.ok
        with pytest.raises(AdmissionRefused) as info:
            manager.load("beta", "ram").result(60)
        text = str(info.value)
        assert "cannot load `beta` into the RAM tier" in text and "weights" in text and "KV" in text
        assert "moving `alpha`" in text and "to swap would" in text
        assert text == plan.explain()
        refused = manager.model_status("beta")
        assert refused.state == ModelState.UNLOADED and refused.error == text  # nothing started
        # Following the suggestion makes it fit.
        manager.move("alpha", "swap").result(60)
        assert manager.plan("beta", "ram").ok
        assert manager.load("beta", "ram").result(60).tier == "ram"


def test_machine_memory_refusal(workdir: Path) -> None:
    tight = MachineMemory(mem_available=520 * 2**20, swap_free=0)
    with make_manager(workdir, machine_memory=lambda: tight) as manager:
        decision = manager.plan("alpha", "ram")
        assert not decision.ok and "reserve" in decision.explain()
        with pytest.raises(AdmissionRefused):
            manager.load("alpha").result(60)


def test_runner_killed_mid_stream(manager: Manager) -> None:
    manager.load("alpha").result(60)
    manager.load("beta").result(60)
    stream = manager.generate("alpha", LONG)
    next(stream)
    os.kill(manager.model_status("alpha").pid, signal.SIGKILL)  # type: ignore[arg-type]
    with pytest.raises(RunnerDied, match="SIGKILL"):
        for _ in stream:
            pass
    wait_until(lambda: manager.model_status("alpha").state == ModelState.FAILED, timeout=10,
               what="alpha to be marked failed")
    assert "SIGKILL" in (manager.model_status("alpha").error or "")
    assert text_of(manager.generate("beta", greedy()))  # the other model is untouched
    assert text_of(manager.generate("alpha", greedy()))  # the next request restarts it
    assert manager.model_status("alpha").state == ModelState.READY


def test_runner_abort_reports_reason_and_restarts(manager: Manager) -> None:
    manager.load("alpha").result(60)
    errors = manager.bus.subscribe(kinds=(ManagerError,))
    runner = manager._model("alpha").runner
    assert runner is not None
    runner.test_hook("abort")
    event = errors.get(timeout=10)
    assert isinstance(event, ManagerError) and event.model_id == "alpha"
    assert "abort" in event.message.lower()
    assert manager.model_status("alpha").state == ModelState.FAILED
    assert manager.load("alpha").result(60).state == ModelState.READY


def test_model_file_deleted_or_truncated_before_load(manager: Manager, workdir: Path, tiny_pair: Path) -> None:
    (workdir / "beta.gguf").unlink()
    with pytest.raises(GGUFError, match="file"):
        manager.load("beta").result(60)
    status = manager.model_status("beta")
    assert status.state == ModelState.FAILED and status.error
    data = (workdir / "alpha.gguf").read_bytes()
    (workdir / "beta.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(GGUFError):
        manager.load("beta").result(60)
    shutil.copyfile(tiny_pair / "beta.gguf", workdir / "beta.gguf")  # a good file again
    assert manager.load("beta").result(60).state == ModelState.READY


def test_checksum_mismatch_is_refused(workdir: Path) -> None:
    text = CATALOG.replace('context = 2048\n\n[[models]]', 'context = 2048\nsha256 = "' + "0" * 64 + '"\n\n[[models]]')
    assert "sha256" in text
    (workdir / "models.toml").write_text(text)
    with make_manager(workdir) as manager, pytest.raises(OrinError, match="sha256"):
        manager.load("alpha").result(60)


def test_invalid_catalog_edit_while_running(manager: Manager, workdir: Path) -> None:
    manager.load("alpha").result(60)
    sub = manager.bus.subscribe(kinds=(ManagerError,))
    (workdir / "models.toml").write_text(CATALOG.replace('tier = "swap"', 'tier = "gpu"'))
    event = sub.get(timeout=10)
    assert isinstance(event, ManagerError) and "field 'tier'" in event.message
    assert [e.id for e in manager.catalog] == ["alpha", "beta"]
    assert text_of(manager.generate("alpha", greedy()))  # still serving
    # A valid edit lands: a new context for alpha.
    (workdir / "models.toml").write_text(CATALOG.replace("context = 2048\n", "context = 128\n", 1))
    wait_until(lambda: manager.catalog.get("alpha").context == 128, timeout=10, what="the edit to reach the catalog")


def test_pin_and_events(manager: Manager, workdir: Path) -> None:
    sub = manager.bus.subscribe(kinds=(ModelStateChanged, LoadProgress))
    manager.load("beta").result(60)
    events = sub.drain()
    states = [e.status.state for e in events if isinstance(e, ModelStateChanged)]
    assert ModelState.LOADING in states and states[-1] == ModelState.READY
    assert any(isinstance(e, LoadProgress) for e in events)
    assert manager.pin("beta").pin is True
    assert "pin = true" in (workdir / "models.toml").read_text()
    assert (workdir / "models.toml").read_text().startswith("# test catalog")
    assert manager.pin("beta", False).pin is False


def test_disk_tier_model_loads_into_swap_when_asked(workdir: Path) -> None:
    (workdir / "models.toml").write_text(CATALOG.replace('tier = "swap"', 'tier = "disk"'))
    with make_manager(workdir) as manager:
        assert manager.model_status("beta").preferred_tier == "disk"
        assert text_of(manager.generate("beta", greedy()))
        assert manager.model_status("beta").tier == "swap"


def test_usage_survives_restart(workdir: Path) -> None:
    with make_manager(workdir) as manager:
        text_of(manager.generate("alpha", greedy()))
    with make_manager(workdir) as manager:
        assert manager.usage.get("alpha").requests == 1


def test_runner_gpu_memory_comes_from_the_telemetry_sample(workdir: Path) -> None:
    """On a Jetson, jtop reports GPU memory per process; the manager adds it to the runner's figure."""
    import psutil

    from orin_console.testing.telemetry_fakes import make_sample

    gpu_bytes = 300 * 2**20

    class JtopLikeSampler:
        def latest(self) -> object:
            pids = [child.pid for child in psutil.Process().children(recursive=True)]
            return make_sample("jtop", gpu_process_bytes={pid: gpu_bytes for pid in pids})

    with make_manager(workdir, telemetry=JtopLikeSampler()) as manager:
        status = manager.load("alpha").result(60)
        model_memory = manager._model("alpha").measured
        assert model_memory is not None and model_memory.gpu == gpu_bytes and model_memory.gpu_source == "jtop"
        assert status.measured_bytes is not None and status.measured_bytes >= gpu_bytes + model_memory.rss


def test_removing_a_loaded_model_from_the_file_unloads_it(manager: Manager, workdir: Path) -> None:
    pid = manager.load("alpha").result(60).pid
    manager.load("beta").result(60)
    (workdir / "models.toml").write_text(CATALOG[CATALOG.index("[[models]]\nid = \"beta\""):])
    wait_until(lambda: "alpha" not in manager._models, timeout=10, what="alpha to be dropped from the manager")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # type: ignore[arg-type]
    assert text_of(manager.generate("beta", greedy()))
    # The watcher is still alive: the next edit lands too.
    (workdir / "models.toml").write_text(CATALOG)
    wait_until(lambda: "alpha" in manager.catalog, timeout=10, what="alpha to come back into the catalog")
    assert manager.model_status("alpha").state == ModelState.UNLOADED


def test_unload_during_a_load_wins(manager: Manager) -> None:
    loading = manager.load("alpha")
    unloading = manager.unload("alpha")
    assert unloading is not loading
    assert unloading.result(60).state == ModelState.UNLOADED
    with contextlib.suppress(Cancelled):  # cancelled by the unload, unless it had just finished
        loading.result(60)
    assert manager.model_status("alpha").state == ModelState.UNLOADED
    assert manager.model_status("alpha").pid is None
