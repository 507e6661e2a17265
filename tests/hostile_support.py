"""Helpers of the hostile-input tests: run the CLI and check what a refusal must look like."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from orin_console.cli.main import main

from conftest import REPO_ROOT

EXIT_USAGE = 2

CATALOG = """\
# hand-written: comments and order must survive every refused edit
[[models]]
id = "alpha"
path = "alpha.gguf"
tasks = ["chat"]
context = 512
"""


@dataclass
class Outcome:
    """What one command did."""

    code: int
    out: str
    err: str


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Outcome:
    """Run the real ``main()`` in this process (argparse's usage errors leave by SystemExit,
    as they do from the console script: taken as the exit status)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return Outcome(code, out, err)


def cli_process(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                timeout: float = 60, **popen: object) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m orin_console`` as a process (where file descriptors or pipes matter)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "orin_console", *argv], cwd=cwd, env=full_env,
                          timeout=timeout, check=False, **popen)  # type: ignore[call-overload,no-any-return]


def assert_refused(result: Outcome, *needles: str, code: int = EXIT_USAGE) -> str:
    """Exit status ``code``; standard error is one line starting ``orin-console`` that holds
    every needle and no traceback; nothing on standard output. Returns the line."""
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    line = lines[0]
    assert line.startswith("orin-console"), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert "\x1b" not in line and "\u202e" not in line and "\x00" not in line, line
    assert "pydantic" not in line and "validation error" not in line, line
    return line


def snapshot(path: Path) -> bytes | None:
    """The bytes of a file, or ``None`` when absent (to show that nothing changed)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
