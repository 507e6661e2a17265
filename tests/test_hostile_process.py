"""Hostile process surroundings, as a new user meets them: closed standard streams, a full
disk, a pipe whose reader leaves, a runner that dies. Subprocesses, since the file
descriptors are the point; each case is short (a tiny model, a few tokens)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from hostile_support import CATALOG, cli_process, snapshot

from orin_console.testing.waits import wait_until

from conftest import REPO_ROOT


@pytest.fixture
def home(tmp_path: Path, tiny_pair: Path) -> Path:
    shutil.copyfile(tiny_pair / "alpha.gguf", tmp_path / "alpha.gguf")
    (tmp_path / "models.toml").write_text(CATALOG)
    return tmp_path


def _one_line(stderr: bytes, *needles: str) -> str:
    text = stderr.decode()
    assert "Traceback" not in text and "internal error" not in text, text
    lines = [line for line in text.splitlines() if not line.startswith("loading ")]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _closed(fd: int) -> dict[str, object]:
    """Popen options that start the child with descriptor ``fd`` closed."""
    def close() -> None:
        os.close(fd)
    return {"preexec_fn": close}


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["run", "hi", "--max-tokens", "3"], ("standard output is closed", "redirect")),
        (["models", "list"], ("standard output is closed",)),
        (["--help"], ("standard output is closed",)),
    ],
)
def test_closed_stdout_is_refused_before_anything_is_done(home: Path, argv: list[str],
                                                          needles: tuple[str, ...]) -> None:
    before = snapshot(home / "models.toml")
    proc = cli_process("--catalog", str(home / "models.toml"), *argv, cwd=home, capture_output=False,
                       stdout=None, stderr=subprocess.PIPE, **_closed(1))
    assert proc.returncode == 2
    _one_line(proc.stderr, *needles)
    assert snapshot(home / "models.toml") == before


@pytest.mark.parametrize("fds", [(2,), (1, 2)], ids=["stderr", "stdout-and-stderr"])
def test_closed_stderr_is_refused_with_status_2_not_a_crash(home: Path, fds: tuple[int, ...]) -> None:
    """Nowhere to say it, but the status says it (it was 1: writing the refusal crashed)."""
    before = snapshot(home / "models.toml")

    def close() -> None:
        for fd in fds:
            os.close(fd)

    proc = cli_process("--catalog", str(home / "models.toml"), "models", "remove", "alpha", cwd=home,
                       preexec_fn=close)
    assert proc.returncode == 2
    assert snapshot(home / "models.toml") == before


def test_closed_stdin_is_refused_only_where_it_is_read(home: Path) -> None:
    proc = cli_process("--catalog", str(home / "models.toml"), "run", "-", cwd=home,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, **_closed(0))
    assert proc.returncode == 2 and proc.stdout == b""
    _one_line(proc.stderr, "standard input is closed", "give it as an argument")
    proc = cli_process("--catalog", str(home / "models.toml"), "models", "list", "--json", cwd=home,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, **_closed(0))
    assert proc.returncode == 0 and b'"alpha"' in proc.stdout


def test_the_console_with_stdin_closed_says_it_needs_a_terminal(home: Path) -> None:
    proc = cli_process("--catalog", str(home / "models.toml"), cwd=home, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, **_closed(0))
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "the console needs a terminal" in err and "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize(("data", "needles"), [
    (b"\xff\xfe", ("standard input is not valid UTF-8 (byte offset 0)",)),
    (b"x" * (4 * 1024 * 1024 + 1), ("standard input holds more than 4 MB",)),
], ids=["not-utf8", "over-4mb"])
def test_bad_stdin_prompt(home: Path, data: bytes, needles: tuple[str, ...]) -> None:
    proc = cli_process("--catalog", str(home / "models.toml"), "run", "-", cwd=home, input=data,
                       capture_output=True)
    assert proc.returncode == 2
    _one_line(proc.stderr, *needles)


@pytest.mark.parametrize("argv", [["run", "hi", "--max-tokens", "3", "--temperature", "0"],
                                  ["models", "list"], ["models", "list", "--json"]])
def test_stdout_on_a_full_disk_is_one_line(home: Path, argv: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        proc = cli_process("--catalog", str(home / "models.toml"), *argv, cwd=home, stdout=full,
                           stderr=subprocess.PIPE)
    assert proc.returncode == 2
    _one_line(proc.stderr, "no space left on device", "free some space")


@pytest.mark.parametrize("argv", [["telemetry", "--watch", "--interval", "0.1", "--source", "psutil"],
                                  ["telemetry", "--watch", "--json", "--interval", "0.1", "--source", "psutil"],
                                  ["--help"]])
def test_a_pipe_whose_reader_leaves_ends_quietly_with_status_0(home: Path, argv: list[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "orin_console", "--catalog", str(home / "models.toml"), *argv],
                            cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert code == 0, err
    assert "Traceback" not in err and "error" not in err.lower(), err


def test_run_into_a_pipe_whose_reader_leaves_stops_the_generation_with_status_0(home: Path) -> None:
    env = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "orin_console", "--catalog", str(home / "models.toml"),
                             "run", "hi", "--max-tokens", "400"], cwd=home, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdout.read(1)  # `| head -c 1`
        proc.stdout.close()
        code = proc.wait(timeout=30)  # 400 tokens at 0.2 s would take 80 s: it stops at once
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert code == 0, err
    assert "Traceback" not in err and "error" not in err.lower(), err


def test_a_runner_death_is_said_once(home: Path) -> None:
    env = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "orin_console", "--catalog", str(home / "models.toml"),
                             "run", "hi", "--max-tokens", "200"], cwd=home, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdout.read(1)  # the answer has started: the runner is generating
        me = psutil.Process(proc.pid)
        wait_until(lambda: bool(me.children()), timeout=10)
        for child in me.children():
            child.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert code == 1, err
    _one_line(err.encode(), "alpha could not answer", "killed (SIGKILL)")
    assert err.count("killed (SIGKILL)") == 1, err


def test_a_runner_death_during_an_unload_ends_the_unload_not_the_model() -> None:
    """The race behind a second error line after a runner death: ``run`` closes the core (an
    unload) while the death is still being reported. The death must not fail the model under
    the unload (whose ``unloaded()`` then raised) nor release the reservation a second time."""
    from types import SimpleNamespace
    from typing import Any, cast

    from orin_console.core.catalog.store import CatalogEntry
    from orin_console.core.manager.model import ModelRuntime, ModelState
    from orin_console.core.tier import Tier

    model = ModelRuntime(CatalogEntry(id="a", path="a.gguf", tasks=("chat",)), queue_limit=4)
    runner, reservation = cast(Any, object()), cast(Any, object())
    model.begin_load(Tier.SWAP)
    model.loaded(runner, reservation, cast(Any, None), cast(Any, SimpleNamespace(load_seconds=0.1)))
    assert model.begin_unload() == (runner, reservation)
    assert model.died(runner, "runner for `a` was killed (SIGKILL)") is None  # the unload releases it
    model.unloaded()
    assert model.status().state == ModelState.UNLOADED


def test_an_answer_the_output_encoding_cannot_hold_is_replaced_not_a_crash(home: Path) -> None:
    """PYTHONIOENCODING=ascii (or a latin-1 locale) and a model that answers in Greek: the
    characters the encoding lacks print as '?' instead of an internal error."""
    script = (
        "import sys\n"
        "from types import SimpleNamespace\n"
        "from orin_console.core.engine.inference import Engine\n"
        "class S:\n"
        "    model_id = 'alpha'; will_load = False; load_tier = None\n"
        "    result = SimpleNamespace(summary=lambda: 'alpha \\u2014 fake')\n"
        "    def __iter__(self): return iter(['\\u03b3\\u03b5\\u03b9\\u03ac', ' ok'])\n"
        "    def cancel(self): pass\n"
        "    def close(self): pass\n"
        "Engine.stream_quick = lambda self, *a, **k: S()\n"
        "from orin_console.cli.main import main\n"
        f"sys.exit(main(['--catalog', {str(home / 'models.toml')!r}, 'run', 'hi']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=home, capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"???? ok\n"
    assert b"Traceback" not in proc.stderr and b"internal error" not in proc.stderr
