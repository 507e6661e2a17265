"""The composition root: ``create_core`` builds every part, starts them in order, closes them
in reverse, and nothing starts a process before it is needed."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from orin_console.cli.main import main
from orin_console.core import Core, create_core
from orin_console.core.events.kinds import PlanChanged
from orin_console.core.settings import load_settings
from orin_console.testing.tiny_models import write_tiny_llama
from orin_console.testing.waits import wait_until

CATALOG = ('[[models]]\nid = "alpha"\npath = "alpha.gguf"\ntasks = ["chat"]\ntier = "swap"\ncontext = 512\n\n'
           '[[models]]\nid = "beta"\npath = "beta.gguf"\ntasks = ["code"]\ntier = "ram"\ncontext = 512\n')


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_tiny_llama(tmp_path / "alpha.gguf", n_ctx=512, ascii_output=True)
    write_tiny_llama(tmp_path / "beta.gguf", seed=7, n_ctx=512, ascii_output=True)
    (tmp_path / "models.toml").write_text(CATALOG)
    return tmp_path


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fail any attempt to start a process (a runner, the spare, the GPU probe)."""
    started: list[object] = []

    class Refused(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, args: object, *rest: object, **kw: object) -> None:
            started.append(args)
            raise AssertionError(f"a process was started: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", Refused)
    return started


def settings_in(folder: Path, **overrides: object) -> object:
    return load_settings(env={}, catalog_path=folder / "models.toml", state_dir=folder / "state", **overrides)


def test_building_starting_and_closing_a_core_starts_no_process(folder: Path, no_processes: list[object]) -> None:
    core = create_core(settings_in(folder), watch_interval_s=0.05)  # type: ignore[arg-type]
    assert isinstance(core, Core)
    with core:
        assert core.sampler is not None and core.optimiser is not None and core.preloader is None
        core.manager.plan("beta")  # a dry run of a RAM-tier load: no probe, no runner
        core.manager.status()
    assert core.closed
    assert no_processes == []


def test_plan_and_models_list_start_no_process(folder: Path, no_processes: list[object],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--catalog", str(folder / "models.toml"), "plan"]) == 0
    assert main(["--catalog", str(folder / "models.toml"), "models", "list"]) == 0
    assert "alpha" in capsys.readouterr().out
    assert no_processes == []


def test_services_start_in_order_and_close_in_reverse(folder: Path) -> None:
    core = create_core(settings_in(folder, preload=True, auto_optimise_interval_s=10),  # type: ignore[arg-type]
                       watch_interval_s=0.05, n_threads=1, gpu_offload=False)
    order: list[str] = []
    for name in ("sampler", "optimiser", "preloader"):
        part = getattr(core, name)
        for verb in ("start", "stop"):
            original = getattr(part, verb)

            def record(*a: object, _o: object = original, _n: str = f"{verb} {name}", **k: object) -> object:
                order.append(_n)
                return _o(*a, **k)  # type: ignore[operator]

            setattr(part, verb, record)
    manager_close = core.manager.close

    def close_manager(*a: object, **k: object) -> None:
        order.append("close manager")
        manager_close(*a, **k)

    core.manager.close = close_manager  # type: ignore[method-assign]
    with core:
        plans = core.bus.subscribe(kinds=(PlanChanged,))
        core.optimiser.run_once()  # type: ignore[union-attr]
        assert wait_until(lambda: plans.get(timeout=0.1), what="the plan to be published")
    assert order == ["start sampler", "start optimiser", "start preloader",
                     "stop preloader", "stop optimiser", "close manager", "stop sampler"]
    core.close()  # twice is harmless
    assert order.count("close manager") == 1
    names = {t.name for t in threading.enumerate()}
    assert not any(n.startswith(("orin-", "telemetry")) for n in names), names


def test_a_loaded_core_closes_with_no_runner_left(folder: Path) -> None:
    import psutil

    with create_core(settings_in(folder), telemetry=False, watch_interval_s=0,  # type: ignore[arg-type]
                     n_threads=1, gpu_offload=False) as core:
        core.manager.load("alpha").result(60)
        assert psutil.Process().children(recursive=True)
    wait_until(lambda: not psutil.Process().children(recursive=True), timeout=5,
               what="every runner (and the spare) to end")


def test_a_front_end_resynchronises_from_the_managers_status(folder: Path) -> None:
    from orin_console.core.events.bus import Snapshot
    from orin_console.core.manager.types import SystemStatus

    with create_core(settings_in(folder), telemetry=False, watch_interval_s=0) as core:  # type: ignore[arg-type]
        sub = core.bus.subscribe(kinds=(PlanChanged,), snapshot=True)
        first = sub.get(timeout=5)
        assert isinstance(first, Snapshot) and isinstance(first.status, SystemStatus)
        assert {m.model_id for m in first.status.models} == {"alpha", "beta"}
    assert core.bus.subscriber_count == 0  # closing the core closed every subscription
