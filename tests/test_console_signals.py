"""A console that receives SIGTERM or SIGHUP shuts down cleanly: the generation stops, every
runner ends, and the exit status says which signal it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orin_console.core.lifecycle import ConsoleTerminated, terminate_on_signals
from orin_console.testing.tiny_models import write_tiny_llama
from orin_console.testing.waits import wait_until

from runner_procs import marked_processes


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("signals")
    write_tiny_llama(folder / "alpha.gguf", n_ctx=512, ascii_output=True)
    path = folder / "models.toml"
    path.write_text('[[models]]\nid = "alpha"\npath = "alpha.gguf"\ntasks = ["chat"]\ntier = "swap"\ncontext = 512\n')
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_generation_stops_the_console_and_every_runner(catalog: Path, sig: signal.Signals) -> None:
    mark = uuid.uuid4().hex
    env = {**os.environ, "ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.2",
           "ORIN_TEST_MARK": mark, "ORIN_STATE_DIR": str(catalog.parent / f"state-{sig.name}")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orin_console", "--catalog", str(catalog), "run", "hello",
         "--max-tokens", "64", "--temperature", "0", "--raw"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=catalog.parent)
    assert proc.stdout is not None
    assert proc.stdout.read(1)  # the answer has started: a runner is generating
    assert len(marked_processes(mark)) >= 2  # the console and its runner
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert f"terminated by {sig.name}" in err.decode()
    assert "Traceback" not in err.decode()
    wait_until(lambda: marked_processes(mark) == [], timeout=5, what="every runner to end")


def test_handlers_are_restored_and_raise_a_keyboard_interrupt() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as info, terminate_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at once, ending the sleep
    assert isinstance(info.value, ConsoleTerminated) and info.value.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) is before
