"""A generation that meets a load, move or unload in progress (found by ``stress.budget``), or
whose runner dies while it waits in the queue (``stress.faults``):
it waits for a load into any tier instead of being refused, a conflict is ``ModelInTransition``
(HTTP 429, retry) rather than a bare 400, and a load stopped by an unload is
``ModelUnavailable`` for the waiting request, not ``Cancelled`` (HTTP 499: "the client went
away", which it did not)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orin_console.core.manager.manager import Manager
from orin_console.core.manager.types import ModelBusy, ModelInTransition, ModelState, ModelUnavailable
from orin_console.core.runner import GenerateRequest, RunnerDied
from orin_console.testing.managers import make_manager
from orin_console.testing.waits import wait_until

SLOW_LOAD = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_LOAD_DELAY_S": "0.6"}


@pytest.fixture
def manager(workdir: Path) -> Iterator[Manager]:
    with make_manager(workdir, runner_env=SLOW_LOAD) as mgr:
        yield mgr


def _request() -> GenerateRequest:
    return GenerateRequest(prompt="hello", max_tokens=4, temperature=0.0)


def test_a_generation_waits_for_a_load_into_another_tier(manager: Manager) -> None:
    loading = manager.load("alpha", "swap")  # the catalog's tier is ram
    wait_until(lambda: manager.model_status("alpha").state == ModelState.LOADING, what="alpha to be loading")
    text = "".join(chunk.text for chunk in manager.generate("alpha", _request()))
    assert text
    assert loading.result(30).tier == "swap"


def test_a_load_during_an_unload_is_a_transition_conflict(manager: Manager,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The unload is held until the second load has been asked: unloading a model that is still
    # loading takes milliseconds, and on a loaded machine it could finish before the next line
    # ran (the load was then simply accepted: the test failed once in a full run).
    release = threading.Event()
    real_unload = manager._tasks.unload

    def held_unload(*args: object, **kwargs: object) -> object:
        release.wait(30)
        return real_unload(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(manager._tasks, "unload", held_unload)
    manager.load("alpha")
    wait_until(lambda: manager.model_status("alpha").state == ModelState.LOADING, what="alpha to be loading")
    unloading = manager.unload("alpha")
    try:
        with pytest.raises(ModelInTransition, match="being unloaded") as raised:
            manager.load("alpha", "swap")
    finally:
        release.set()
    assert isinstance(raised.value, ModelBusy)  # the API answers 429: retry when it is done
    unloading.result(30)


def test_a_request_waiting_on_a_load_stopped_by_an_unload_is_told_so(manager: Manager) -> None:
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            for _ in manager.generate("alpha", _request()):
                pass
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    wait_until(lambda: manager.model_status("alpha").state == ModelState.LOADING, what="alpha to be loading")
    manager.unload("alpha").result(30)
    asker.join(30)
    assert len(errors) == 1 and isinstance(errors[0], ModelUnavailable), errors
    assert "its load was stopped" in str(errors[0]) and "alpha" in str(errors[0])


def test_a_request_queued_behind_a_runner_that_dies_restarts_the_model(workdir: Path) -> None:
    env = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.02"}
    with make_manager(workdir, runner_env=env) as manager:
        pid = manager.load("alpha").result(60).pid
        assert pid is not None
        first = manager.generate("alpha", GenerateRequest(prompt="hello", max_tokens=200, temperature=0.0))
        next(iter(first))  # generating
        answers: list[str] = []
        errors: list[BaseException] = []

        def queued() -> None:
            try:
                answers.append("".join(c.text for c in manager.generate("alpha", _request())))
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                errors.append(exc)

        waiter = threading.Thread(target=queued)
        waiter.start()
        wait_until(lambda: manager.model_status("alpha").queued == 1, what="a request in alpha's queue")
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(RunnerDied, match="SIGKILL"):
            for _ in first:
                pass
        waiter.join(60)
        assert errors == [] and answers and answers[0]  # served by a restarted runner
        assert manager.model_status("alpha").pid not in (None, pid)
